# Copyright (c) mmsniper contributors. All rights reserved.
"""Chip settings checks and per-box validity (mmsniper.chips.settings)."""
import numpy as np
import pytest

from mmsniper.chips import (check_chip_settings, chip_driving_mask,
                            compute_scale_factors, gt_scale_validity,
                            image_scale_factors)

GOOD = dict(
    scales=[3.0, 1.667, (-1, 512)],
    valid_ranges=[(-1, 80), (32, 150), (120, -1)],
    chip_size=512,
    stride=32)


def check(**changes):
    kwargs = dict(GOOD, **changes)
    check_chip_settings(**kwargs)


def test_reference_settings_pass():
    check()
    check(scales=[2.0], valid_ranges=[(-1, -1)])
    check(scales=[(1400, 2000), (800, 1280), (480, 512)])  # pairs, ordered
    check(stride_jitter=(56, 60))


@pytest.mark.parametrize('changes, words', [
    (dict(scales=[3.0, 0.0, (-1, 512)]),
     ['SniperChipDataset.scales[1] = 0.0', 'positive']),
    (dict(scales=[3.0, -2.0, (-1, 512)]),
     ['scales[1] = -2.0', 'positive and finite']),
    (dict(scales=[3.0, 1.667, (0, 512)]), ['scales[2]', '(short_side_target']),
    (dict(scales=[1.667, 3.0, (-1, 512)]),
     ['finest first', 'scales[0] = 1.667', 'scales[1] = 3.0',
      'reorder scales']),
    (dict(scales=[(800, 1280), (1400, 2000), (-1, 512)]),
     ['finest first', 'scales[0] = (800.0, 1280.0)']),
    (dict(scales=[3.0, 3.0, (-1, 512)]), ['finest first']),
    (dict(valid_ranges=[(-1, 80), (150, 32), (120, -1)]),
     ['valid_ranges[1] = (150, 32)', 'lo must be smaller than hi']),
    (dict(valid_ranges=[(-1, 80), (32, 32), (120, -1)]),
     ['valid_ranges[1]', 'lo must be smaller than hi']),
    (dict(valid_ranges=[(120, -1), (32, 150), (-1, 80)]),
     ['ordered like the scales', 'valid_ranges[1] = (32, 150)',
      'takes smaller objects']),
    (dict(valid_ranges=[(-1, 80), (32, 150)]),
     ['3 scales but 2 valid_ranges']),
    (dict(chip_size=32, stride=32),
     ['SniperChipDataset.chip_size = 32', 'not larger than',
      'SniperChipDataset.stride = 32']),
    (dict(chip_size=16, stride=32), ['chip_size = 16', 'stride = 32']),
    (dict(chip_size=58, stride_jitter=(56, 60)),
     ['chip_size = 58', 'stride_jitter = (56, 60)']),
    (dict(stride=0), ['SniperChipDataset.stride = 0', 'positive integer']),
    (dict(scales=[]), ['SniperChipDataset.scales', 'finest first']),
])
def test_each_bad_setting_names_key_and_fix(changes, words):
    with pytest.raises(ValueError) as info:
        check(**changes)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_validity_matches_chip_driving_mask():
    rng = np.random.default_rng(0)
    scales = [2.5, 1.0, (-1, 300)]
    ranges = [(-1, 40), (20, 120), (100, -1)]
    boxes, sizes = [], []
    for _ in range(60):
        h, w = rng.integers(80, 1600, size=2)
        n = 20
        xy = rng.uniform(-20, [w, h], size=(n, 2))
        wh = np.exp(rng.uniform(0, 6.5, size=(n, 2)))
        # elongated boxes too
        wh[::4, 0] *= 6
        boxes.append(np.hstack([xy, xy + wh]))
        sizes.append((h, w))
    flat = np.concatenate(boxes)
    per_box = np.repeat(np.array(sizes), 20, axis=0)
    factors = image_scale_factors(scales, np.array(sizes))
    got = gt_scale_validity(flat, per_box, np.repeat(factors, 20, axis=0),
                            ranges, 256, 32)
    expected = np.concatenate([
        np.stack([
            chip_driving_mask(b, f, r, 256, 32, image_size=size)
            for f, r in zip(compute_scale_factors(scales, size), ranges)
        ], axis=1) for b, size in zip(boxes, sizes)
    ])
    np.testing.assert_array_equal(got.valid, expected)
    # every box invalid everywhere has exactly one reason
    reasons = (got.too_small.astype(int) + got.out_of_ranges +
               got.too_large_for_chip)
    np.testing.assert_array_equal(reasons, ~got.valid_anywhere)
    assert got.counts()['invalid'] == int((~expected.any(axis=1)).sum()) > 0
    assert got.counts()['too_large_for_chip'] > 0


def test_validity_reasons_by_hand():
    # image 1000x1000, one scale 1.0 with range (10, 50), chip 128, stride
    # 32: max side < 95 px.
    boxes = np.array([
        [0, 0, 1, 30],  # 1 px wide: too small
        [0, 0, 100, 100],  # sqrt-area 100: out of range
        [0, 0, 100, 10],  # sqrt-area 31.6, long side 100 >= 95: too long
        [0, 0, 30, 30],  # valid
    ], dtype=float)
    got = gt_scale_validity(boxes, np.full((4, 2), 1000.0), np.ones((4, 1)),
                            [(10, 50)], 128, 32)
    assert got.valid[:, 0].tolist() == [False, False, False, True]
    assert got.too_small.tolist() == [True, False, False, False]
    assert got.out_of_ranges.tolist() == [False, True, False, False]
    assert got.too_large_for_chip.tolist() == [False, False, True, False]
