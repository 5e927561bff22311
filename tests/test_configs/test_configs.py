# Copyright (c) mmsniper contributors. All rights reserved.
"""Every shipped config loads, builds, and (shrunk) trains on chips."""
import glob
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.fileio import dump, load
from mmengine.runner import Runner
from sniper_test_utils import write_image_dataset

from mmdet.registry import DATASETS, MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'sniper', '*.py')))
CONFIG_IDS = [osp.basename(c) for c in CONFIGS]
CLASSES = ('a', 'b')


def test_configs_exist():
    names = set(CONFIG_IDS)
    assert {
        'faster-rcnn_r50_fpn_sniper-1x_coco.py',
        'faster-rcnn_r50_fpn_sniper-amp-1x_coco.py',
        'retinanet_r50_fpn_sniper-1x_coco.py',
        'faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py'
    } <= names


@pytest.mark.parametrize('path', CONFIGS, ids=CONFIG_IDS)
def test_chips_are_padded_by_the_data_preprocessor(path):
    """The crop leaves img == img_shape (so RandomFlip mirrors the content
    only); the data preprocessor pads every training batch to the chip size
    after normalisation (0 = the pixel mean, the reference's pad)."""
    cfg = Config.fromfile(path)
    chip = cfg.train_dataloader.dataset.chip_size
    pipeline = cfg.train_dataloader.dataset.dataset.pipeline
    types = [t['type'] for t in pipeline]
    crop = pipeline[types.index('SniperChipCrop')]
    assert not {'pad_val', 'seg_pad_val'} & set(crop)
    # geometric transforms come after the crop
    assert types.index('RandomFlip') > types.index('SniperChipCrop')
    preprocessor = cfg.model.data_preprocessor
    assert preprocessor.type == 'DetDataPreprocessor'
    assert preprocessor.get('pad_value', 0) == 0
    augments = preprocessor.get('batch_augments') or []
    assert [a['type'] for a in augments] == ['BatchFixedSizePad']
    assert tuple(augments[0]['size']) == (chip, chip)
    assert augments[0].get('img_pad_value', 0) == 0


def write_proposals(root):
    """Dense random proposals for every image of the tiny dataset."""
    rng = np.random.default_rng(0)
    coco = load(osp.join(root, 'ann.json'))
    proposals = {}
    for img in coco['images']:
        xy = rng.uniform(0, 200, size=(300, 2))
        wh = rng.uniform(6, 40, size=(300, 2))
        proposals[f'images/{img["file_name"]}'] = dict(
            bboxes=np.concatenate([xy, xy + wh], 1).astype(np.float32),
            scores=rng.random(300).astype(np.float32), img_id=img['id'])
    path = osp.join(root, 'proposals.pkl')
    dump(proposals, path)
    return path


def point_at(cfg, root):
    """Point every dataloader of ``cfg`` at the tiny dataset in ``root``."""
    train = cfg.train_dataloader.dataset
    assert train.type == 'SniperChipDataset'
    train.dataset.update(
        data_root=root, ann_file='ann.json', data_prefix=dict(img='images/'),
        metainfo=dict(classes=CLASSES), filter_cfg=None)
    if train.get('neg_proposals'):
        train.neg_proposals.file = write_proposals(root)
        train.neg_min_proposals = 3
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.update(
            data_root=root, ann_file='ann.json',
            data_prefix=dict(img='images/'), metainfo=dict(classes=CLASSES))
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = osp.join(root, 'ann.json')


def set_num_classes(model_cfg, num):
    if 'roi_head' in model_cfg:
        model_cfg.roi_head.bbox_head.num_classes = num
    else:
        model_cfg.bbox_head.num_classes = num


@pytest.mark.parametrize('path', CONFIGS, ids=CONFIG_IDS)
def test_config_builds_model_and_datasets(path, tmp_path):
    cfg = Config.fromfile(path)
    assert 'mmsniper' in cfg.custom_imports['imports']
    write_image_dataset(str(tmp_path), num_images=2, masks=True)
    point_at(cfg, str(tmp_path))
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    train = DATASETS.build(cfg.train_dataloader.dataset)
    negatives = train.chip_table(0).is_negative.sum()
    if cfg.train_dataloader.dataset.get('neg_proposals'):
        assert negatives > 0, 'the negative-chip config mined nothing'
    else:
        assert negatives == 0
    assert len(train) > 0
    sample = train[0]
    h, w = sample['inputs'].shape[1:]
    assert (h, w) == sample['data_samples'].img_shape
    assert h <= train.chip_size and w <= train.chip_size
    batch = model.data_preprocessor(pseudo_collate([sample]), training=True)
    assert batch['inputs'].shape[-2:] == (train.chip_size, train.chip_size)
    assert 'chip_valid_range' in sample['data_samples'].metainfo
    val = DATASETS.build(cfg.val_dataloader.dataset)
    assert len(val) == 2


