"""The test-time valid-range rule (reference lib/inference.py aggregate)."""
import numpy as np
import pytest

from mmsniper.chips import (in_test_valid_range, in_valid_range,
                            scale_valid_range_mask)


def _square(side):
    return np.array([[0.0, 0.0, side, side]])


@pytest.mark.parametrize('side,expected', [
    (32.0, False),  # area == lo^2: out (lo is exclusive at test time)
    (32.001, True),
    (90.0, True),  # area == hi^2: in (hi is inclusive at test time)
    (90.001, False),
])
def test_test_boundary_is_lo_exclusive_hi_inclusive(side, expected):
    assert in_test_valid_range(_square(side), (32, 90)).tolist() == [
        expected
    ]


def test_training_boundary_is_the_other_way_round():
    assert in_valid_range(_square(32), (32, 90)).tolist() == [True]
    assert in_valid_range(_square(90), (32, 90)).tolist() == [False]


def test_open_sides():
    boxes = np.array([[0, 0, 0, 0], [0, 0, 1e4, 1e4]], dtype=float)
    both = in_test_valid_range(boxes, (-1, 1e9)).tolist()
    assert both == [True, True]
    # lo = -1 or 0: no lower test at all (the reference tests lo only when
    # lo > 0), so even an empty box passes
    assert in_test_valid_range(boxes, (-1, 90)).tolist() == [True, False]
    assert in_test_valid_range(boxes, (0, 90)).tolist() == [True, False]
    assert in_test_valid_range(boxes, (75, -1)).tolist() == [False, True]


def test_scale_mask_uses_each_detection_scale():
    boxes = np.concatenate([_square(20), _square(20), _square(200)])
    ranges = [(-1, 90), (32, 180), (75, -1)]
    keep = scale_valid_range_mask(boxes, [0, 1, 2], ranges)
    assert keep.tolist() == [True, False, True]
    with pytest.raises(ValueError, match='scale indices'):
        scale_valid_range_mask(boxes, [0, 1, 3], ranges)
