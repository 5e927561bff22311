"""tools/misc/make_sniper_config.py and the build-time ignore check, as a
user runs them: the tool on an ``mmdet::`` config, a file and one of ours;
then, for every detector family, 2 iterations of chip training on a tiny
COCO set with mmengine's Runner from the written config, and the SNIPER
multi-scale test (``--tta``) of the trained model."""
import json
import math
import os.path as osp
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

import tiny_coco as tc

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)),
                            'test_models'))
import ignore_matrix as im  # noqa: E402

from mmsniper.apis import make_sniper_config  # noqa: E402

TOOL = tc.TOOLS / 'misc' / 'make_sniper_config.py'
#: the model-zoo heads have 80 classes: the tiny set declares 80 (two used)
CLASSES = tuple(tc.CLASSES) + tuple(f'unused{i}' for i in range(78))
#: tiny COCO images of 256 px with 20-50 px boxes: two scales, 384 chips
SCALES = [2.0, 1.5]
RANGES = [(-1, 40), (30, -1)]
CHIP = 384

OVERRIDES = '''\
_base_ = './sniper.py'
data_root = {data_root!r}
metainfo = dict(classes={classes!r})
model = dict(backbone=dict(init_cfg=None))
train_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(dataset=dict(
        data_root=data_root, metainfo=metainfo,
        ann_file='annotations/tiny.json', data_prefix=dict(img='images/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8))))
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo,
        ann_file='annotations/tiny.json', data_prefix=dict(img='images/')))
test_evaluator = dict(ann_file=data_root + 'annotations/tiny.json',
                      metric={metric!r})
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2)
param_scheduler = []
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1000, by_epoch=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
'''


