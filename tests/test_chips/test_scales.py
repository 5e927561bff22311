# Copyright (c) mmsniper contributors. All rights reserved.
"""Scale factors and valid ranges (SNIPER spec, section 1)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsniper.chips import (box_sqrt_areas, compute_scale_factor,
                            compute_scale_factors, in_valid_range,
                            normalize_valid_ranges)

COCO_SCALES = (3.0, 1.667, (-1, 512))
COCO_TRAIN_RANGES = ((-1, 80), (32, 150), (120, -1))


class TestComputeScaleFactor:

    @pytest.mark.parametrize('factor', [3.0, 1.667, 2, np.float32(0.5)])
    def test_plain_factor_ignores_image_size(self, factor):
        for image_size in [(480, 640), (3000, 50)]:
            assert compute_scale_factor(factor, image_size) == pytest.approx(
                float(factor))

    def test_short_side_target_without_cap_reached(self):
        # 480 x 640: short side 480 -> 800, long side 1066.7 <= 1333.
        assert compute_scale_factor((800, 1333),
                                    (480, 640)) == pytest.approx(800 / 480)

    def test_long_side_cap_reduces_factor(self):
        # short 480 -> 1400 would make the long side 4375 > 2000.
        assert compute_scale_factor((1400, 2000),
                                    (480, 1500)) == pytest.approx(2000 / 1500)

    def test_orientation_does_not_matter(self):
        landscape = compute_scale_factor((1400, 2000), (480, 1500))
        portrait = compute_scale_factor((1400, 2000), (1500, 480))
        assert landscape == portrait

    def test_cap_uses_rounded_long_side(self):
        # s = 1 gives a long side of 200.4, which rounds to the cap: kept.
        assert compute_scale_factor((100, 200), (100, 200.4)) == 1.0
        # 200.6 rounds to 201 > 200: capped.
        assert compute_scale_factor((100, 200),
                                    (100, 200.6)) == pytest.approx(200 / 200.6)

    def test_unbounded_short_target_sets_long_side(self):
        assert compute_scale_factor((-1, 512), (480, 640)) == 0.8
        assert compute_scale_factor((-1, 512), (640, 480)) == 0.8
        assert compute_scale_factor((-1, 512), (100, 256)) == 2.0

    def test_unbounded_cap(self):
        assert compute_scale_factor((800, -1),
                                    (400, 4000)) == pytest.approx(2.0)

    @pytest.mark.parametrize(
        'scale', [(800, 1333), [800, 1333],
                  np.array([800, 1333]), (np.int64(800), 1333.0)])
    def test_tuple_list_and_array_pairs(self, scale):
        assert compute_scale_factor(scale, (480, 640)) == 800 / 480

    @pytest.mark.parametrize('scale', [
        0, -1.0, -3,
        float('nan'),
        float('inf'), True, 'x', None, (800, ), (1, 2, 3), (0, 100), (-1, -1),
        (-2, 100), (800, 0), (800, -5), (float('nan'), 100), ('a', 100)
    ])
    def test_bad_scale_raises(self, scale):
        with pytest.raises(ValueError, match='scale'):
            compute_scale_factor(scale, (480, 640))

    @pytest.mark.parametrize('image_size', [(0, 10), (10, -1), (10, ),
                                            (float('nan'), 10), None,
                                            (10, 10, 3), ('a', 10)])
    def test_bad_image_size_raises(self, image_size):
        with pytest.raises(ValueError, match='image'):
            compute_scale_factor(2.0, image_size)

    def test_error_message_names_the_problem(self):
        with pytest.raises(ValueError, match='positive'):
            compute_scale_factor(-2.0, (10, 10))
        with pytest.raises(ValueError, match=r'\(short_target, long_cap\)'):
            compute_scale_factor((1, 2, 3), (10, 10))

    @settings(max_examples=300, deadline=None)
    @given(
        height=st.floats(10, 5000),
        width=st.floats(10, 5000),
        short_target=st.one_of(st.just(-1), st.integers(100, 2000)),
        long_cap=st.one_of(st.just(-1), st.integers(100, 3000)))
    def test_resolution_pair_bounds_and_attains_a_side(self, height, width,
                                                       short_target, long_cap):
        if short_target == -1 and long_cap == -1:
            return
        factor = compute_scale_factor((short_target, long_cap),
                                      (height, width))
        short_side, long_side = min(height, width), max(height, width)
        attained = []
        if short_target != -1:
            assert short_side * factor <= short_target * (1 + 1e-12)
            attained.append(
                math.isclose(short_side * factor, short_target, rel_tol=1e-12))
        if long_cap != -1:
            assert round(long_side * factor) <= long_cap
            attained.append(
                math.isclose(long_side * factor, long_cap, rel_tol=1e-12))
        assert any(attained)


class TestComputeScaleFactors:

    def test_coco_scales(self):
        factors = compute_scale_factors(COCO_SCALES, (480, 640))
        assert factors.dtype == np.float64
        np.testing.assert_allclose(factors, [3.0, 1.667, 0.8])

    def test_resolution_pairs(self):
        # 427 x 640: 1400 / 427 makes the long side 2098 > 2000, capped to
        # 2000 / 640; 800 / 427 gives 1199 <= 1280; 480 / 427 gives 719 >
        # 512, capped to 512 / 640.
        scales = [(1400, 2000), (800, 1280), (480, 512)]
        factors = compute_scale_factors(scales, (427, 640))
        np.testing.assert_array_equal(factors,
                                      [2000 / 640, 800 / 427, 512 / 640])
        for factor, scale in zip(factors, scales):
            assert factor == compute_scale_factor(scale, (427, 640))

    @pytest.mark.parametrize('scales,match', [([], 'at least one'),
                                              (2.0, 'sequence of scales'),
                                              ('abc', 'sequence of scales')])
    def test_bad_sequence_raises(self, scales, match):
        with pytest.raises(ValueError, match=match):
            compute_scale_factors(scales, (480, 640))

    def test_one_bad_scale_raises(self):
        with pytest.raises(ValueError, match=r'\(-1, -1\) sets no size'):
            compute_scale_factors([2.0, (-1, -1)], (480, 640))


class TestBoxSqrtAreas:

    def test_values(self):
        areas = box_sqrt_areas([[0, 0, 4, 9], [10, 10, 12, 10], [5, 5, 1, 9],
                                [0.5, 0.5, 2.5, 8.5], [1, 3, 5, 12],
                                [3, 1, 12, 5]])
        np.testing.assert_allclose(areas, [6.0, 0.0, 0.0, 4.0, 6.0, 6.0])

    def test_float32_boxes_measured_in_float64(self):
        boxes = np.array([[0.1, 0.2, 0.7, 0.9]], dtype=np.float32)
        x1, y1, x2, y2 = boxes[0].astype(np.float64)
        areas = box_sqrt_areas(boxes)
        assert areas.dtype == np.float64
        assert areas[0] == np.sqrt((x2 - x1) * (y2 - y1))
        assert box_sqrt_areas(np.zeros((0, 4), np.float32)).dtype == np.float64

    def test_empty(self):
        assert box_sqrt_areas(np.zeros((0, 4))).shape == (0, )
        assert box_sqrt_areas([]).shape == (0, )

    def test_bad_shape_raises(self):
        with pytest.raises(ValueError, match=r'\(N, 4\)'):
            box_sqrt_areas([[0, 0, 1]])


class TestInValidRange:

    def test_lower_bound_inclusive_upper_exclusive(self):
        boxes = [[0, 0, 32, 32], [0, 0, 150, 150], [0, 0, 31, 32],
                 [0, 0, 100, 100]]
        np.testing.assert_array_equal(
            in_valid_range(boxes, (32, 150)), [True, False, False, True])

    def test_open_sides(self):
        boxes = [[0, 0, 0, 0], [0, 0, 79, 80], [0, 0, 80, 80],
                 [0, 0, 5000, 5000]]
        np.testing.assert_array_equal(
            in_valid_range(boxes, (-1, 80)), [True, True, False, False])
        np.testing.assert_array_equal(
            in_valid_range(boxes, (120, -1)), [False, False, False, True])
        assert in_valid_range(boxes, (-1, -1)).all()

    def test_normalized_range_is_accepted(self):
        boxes = [[0, 0, 0, 0], [0, 0, 10, 10], [0, 0, 1000, 1000]]
        for valid_range in ((0, math.inf), (-1, -1)):
            np.testing.assert_array_equal(
                in_valid_range(boxes, valid_range), [True, True, True])
        np.testing.assert_array_equal(
            in_valid_range(boxes, (10, math.inf)), [False, True, True])

    def test_empty(self):
        assert in_valid_range(np.zeros((0, 4)), (32, 150)).shape == (0, )

    @pytest.mark.parametrize('valid_range', [(150, 32), (80, 80), (-2, 80),
                                             (0, -3), (1, ), 5, (1, 2, 3)])
    def test_bad_range_raises(self, valid_range):
        with pytest.raises(ValueError, match='valid range'):
            in_valid_range([[0, 0, 1, 1]], valid_range)


class TestNormalizeValidRanges:

    def test_coco_train_ranges(self):
        ranges = normalize_valid_ranges(COCO_TRAIN_RANGES, 3)
        assert ranges.shape == (3, 2)
        assert ranges.dtype == np.float64
        np.testing.assert_array_equal(ranges,
                                      [[0, 80], [32, 150], [120, np.inf]])

    def test_count_must_match(self):
        with pytest.raises(ValueError, match='3 scales'):
            normalize_valid_ranges(COCO_TRAIN_RANGES[:2], 3)

    def test_lo_must_be_below_hi(self):
        with pytest.raises(ValueError, match='smaller'):
            normalize_valid_ranges([(-1, 80), (150, 32)], 2)

    def test_negative_other_than_minus_one_raises(self):
        with pytest.raises(ValueError, match='-1'):
            normalize_valid_ranges([(-5, 80)], 1)

    def test_array_input(self):
        ranges = normalize_valid_ranges(np.array([[-1, 80], [32, -1]]), 2)
        np.testing.assert_array_equal(ranges, [[0, 80], [32, np.inf]])
