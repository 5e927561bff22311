# Copyright (c) mmsniper contributors. All rights reserved.
"""Chips on real annotation files from ../shared (skipped without it)."""
import json

import numpy as np
import pytest
from conftest import shared_path

from mmsniper.chips import compute_scale_factors
from mmsniper.datasets import SniperChipDataset

COCO_SCALES = (3.0, 1.667, (-1, 512))
COCO_RANGES = ((-1, 80), (32, 150), (120, -1))
AERIAL_SCALES = (2.0, 1.0, (-1, 512))
AERIAL_RANGES = ((-1, 40), (24, 160), (120, -1))

CASES = [
    ('data/kit_ais_cars/annotations_coco.json', AERIAL_SCALES,
     AERIAL_RANGES),
    ('data/visdrone50_annotations/visdrone2019-det-train-first50image.json',
     AERIAL_SCALES, AERIAL_RANGES),
    ('data/coco_val2014_100img_ann/coco_val2014_100img/'
     'gt_instances_val2014_100img.json', COCO_SCALES, COCO_RANGES),
]


def driving_rule(boxes, image_size, factor, valid_range, chip_size=512,
                 stride=32):
    """The spec's chip-driving rule, written out (not the code under test).

    Clipped to the image: both sides >= 2 px, ``lo <= sqrt(w * h) < hi``
    (-1 open), and each side ``< (chip - stride - 1) / s`` along an axis
    where the scaled image is larger than a chip.
    """
    height, width = image_size
    clipped = np.clip(boxes, 0, [width, height, width, height])
    box_w = np.maximum(clipped[:, 2] - clipped[:, 0], 0)
    box_h = np.maximum(clipped[:, 3] - clipped[:, 1], 0)
    lo, hi = valid_range
    sqrt_areas = np.sqrt(box_w * box_h)
    rule = (box_w >= 2) & (box_h >= 2)
    rule &= (sqrt_areas >= lo) if lo != -1 else True
    rule &= (sqrt_areas < hi) if hi != -1 else True
    limit = (chip_size - stride - 1) / factor
    if width * factor > chip_size + 1e-6:
        rule &= box_w < limit
    if height * factor > chip_size + 1e-6:
        rule &= box_h < limit
    return rule


@pytest.mark.parametrize('ann, scales, ranges', CASES,
                         ids=['kit_ais', 'visdrone50', 'coco_val2014_100'])
def test_every_valid_real_box_is_in_its_chip(ann, scales, ranges):
    path = shared_path(ann)
    with open(path) as f:
        coco = json.load(f)
    classes = tuple(c['name'] for c in coco['categories'])
    ds = SniperChipDataset(
        dict(type='CocoDataset', ann_file=path, data_prefix=dict(img=''),
             metainfo=dict(classes=classes),
             filter_cfg=dict(filter_empty_gt=False), pipeline=[]),
        scales, ranges, chip_size=512)
    table = ds.chip_table(0)
    stats = ds.chip_stats()
    assert stats['num_images'] == len(coco['images'])
    checked = num_valid = 0
    for img_idx, (boxes, gt_ids, size) in enumerate(ds._image_gt):
        rows = np.flatnonzero(table.img_idx == img_idx)
        factors = compute_scale_factors(scales, size)
        height, width = size
        for k, (s, valid_range) in enumerate(zip(factors, ranges)):
            valid = driving_rule(boxes, size, s, valid_range)
            num_valid += int(valid.sum())
            scale_rows = rows[table.scale_idx[rows] == k]
            owner = {}
            for r in scale_rows:
                x1, y1, x2, y2 = table.boxes[r]
                assert -1e-3 <= x1 and x2 <= width + 1e-3
                assert -1e-3 <= y1 and y2 <= height + 1e-3
                assert (x2 - x1) * s <= 512 + 1e-3
                for g in table.valid_gt(r):
                    assert g not in owner, 'GT valid in two chips'
                    owner[g] = r
            want = set(gt_ids[valid].tolist())
            assert set(owner) == want
            clipped = np.clip(boxes, 0, [width, height, width, height])
            for pos, g in enumerate(gt_ids):
                if g in owner:
                    chip = table.boxes[owner[g]]
                    box = clipped[pos]
                    assert (box[:2] >= chip[:2] - 1e-2).all()
                    assert (box[2:] <= chip[2:] + 1e-2).all()
                    checked += 1
    assert checked == num_valid > 0
