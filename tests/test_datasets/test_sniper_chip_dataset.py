# Copyright (c) mmsniper contributors. All rights reserved.
import os.path as osp

import numpy as np
import pytest
from sniper_test_utils import random_images, write_coco

from mmsniper.chips import box_sqrt_areas, compute_scale_factors
from mmsniper.datasets.chip_table import ChipIndex
from mmsniper.datasets.sniper_chip_dataset import SniperChipDataset

SCALES = (2.0, 1.0, (-1, 512))
RANGES = ((-1, 64), (32, 160), (120, -1))


def build(tmp_path, images, **kwargs):
    ann = write_coco(osp.join(tmp_path, 'ann.json'), images)
    inner = dict(
        type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
        data_prefix=dict(img=''), metainfo=dict(classes=('a', 'b')),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[])
    assert osp.exists(ann)
    kwargs.setdefault('scales', SCALES)
    kwargs.setdefault('valid_ranges', RANGES)
    return SniperChipDataset(inner, chip_size=256, **kwargs)


def test_every_valid_gt_is_valid_in_exactly_one_chip_per_scale(tmp_path):
    images = random_images(12, seed=1)
    ds = build(tmp_path, images)
    table = ds.chip_table(0)
    assert len(table) == len(ds) > 0
    for img_idx, img in enumerate(images):
        boxes = np.array(img['boxes'], dtype=float).reshape(-1, 4)
        factors = compute_scale_factors(SCALES, (img['height'], img['width']))
        rows = np.flatnonzero(table.img_idx == img_idx)
        for scale_idx, (s, (lo, hi)) in enumerate(zip(factors, RANGES)):
            lo = 0 if lo == -1 else lo
            hi = np.inf if hi == -1 else hi
            area = box_sqrt_areas(boxes)
            sides = np.maximum(boxes[:, 2] - boxes[:, 0],
                               boxes[:, 3] - boxes[:, 1])
            fits = (sides < (256 - 32 - 1) / s) | (
                max(img['height'], img['width']) * s <= 256)
            expected = np.flatnonzero((area >= lo) & (area < hi) & fits)
            scale_rows = rows[table.scale_idx[rows] == scale_idx]
            owners = np.concatenate(
                [table.valid_gt(r) for r in scale_rows] + [np.zeros(0, int)])
            assert sorted(owners.tolist()) == expected.tolist()
            for r in scale_rows:
                x1, y1, x2, y2 = table.boxes[r]
                assert x1 >= -1e-3 and y1 >= -1e-3
                assert x2 <= img['width'] + 1e-3
                assert y2 <= img['height'] + 1e-3
                inside = boxes[table.valid_gt(r)]
                assert (inside[:, :2] >= table.boxes[r, :2] - 1e-2).all()
                assert (inside[:, 2:] <= table.boxes[r, 2:] + 1e-2).all()


def test_chip_dict_and_int_index_agree(tmp_path):
    ds = build(tmp_path, random_images(3, seed=2, max_boxes=10))
    table = ds.chip_table(0)
    info = ds.get_data_info(0)
    chip = info['sniper_chip']
    assert np.allclose(chip['box'], table.boxes[0])
    assert chip['valid_gt'].tolist() == table.valid_gt(0).tolist()
    assert chip['chip_size'] == (256, 256)
    assert chip['valid_range'] == RANGES[chip['scale_idx']]
    size = (info['height'], info['width'])
    assert chip['scale_factor'] == pytest.approx(
        compute_scale_factors(SCALES, size)[chip['scale_idx']])
    same = ds.get_data_info(table.index(0))
    assert same['sniper_chip']['valid_gt'].tolist() == \
        chip['valid_gt'].tolist()


def test_crowd_boxes_never_drive_chips(tmp_path):
    images = [dict(file_name='a.jpg', width=1000, height=800,
                   boxes=[[10, 10, 40, 40], [600, 500, 630, 530]],
                   crowd=[1, 0])]
    ds = build(tmp_path, images)
    table = ds.chip_table(0)
    owners = np.concatenate([table.valid_gt(r) for r in range(len(table))])
    assert 0 not in owners and 1 in owners