@pytest.mark.parametrize(
    'path', [c for c in CONFIGS if '-amp-' in c],
    ids=[osp.basename(c) for c in CONFIGS if '-amp-' in c])
def test_amp_configs_need_a_gpu_but_the_rest_builds(path, tmp_path):
    cfg = Config.fromfile(path)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    write_image_dataset(str(tmp_path), num_images=2)
    point_at(cfg, str(tmp_path))
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.model  # the model is built with the runner
    assert len(runner.train_dataloader) > 0
    if not torch.cuda.is_available():
        with pytest.raises(AssertionError, match='gpu'):
            runner.build_optim_wrapper(cfg.optim_wrapper)
    else:
        runner.build_optim_wrapper(cfg.optim_wrapper)


def shrink(cfg, root, work_dir):
    """A CPU-sized copy of a COCO SNIPER config: 2 iterations on chips."""
    point_at(cfg, root)
    cfg.model.backbone.update(
        depth=18, base_channels=16, init_cfg=None, frozen_stages=-1,
        norm_eval=False)
    cfg.model.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    if 'rpn_head' in cfg.model:
        cfg.model.rpn_head.update(in_channels=32, feat_channels=32)
        cfg.model.roi_head.bbox_roi_extractor.out_channels = 32
        cfg.model.roi_head.bbox_head.update(in_channels=32,
                                            fc_out_channels=64)
    else:
        cfg.model.bbox_head.update(in_channels=32, feat_channels=32,
                                   stacked_convs=1)
    set_num_classes(cfg.model, len(CLASSES))
    train = cfg.train_dataloader
    train.update(batch_size=2, num_workers=0, persistent_workers=False)
    train.dataset.update(chip_size=160, scales=[2.0, 1.0, (-1, 160)],
                         valid_ranges=[(-1, 40), (16, 100), (60, -1)])
    # the batch pad follows the chip size
    cfg.model.data_preprocessor.batch_augments[0].size = (160, 160)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=100)
    cfg.param_scheduler = []
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=False)
    cfg.work_dir = work_dir
    return cfg


class LossRecorder:
    """Wraps ``model.loss`` to record every loss value."""

    def __init__(self, model):
        self.values = []
        self._loss = model.loss
        model.loss = self

    def __call__(self, *args, **kwargs):
        losses = self._loss(*args, **kwargs)
        for name, value in losses.items():
            if 'loss' in name:
                items = value if isinstance(value, list) else [value]
                self.values += [float(v.detach().sum()) for v in items]
        return losses


@pytest.mark.parametrize('name', [
    'faster-rcnn_r50_fpn_sniper-1x_coco.py',
    'retinanet_r50_fpn_sniper-1x_coco.py'
])
def test_two_training_iterations_on_chips(name, tmp_path):
    root = str(tmp_path / 'data')
    write_image_dataset(root, num_images=3, size=(300, 420))
    cfg = shrink(Config.fromfile(osp.join(ROOT, 'configs', 'sniper', name)),
                 root, str(tmp_path / 'work'))
    runner = Runner.from_cfg(cfg)
    recorder = LossRecorder(runner.model)
    seen = []
    loader = runner.train_dataloader
    assert type(loader.batch_sampler.sampler).__name__ == 'SniperChipSampler'
    original_forward = runner.model.data_preprocessor.forward

    def spy(data, training=False):
        out = original_forward(data, training)
        seen.append(tuple(out['inputs'].shape))
        return out

    runner.model.data_preprocessor.forward = spy
    runner.train()
    assert runner.iter == 2
    assert seen and all(shape[-2:] == (160, 160) for shape in seen)
    assert recorder.values and all(math.isfinite(v) for v in recorder.values)
    assert osp.exists(osp.join(cfg.work_dir, 'iter_2.pth'))


