# Copyright (c) mmsniper contributors. All rights reserved.
"""Config checks at build time, once-only warnings, rank-0 summaries and
delayed progress bars (mmsniper.datasets.chip_settings,
mmsniper.utils.progress) as the dataset, crop, RoI head and proposal
loader use them."""
import itertools
import logging
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData
from sniper_test_utils import random_images, write_coco

from mmdet.registry import DATASETS
from mmdet.structures import DetDataSample
from mmsniper.datasets import load_proposals
from mmsniper.datasets.sniper_chip_dataset import SniperChipDataset
from mmsniper.datasets.transforms import SniperChipCrop
from mmsniper.models.roi_heads import SniperRoIHead
from mmsniper.utils import progress

_IDS = itertools.count()


@pytest.fixture
def logs():
    """Records of a fresh current MMLogger; once-only warnings reset."""
    logger = MMLogger.get_instance(f'f_tools_test_{next(_IDS)}')
    records = []

    class Keep(logging.Handler):

        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    progress._WARNED.clear()
    yield records
    logger.removeHandler(handler)
    progress._WARNED.clear()


def texts(records, level=None):
    return [
        r.getMessage() for r in records
        if (r.levelno >= logging.INFO if level is None else r.levelno == level)
    ]


def inner_cfg(tmp_path, images):
    write_coco(osp.join(tmp_path, 'ann.json'), images)
    return dict(
        type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
        data_prefix=dict(img=''), metainfo=dict(classes=('a', 'b')),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[])


# ---- misplaced and unknown keys ------------------------------------------
def test_dataset_keys_at_the_wrapper_level_show_the_nesting(tmp_path):
    cfg = dict(
        type='SniperChipDataset', data_root='data/my/',
        ann_file='annotations/train.json', data_prefix=dict(img='img/'),
        pipeline=[], scales=[1.0], valid_ranges=[(-1, -1)])
    with pytest.raises(TypeError) as info:
        DATASETS.build(cfg)
    msg = str(info.value)
    assert 'got ann_file, data_prefix, data_root, which belong to the ' \
        'wrapped dataset' in msg
    assert "type='SniperChipDataset'" in msg
    assert "dataset=dict(        # the wrapped dataset" in msg
    assert "type='CocoDataset', data_root='data/my/', " \
        "ann_file='annotations/train.json'" in msg


def test_missing_dataset_and_misplaced_key_next_to_dataset(tmp_path):
    with pytest.raises(TypeError, match='needs the dataset it wraps'):
        SniperChipDataset(scales=[1.0], valid_ranges=[(-1, -1)])
    with pytest.raises(TypeError, match='got filter_cfg, which belong'):
        SniperChipDataset(
            inner_cfg(tmp_path, random_images(1)), scales=[1.0],
            valid_ranges=[(-1, -1)], filter_cfg=dict(filter_empty_gt=True))


def test_unknown_key_lists_the_arguments(tmp_path):
    with pytest.raises(TypeError) as info:
        SniperChipDataset(
            inner_cfg(tmp_path, random_images(1)), scale=[1.0])
    assert "unexpected argument(s) ['scale']" in str(info.value)
    assert "'valid_ranges'" in str(info.value)


def test_bad_settings_fail_before_the_dataset_is_built():
    # the wrapped type does not exist: the settings check comes first
    with pytest.raises(ValueError, match=r'finest first.*scales\[0\] = 1.0'):
        SniperChipDataset(
            dict(type='NoSuchDataset'), scales=[1.0, 2.0],
            valid_ranges=[(-1, 64), (32, -1)])
    with pytest.raises(ValueError, match='chip_size = 32 is not larger'):
        SniperChipDataset(
            dict(type='NoSuchDataset'), scales=[1.0],
            valid_ranges=[(-1, -1)], chip_size=32)