def test_images_without_boxes_give_no_chips(tmp_path):
    images = random_images(2, seed=3, max_boxes=5)
    images.append(dict(file_name='empty.jpg', width=900, height=700))
    ds = build(tmp_path, images)
    assert 2 not in set(ds.chip_table(0).img_idx.tolist())
    assert ds.chip_stats()['images_without_chips'] >= 1


def test_degenerate_boxes_warn_or_raise(tmp_path):
    images = [dict(file_name='bad.jpg', width=600, height=600,
                   boxes=[[10, 10, 50, 50], [100, 100, 100, 140]])]
    ann = write_coco(osp.join(tmp_path, 'ann.json'), images)
    # mmdet's CocoDataset drops zero-area boxes itself, so feed the wrapper a
    # dataset whose data_info still has one.
    ds = build(tmp_path, images)
    info = ds.dataset.get_data_info(0)
    assert len(info['instances']) == 1 and osp.exists(ann)

    class WithDegenerate:
        metainfo = dict(classes=('a', 'b'))
        test_mode = False

        def __len__(self):
            return 1

        def get_data_info(self, idx):
            return dict(img_path='bad.jpg', height=600, width=600,
                        instances=[
                            dict(bbox=[10, 10, 50, 50], bbox_label=0,
                                 ignore_flag=0),
                            dict(bbox=[100, 100, 90, 140], bbox_label=0,
                                 ignore_flag=0)])

    ok = SniperChipDataset(WithDegenerate(), SCALES, RANGES, chip_size=256)
    assert ok._degenerate[0] == 1 and 'bad.jpg' in ok._degenerate[1][0]
    owners = {int(g) for r in range(len(ok)) for g in
              ok.chip_table(0).valid_gt(r)}
    assert owners == {0}
    with pytest.raises(ValueError, match='bad.jpg'):
        SniperChipDataset(WithDegenerate(), SCALES, RANGES, chip_size=256,
                          on_degenerate_box='error')


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match='valid_ranges'):
        build(tmp_path, random_images(1), valid_ranges=RANGES[:2])
    with pytest.raises(ValueError, match='stride_jitter'):
        build(tmp_path, random_images(1), stride_jitter=(60, 56))


def test_stride_jitter_redraws_chips_per_epoch(tmp_path):
    images = random_images(10, seed=4, min_size=1200, max_size=1800,
                           max_boxes=40)
    ds = build(tmp_path, images, stride_jitter=(8, 64))
    strides = {ds.epoch_stride(e, seed=7) for e in range(8)}
    assert len(strides) > 1
    assert ds.epoch_stride(3, seed=7) == ds.epoch_stride(3, seed=7)
    tables = [ds.chip_table(e, seed=7) for e in range(8)]
    assert any(len(t) != len(tables[0]) or
               not np.array_equal(t.boxes, tables[0].boxes)
               for t in tables[1:])
    again = ds.chip_table(5, seed=7)
    assert np.array_equal(again.boxes, tables[5].boxes)


def test_test_mode_is_the_wrapped_dataset(tmp_path):
    images = random_images(3, seed=5)
    ann = write_coco(osp.join(tmp_path, 'ann.json'), images)
    ds = SniperChipDataset(
        dict(type='CocoDataset', data_root=str(tmp_path), ann_file=ann,
             data_prefix=dict(img=''), metainfo=dict(classes=('a', 'b')),
             test_mode=True, pipeline=[]), SCALES, RANGES)
    assert len(ds) == 3
    assert 'sniper_chip' not in ds.get_data_info(0)
    assert ds[1]['img_id'] == 2


def test_getitem_runs_the_pipeline_with_the_chip(tmp_path):
    images = random_images(2, seed=6, max_boxes=8)
    ds = build(tmp_path, images, pipeline=[
        dict(type='mmdet.LoadAnnotations', with_bbox=True)])
    chip = ds.chip_table(0).index(0)
    out = ds[chip]
    assert isinstance(chip, ChipIndex)
    assert out['sniper_chip']['valid_gt'].tolist() == list(chip.valid_gt)
    assert out['gt_bboxes'].shape[0] == len(
        ds.dataset.get_data_info(chip.img_idx)['instances'])
