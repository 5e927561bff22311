"""Tiny COCO data set, tiny Faster R-CNN config and subprocess helpers for
the tool tests (tests/test_tools/test_*.py).

Not a conftest: the test modules load this file by path (see
:func:`load_helper` in each of them), so its name cannot clash with helpers
of other test folders.
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / 'tools'
CLASSES = ('rect', 'frame')
IMG_SIZE = 128


def make_tiny_coco(root: Path,
                   num_images: int = 4,
                   seed: int = 0,
                   img_size: int = IMG_SIZE,
                   sides: Sequence[int] = (20, 50),
                   boxes_per_image: int = 3) -> Path:
    """Write ``num_images`` square images (``img_size`` px) with
    ``boxes_per_image`` rectangles whose sides are drawn from ``sides``
    (low inclusive, high exclusive) and a COCO json
    (``annotations/tiny.json``, images under ``images/``)."""
    rng = np.random.RandomState(seed)
    root = Path(root)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1
    for img_id in range(1, num_images + 1):
        img = np.full((img_size, img_size, 3), 30, dtype=np.uint8)
        img += rng.randint(0, 20, img.shape).astype(np.uint8)
        name = f'{img_id:06d}.jpg'
        for k in range(boxes_per_image):
            w, h = (int(v) for v in rng.randint(*sides, size=2))
            x = int(rng.randint(0, img_size - w))
            y = int(rng.randint(0, img_size - h))
            cat = k % 2 + 1
            color = tuple(int(c) for c in rng.randint(120, 255, size=3))
            thickness = -1 if cat == 1 else 3  # filled rect / frame
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color,
                          thickness)
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=img_id,
                    category_id=cat,
                    bbox=[x, y, w, h],
                    area=float(w * h),
                    iscrowd=0))
            ann_id += 1
        assert cv2.imwrite(str(root / 'images' / name), img)
        images.append(
            dict(id=img_id, file_name=name, width=img_size, height=img_size))
    coco = dict(
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=n, supercategory='shape')
            for i, n in enumerate(CLASSES)
        ])
    ann_file = root / 'annotations' / 'tiny.json'
    ann_file.write_text(json.dumps(coco))
    return ann_file


CONFIG_TEMPLATE = '''\
# Tiny plain-mmdet Faster R-CNN (ResNet-18, 16-channel FPN) for tool tests.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmsniper'], allow_failed_imports=False)

data_root = {data_root!r}
metainfo = dict(classes={classes!r})
backend_args = None

model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(
            in_channels=16, fc_out_channels=32, num_classes={num_classes})))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/tiny.json',
        data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
test_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/tiny.json',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/tiny.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
# no validation while training: keeps the runs short
val_dataloader = None
val_evaluator = None
val_cfg = None

train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters={max_iters},
    val_interval=1000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=10)
]
optim_wrapper = dict(optimizer=dict(lr=0.005))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
'''


def write_tiny_config(path: Path,
                      data_root: Path,
                      max_iters: int = 2,
                      extra: str = '') -> Path:
    """Write the tiny Faster R-CNN config to ``path`` and return it."""
    text = CONFIG_TEMPLATE.format(
        data_root=str(data_root).rstrip('/') + '/',
        classes=CLASSES,
        num_classes=len(CLASSES),
        max_iters=max_iters) + extra
    path = Path(path)
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tool_env(**extra: str) -> Dict[str, str]:
    """Environment for a tool subprocess: no inherited trust roots, one
    thread per process, unbuffered output, no mmsniper on PYTHONPATH (the
    tools must find the checkout themselves)."""
    env = dict(os.environ)
    env.pop('MMSNIPER_TRUSTED_CHECKPOINT_DIRS', None)
    env.pop('PYTHONPATH', None)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    env.pop('TORCH_FORCE_WEIGHTS_ONLY_LOAD', None)
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    env.update(extra)
    return env


class Result:

    def __init__(self, proc: subprocess.CompletedProcess, seconds: float):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.output = proc.stdout + proc.stderr
        self.seconds = seconds
        self.args = proc.args

    def describe(self) -> str:
        tail = lambda s: s[-6000:]  # noqa: E731
        return (f'command: {self.args}\nreturncode: {self.returncode} '
                f'({self.seconds:.1f}s)\n--- stdout (tail) ---\n'
                f'{tail(self.stdout)}\n--- stderr (tail) ---\n'
                f'{tail(self.stderr)}')


def run(cmd: Sequence[str],
        timeout: float = 240,
        env: Optional[Dict[str, str]] = None) -> Result:
    """Run ``cmd`` from the repo root, capturing output."""
    start = time.time()
    proc = subprocess.run([str(c) for c in cmd],
                          cwd=str(REPO_ROOT),
                          env=env if env is not None else tool_env(),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True,
                          timeout=timeout)
    return Result(proc, time.time() - start)


def run_ok(cmd: Sequence[str], **kwargs) -> Result:
    res = run(cmd, **kwargs)
    assert res.returncode == 0, res.describe()
    return res


def train_cmd(config: Path, work_dir: Path, *args: str) -> List[str]:
    return [
        sys.executable,
        str(TOOLS / 'train.py'),
        str(config), '--work-dir',
        str(work_dir), *args
    ]


def eval_cmd(config: Path, checkpoint: Path, work_dir: Path, *args:
             str) -> List[str]:
    return [
        sys.executable,
        str(TOOLS / 'test.py'),
        str(config),
        str(checkpoint), '--work-dir',
        str(work_dir), *args
    ]


def last_checkpoint(work_dir: Path) -> Path:
    """The path mmengine recorded in ``work_dir/last_checkpoint``."""
    return Path((Path(work_dir) / 'last_checkpoint').read_text().strip())


def read_logs(work_dir: Path) -> str:
    """All ``*.log`` text files mmengine wrote below ``work_dir``."""
    texts = []
    for dirpath, _, files in os.walk(work_dir):
        for f in sorted(files):
            if f.endswith('.log'):
                texts.append(Path(osp.join(dirpath, f)).read_text())
    return '\n'.join(texts)