@pytest.mark.parametrize('name', [
    'rpn_r50_fpn_sniper-2e_coco.py',
    'rpn_r18-slim_fpn_sniper-demo_synthetic.py'
])
def test_rpn_configs_evaluate_proposal_recall(name, tmp_path):
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData
    from mmdet.structures import DetDataSample
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'sniper', name))
    ann = write_image_dataset(str(tmp_path), num_images=2)
    coco = load(ann)
    evaluator = Evaluator(dict(cfg.val_evaluator, ann_file=ann))
    evaluator.dataset_meta = dict(classes=CLASSES)
    rng = np.random.default_rng(0)
    for i, img in enumerate(coco['images']):
        gt = [a['bbox'] for a in coco['annotations']
              if a['image_id'] == img['id']]
        gt = np.array([[x, y, x + w, y + h] for x, y, w, h in gt])
        # Different counts per image: mmdet's 'proposal_fast' breaks on that.
        noise = rng.uniform(0, 20, size=(50 + 20 * i, 4))
        boxes = np.concatenate([gt, noise + [0, 0, 40, 40]])
        sample = DetDataSample(metainfo=dict(
            img_id=img['id'], ori_shape=(img['height'], img['width'])))
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32),
            scores=torch.linspace(1, 0.1, len(boxes)),
            labels=torch.zeros(len(boxes), dtype=torch.long))
        evaluator.process([sample.to_dict()])
    metrics = evaluator.evaluate(len(coco['images']))
    recall = [v for k, v in metrics.items() if 'AR@100' in k]
    assert recall and recall[0] > 0.9, metrics


DETECTOR_CONFIGS = [c for c in CONFIG_IDS if not c.startswith('rpn_')]


@pytest.mark.parametrize('name', DETECTOR_CONFIGS)
def test_detector_configs_define_the_sniper_test(name):
    """``--tta`` runs SniperTTAModel: one list of scales and ranges, a
    pipeline that loads the image at its original size, the stats hook."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'sniper', name))
    tta = cfg.tta_model
    autofocus = 'autofocus' in name
    assert tta.type == ('AutoFocusTTAModel' if autofocus else 'SniperTTAModel')
    assert len(tta.scales) == len(tta.valid_ranges) >= 2
    kinds = [step['type'] for step in cfg.tta_pipeline]
    # the checked loader (issue 19 item 3): header pixel limit, named errors
    assert kinds[0] == 'LoadSniperChipFromFile', kinds
    assert kinds[-1] == 'PackDetInputs'
    assert not {'Resize', 'TestTimeAug', 'RandomFlip'} & set(kinds)
    assert {'type': 'SniperTTAStatsHook'} in cfg.custom_hooks
    model = MODELS.build(dict(tta, module=cfg.model))
    assert model.scales == [
        tuple(s) if isinstance(s, (list, tuple)) else s for s in tta.scales
    ]
    if 'coco' in name:
        assert tta.scales == [(1400, 2000), (800, 1280), (480, 512)]
        assert tta.merge_cfg.nms.sigma == 0.55
        assert tta.merge_cfg.max_per_img == 200
    if 'coco' in name and autofocus:
        # the reference AutoFocus ranges and chip parameters
        assert tta.valid_ranges == [(-1, 75), (32, 180), (75, -1)]
        assert tta.chip_params == [(3, 0.02, 16), (3, 0.2, 20)]
        assert cfg.model.type == 'AutoFocusDetector'
        labels = [step for step in cfg.train_pipeline
                  if step['type'] == 'FocusPixelLabels']
        assert labels == [dict(type='FocusPixelLabels', stride=16,
                               positive_range=(5, 64), ignore_upper=90)]
    elif 'coco' in name:
        assert tta.valid_ranges == [(-1, 90), (32, 180), (75, -1)]


def test_rpn_coco_config_has_no_sniper_test():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'sniper', 'rpn_r50_fpn_sniper-2e_coco.py'))
    assert 'tta_model' not in cfg


#: configs/sniper files written by tools/misc/make_sniper_config.py
TOOL_MADE = ('cascade-rcnn_r50_fpn_sniper-1x_coco.py',
             'mask-rcnn_r50_fpn_sniper-1x_coco.py',
             'rtmdet_tiny_sniper-300e_coco.py',
             'dino-4scale_r50_sniper-12e_coco.py')


@pytest.mark.parametrize('name', TOOL_MADE)
def test_tool_made_configs_equal_the_tools_output(name):
    """They are what the tool writes today from their mmdet source (the
    reference scales and ranges, chip 512): regenerate them after changing
    the tool."""
    from mmsniper.apis import make_sniper_config
    path = osp.join(ROOT, 'configs', 'sniper', name)
    with open(path) as f:
        text = f.read()
    source = text.splitlines()[0].split('SNIPER training of ')[1]
    made, _ = make_sniper_config(source, out=path)
    assert made == text, (
        f'{name} differs from the tool output: python '
        f'tools/misc/make_sniper_config.py {source} --out {path} --force')