# ---- GT valid at no scale ---------------------------------------------------
def test_warns_when_over_one_percent_valid_at_no_scale(tmp_path, logs):
    # 10 boxes of 20 px (valid) and 3 of 100 px (out of the only range)
    boxes = [[20 * i, 10, 20 * i + 20, 30] for i in range(10)]
    boxes += [[0, 100, 100, 200], [150, 100, 250, 200], [300, 100, 400, 200]]
    images = [dict(file_name='a.jpg', width=600, height=400, boxes=boxes)]
    SniperChipDataset(inner_cfg(tmp_path, images), scales=[1.0],
                      valid_ranges=[(-1, 50)], chip_size=256)
    warnings = texts(logs, logging.WARNING)
    assert len(warnings) == 1
    assert '3 of 13 GT boxes (23.1%) are valid at no scale' in warnings[0]
    assert '3 fall in no valid range' in warnings[0]
    assert 'analyze_scales.py' in warnings[0]
    info = [t for t in texts(logs, logging.INFO) if 'GT boxes:' in t]
    assert len(info) == 1
    assert '10 valid at some scale (per scale [10])' in info[0]
    assert '0 ignored' in info[0]
    assert '3 skipped as valid at no scale' in info[0]


def test_summary_counts_ignored_and_too_long(tmp_path, logs):
    # chip 128, stride 32: a box must be shorter than 95 px; the 120x20 box
    # is in range (sqrt-area 49) but too long. One crowd box.
    boxes = [[0, 0, 30, 30], [0, 50, 120, 70], [200, 200, 230, 230]]
    images = [dict(file_name='a.jpg', width=400, height=400, boxes=boxes,
                   crowd=[0, 0, 1])]
    SniperChipDataset(inner_cfg(tmp_path, images), scales=[1.0],
                      valid_ranges=[(-1, 60)], chip_size=128)
    info = [t for t in texts(logs) if 'GT boxes:' in t][0]
    assert '1 valid at some scale' in info
    assert '1 ignored (crowd' in info
    assert '1 too long for a chip of 128 px' in info
    assert '1 of 2 GT boxes (50.0%)' in texts(logs, logging.WARNING)[0]


def test_warns_when_a_pair_scale_is_finer_than_a_factor(tmp_path, logs):
    # (-1, 512) on a 300 x 200 image is 1.71x, finer than the 1.5x before it
    images = [dict(file_name='a.jpg', width=300, height=200,
                   boxes=[[0, 0, 30, 30]]),
              dict(file_name='b.jpg', width=1000, height=800,
                   boxes=[[0, 0, 30, 30]])]
    SniperChipDataset(inner_cfg(tmp_path, images), scales=[1.5, (-1, 512)],
                      valid_ranges=[(-1, 60), (40, -1)], chip_size=128)
    warnings = texts(logs, logging.WARNING)
    assert len(warnings) == 1
    assert 'on 1 of 2 images the scales' in warnings[0]
    assert '300x200 px gets the factors [1.5, 1.707]' in warnings[0]


def test_no_warning_at_one_percent_or_less(tmp_path, logs):
    images = [dict(file_name='a.jpg', width=400, height=400,
                   boxes=[[0, 0, 30, 30]])]
    SniperChipDataset(inner_cfg(tmp_path, images), scales=[1.0],
                      valid_ranges=[(-1, 60)], chip_size=128)
    assert texts(logs, logging.WARNING) == []


def test_summaries_only_on_rank_0(tmp_path, logs, monkeypatch):
    import mmsniper.datasets.chip_settings as cs
    import mmsniper.datasets.sniper_chip_dataset as scd
    import mmsniper.utils.progress as pg
    for module in (cs, scd, pg):
        monkeypatch.setattr(module, 'is_main_process', lambda: False)
    boxes = [[0, 0, 30, 30], [0, 0, 300, 300]]
    images = [dict(file_name='a.jpg', width=400, height=400, boxes=boxes)]
    SniperChipDataset(inner_cfg(tmp_path, images), scales=[1.0],
                      valid_ranges=[(-1, 60)], chip_size=128)
    assert texts(logs) == []


# ---- sampler, crop and RoI head --------------------------------------------
def test_plain_index_warns_once(tmp_path, logs):
    ds = SniperChipDataset(inner_cfg(tmp_path, random_images(3, seed=2)),
                           scales=[1.0, (-1, 256)],
                           valid_ranges=[(-1, 64), (32, -1)], chip_size=256)
    logs.clear()
    ds[ds.chip_table(0).index(0)]  # what SniperChipSampler yields
    assert texts(logs) == []
    ds[0]
    ds[1]
    warnings = texts(logs, logging.WARNING)
    assert len(warnings) == 1
    assert 'not SniperChipSampler' in warnings[0]
    assert "sampler=dict(type='SniperChipSampler'" in warnings[0]