def _run_tool(*args, check=True):
    result = subprocess.run([sys.executable, str(TOOL), *map(str, args)],
                            capture_output=True, text=True, timeout=300,
                            env=tc.tool_env(), cwd=str(tc.REPO_ROOT))
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """Tiny COCO with a rectangle polygon per box (for the mask
    families) and 80 categories."""
    root = tmp_path_factory.mktemp('tiny_coco')
    ann_file = tc.make_tiny_coco(root, num_images=2, img_size=256)
    coco = json.loads(ann_file.read_text())
    coco['categories'] += [
        dict(id=i + 1, name=name, supercategory='none')
        for i, name in enumerate(CLASSES) if i >= len(tc.CLASSES)
    ]
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        ann['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    ann_file.write_text(json.dumps(coco))
    return root


def test_tool_on_a_model_zoo_config(tmp_path):
    out = tmp_path / 'fcos_sniper.py'
    result = _run_tool('mmdet::' + im.FAMILIES['fcos'], '--out', out,
                       '--scales', '2.0', '-1,512', '--valid-ranges',
                       '-1,64', '48,-1', '--chip-size', 320)
    assert 'model.bbox_head: FCOSHead -> SniperFCOSHead' in result.stdout
    assert 'removed RandomFlip' not in result.stdout
    assert 'checked:' in result.stdout
    cfg = Config.fromfile(str(out))
    assert cfg.model.bbox_head.type == 'SniperFCOSHead'
    assert cfg.model.bbox_head.num_classes == 80  # inherited
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'SniperChipDataset'
    assert dataset.scales == [2.0, (-1, 512)]
    assert dataset.valid_ranges == [(-1, 64), (48, -1)]
    assert dataset.chip_size == 320
    steps = [s.type for s in dataset.dataset.pipeline]
    assert steps == [
        'LoadSniperChipFromFile', 'LoadAnnotations', 'SniperChipCrop',
        'RandomFlip', 'PackDetInputs'
    ]
    assert cfg.model.data_preprocessor.batch_augments == [
        dict(type='BatchFixedSizePad', size=(320, 320))
    ]
    assert cfg.tta_model.type == 'SniperTTAModel'
    assert any(h.type == 'SniperIgnoreCheckHook' for h in cfg.custom_hooks)
    # refuses to overwrite, and bad input is named
    again = _run_tool('mmdet::' + im.FAMILIES['fcos'], '--out', out,
                      check=False)
    assert again.returncode == 2 and 'exists' in again.stderr
    bad = _run_tool('mmdet::no/such.py', '--out', tmp_path / 'x.py',
                    check=False)
    assert bad.returncode == 2 and 'no/such.py' in bad.stderr
    bad = _run_tool('mmdet::' + im.FAMILIES['fcos'], '--out',
                    tmp_path / 'y.py', '--scales', '2.0', check=False)
    assert bad.returncode == 2 and 'valid_ranges' in bad.stderr


def test_tool_on_a_file_and_on_our_config(tmp_path):
    source = tc.write_tiny_config(tmp_path / 'tiny.py', tmp_path / 'data')
    out = tmp_path / 'sub' / 'tiny_sniper.py'
    result = _run_tool(source, '--out', out)
    assert 'model.roi_head: StandardRoIHead -> SniperRoIHead' in result.stdout
    cfg = Config.fromfile(str(out))
    assert cfg.model.train_cfg.rpn.assigner.type == 'SniperMaxIoUAssigner'
    assert cfg.model.train_cfg.rcnn.assigner.ignore_iou_thr == 0.5
    assert cfg.model.backbone.depth == 18  # the source's own settings
    # one of ours is already SNIPER: kept, its scales replaced
    ours = tc.REPO_ROOT / 'configs' / 'sniper' / \
        'retinanet_r50_fpn_sniper-1x_coco.py'
    out = tmp_path / 'retina.py'
    result = _run_tool(ours, '--out', out, '--scales', '2.0', '1.0',
                       '--valid-ranges', '-1,64', '32,-1')
    assert 'already a SniperChipDataset' in result.stdout
    cfg = Config.fromfile(str(out))
    assert cfg.train_dataloader.dataset.scales == [2.0, 1.0]
    assert cfg.model.train_cfg.assigner.type == 'SniperMaxIoUAssigner'


def test_tool_reads_scale_advice(tmp_path):
    advice = tmp_path / 'scale_advice.json'
    advice.write_text(json.dumps(dict(proposal=dict(
        scales=[2.5, [-1, 600]], valid_ranges=[[-1, 70], [40, -1]]))))
    text, notes = make_sniper_config(
        'mmdet::' + im.FAMILIES['atss'], advice=str(advice))
    assert 'sniper_scales = [2.5, (-1, 600)]' in text
    assert any('ATSSAssigner -> SniperIgnoreAssigner' in n for n in notes)
    with pytest.raises(ValueError, match='not both'):
        make_sniper_config('mmdet::' + im.FAMILIES['atss'],
                           advice=str(advice), scales=[1.0],
                           valid_ranges=[(-1, -1)])
    advice.write_text('{}')
    with pytest.raises(ValueError, match='proposal'):
        make_sniper_config('mmdet::' + im.FAMILIES['atss'],
                           advice=str(advice))


def _family_config(family, tmp_path, data_root) -> Path:
    text, _ = make_sniper_config(
        'mmdet::' + im.FAMILIES[family], scales=SCALES,
        valid_ranges=RANGES, chip_size=CHIP)
    (tmp_path / 'sniper.py').write_text(text)
    path = tmp_path / 'train.py'
    path.write_text(OVERRIDES.format(
        data_root=str(data_root) + '/', classes=CLASSES,
        metric=['bbox', 'segm'] if family in im.MASK_FAMILIES else 'bbox'))
    return path


@pytest.mark.parametrize('family', list(im.FAMILIES))
def test_family_trains_on_chips_and_tests_with_tta(family, tmp_path,
                                                   tiny_data):
    from mmengine.runner import Runner

    from mmsniper.apis import sniper_tta_config
    cfg = Config.fromfile(str(_family_config(family, tmp_path, tiny_data)))
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    loss = runner.message_hub.get_scalar('train/loss')
    assert runner.iter == 2 and len(loss.data[0]) == 2
    assert all(math.isfinite(v) for v in loss.data[0]), loss.data[0]
    if family == 'yolox':  # YOLOXModeSwitchHook ran on the chip dataset
        assert runner.model.bbox_head.use_l1

    tta_cfg = sniper_tta_config(cfg)
    tta_cfg.work_dir = str(tmp_path / 'tta')
    tester = Runner.from_cfg(tta_cfg)
    tester.model.module.load_state_dict(runner.model.state_dict())
    metrics = tester.test()  # CocoMetric: bbox (and segm) of the TTA output
    assert metrics['sniper/images'] == 2
    assert metrics['sniper/Mpx_per_img_scale0'] == 512 * 512 / 1e6
    data = next(iter(tester.test_dataloader))
    pred = tester.model.test_step(data)[0].pred_instances
    assert len(pred.bboxes) == len(pred.scores) <= 200
    if family in im.MASK_FAMILIES:  # masks kept, at original resolution
        assert pred.masks.shape[1:] == (256, 256)
    else:
        assert 'masks' not in pred


def test_build_time_check_refuses_background_training(tmp_path, tiny_data):
    """A chip config whose head would train ignored GT as background stops
    before training, naming the head and the key; ``sniper_ignore_check``
    accepts it knowingly."""
    from mmengine.runner import Runner
    path = _family_config('fcos', tmp_path, tiny_data)
    path.write_text(path.read_text().replace(
        'model = dict(backbone=dict(init_cfg=None))',
        "model = dict(backbone=dict(init_cfg=None), "
        "bbox_head=dict(type='FCOSHead'))"))
    # mmsniper's tools/train.py: right after building the runner
    result = subprocess.run(
        [sys.executable, str(tc.TOOLS / 'train.py'), str(path),
         '--work-dir', str(tmp_path / 'w1')],
        capture_output=True, text=True, timeout=300, env=tc.tool_env(),
        cwd=str(tc.REPO_ROOT))
    assert result.returncode != 0
    for word in ("bbox_head is mmdet's FCOSHead", "'SniperFCOSHead'",
                 'make_sniper_config.py', "sniper_ignore_check='warn'"):
        assert word in result.stderr, result.stderr[-2000:]
    assert 'Iter(train)' not in result.stdout + result.stderr
    # mmengine's Runner, as mmdet's tools/train.py runs it: the config's
    # SniperIgnoreCheckHook stops it before the first iteration
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path / 'w2')
    runner = Runner.from_cfg(cfg)
    with pytest.raises(RuntimeError, match="bbox_head is mmdet's FCOSHead"):
        runner.train()
    assert runner.iter == 0
    # accepted knowingly
    cfg.sniper_ignore_check = 'warn'
    cfg.work_dir = str(tmp_path / 'w3')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