def test_chip_crop_without_chip_warns_once(logs):
    results = dict(img=np.zeros((20, 30, 3), np.uint8), img_shape=(20, 30),
                   ori_shape=(20, 30), img_path='x/y.jpg')
    out = SniperChipCrop()(results)
    assert out['img'].shape == (20, 30, 3)  # passes through
    SniperChipCrop()(dict(results))
    warnings = texts(logs, logging.WARNING)
    assert len(warnings) == 1
    assert 'without a chip (x/y.jpg)' in warnings[0]
    assert "type='SniperChipDataset'" in warnings[0]


def test_roi_head_without_valid_range_warns_once(logs):
    proposals = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]))
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64)))
    head = SniperRoIHead(
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=8,
            featmap_strides=[4]),
        bbox_head=dict(type='Shared2FCBBoxHead', in_channels=8,
                       fc_out_channels=8, num_classes=2))
    assert head._filter_proposals(proposals, sample) is proposals
    head._filter_proposals(proposals, sample)
    warnings = texts(logs, logging.WARNING)
    assert len(warnings) == 1
    assert "no 'chip_valid_range'" in warnings[0]
    assert 'meta_keys' in warnings[0]
    # with the key: filtered, no warning
    logs.clear()
    sample = DetDataSample(metainfo=dict(chip_valid_range=(20, -1)))
    assert len(head._filter_proposals(proposals, sample)) == 0
    assert texts(logs) == []
    # filtering switched off on purpose: no warning
    head.filter_proposals_by_valid_range = False
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64)))
    assert head._filter_proposals(proposals, sample) is proposals
    assert texts(logs) == []


# ---- delayed progress ------------------------------------------------------
class Clock:

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_delayed_bar_appears_only_after_the_delay(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress.time, 'perf_counter', clock)
    monkeypatch.setattr(progress, 'is_main_process', lambda: True)
    bar = progress.DelayedProgressBar(10, 'doing things')
    for _ in range(3):
        bar.update()
        clock.now += 0.5
    assert not bar.shown and capsys.readouterr().out == ''
    clock.now += 1.0  # 2.5 s since start
    bar.update()
    assert bar.shown
    out = capsys.readouterr().out
    assert out.startswith('doing things\n')
    assert '4/10' in out  # steps before the bar appeared are counted
    bar.close()


def test_delayed_bar_silent_off_rank_0(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress.time, 'perf_counter', clock)
    monkeypatch.setattr(progress, 'is_main_process', lambda: False)
    bar = progress.DelayedProgressBar(10, 'doing things')
    clock.now += 10
    bar.update()
    assert not bar.shown and capsys.readouterr().out == ''


def test_chip_generation_and_proposal_loading_show_bars(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, 'PROGRESS_DELAY', 0.0)
    monkeypatch.setattr(progress, 'is_main_process', lambda: True)
    images = random_images(4, seed=3)
    ds = SniperChipDataset(inner_cfg(tmp_path, images), scales=[1.0],
                           valid_ranges=[(-1, -1)], chip_size=256)
    assert 'SniperChipDataset: generating chips\n' in capsys.readouterr().out
    infos = [dict(img_id=i + 1, img_path=f'/d/{i:04d}.jpg', height=100,
                  width=100) for i in range(4)]
    path = tmp_path / 'props.pkl'
    with open(path, 'wb') as f:
        pickle.dump({f'd/{i:04d}.jpg': dict(
            bboxes=np.array([[1, 1, 20, 20]], np.float32),
            scores=np.ones(1, np.float32)) for i in range(4)}, f)
    load_proposals(str(path), infos)
    out = capsys.readouterr().out
    assert f'checking {path}\n' in out and f'reading {path}\n' in out
    assert len(ds) > 0
    # the default delay hides fast steps
    monkeypatch.setattr(progress, 'PROGRESS_DELAY', 60.0)
    load_proposals(str(path), infos)
    assert 'checking' not in capsys.readouterr().out
