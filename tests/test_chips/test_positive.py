# Copyright (c) mmsniper contributors. All rights reserved.
"""Positive chips (SNIPER spec, section 2): grid, greedy cover, assignment."""
import ast
import math
import pathlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import mmsniper.chips.grid_cover as grid_cover_module
from chip_test_utils import (COCO_SCALES, COCO_TRAIN_RANGES, TOLERANCE,
                             assert_chips_inside_image,
                             clip_to_image, contains)
from mmsniper.chips import (ScaleChips, assign_boxes_to_chips,
                            candidate_chip_origins, candidate_chips,
                            chip_driving_mask, compute_scale_factor,
                            generate_multiscale_chips, generate_positive_chips,
                            generate_scale_chips, greedy_cover,
                            grid_greedy_cover)
from mmsniper.chips.geometry import axis_origins_and_ends


def reference_axis(extent, chip_size, stride):
    """Origins and ends of one axis, written out as the rules say."""
    if extent <= chip_size + TOLERANCE:
        return [0.0], [extent]
    origins = []
    origin = 0
    while origin < extent - chip_size - TOLERANCE:
        origins.append(float(origin))
        origin += stride
    ends = [origin + chip_size for origin in origins] + [extent]
    return origins + [extent - chip_size], ends


def reference_driving(box, image_size, factor, valid_range, chip_size,
                      stride):
    """Whether one GT drives chips, the spec's rule written out per box.

    Clip to the image; both sides >= 2 px; ``lo <= sqrt(w * h) < hi``
    (-1 open); ``side < (chip - stride - 1) / s`` along every axis where
    the scaled image is larger than a chip (the reference's ``max(w, h)``
    test when neither axis fits in one chip).
    """
    height, width = image_size
    x1, x2 = (min(max(value, 0.0), width) for value in (box[0], box[2]))
    y1, y2 = (min(max(value, 0.0), height) for value in (box[1], box[3]))
    box_width, box_height = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
    if box_width < 2 or box_height < 2:
        return False
    lo, hi = valid_range
    sqrt_area = math.sqrt(box_width * box_height)
    if (lo != -1 and sqrt_area < lo) or (hi != -1 and sqrt_area >= hi):
        return False
    limit = (chip_size - stride - 1) / factor
    for extent, side in ((width, box_width), (height, box_height)):
        if extent * factor > chip_size + TOLERANCE and side >= limit:
            return False
    return True


def reference_scale_chips(gt_bboxes, image_size, factor, valid_range,
                          chip_size, stride):
    """Brute-force positive chips of one scale, raster ties.

    Returns the chips (orig px), the validity of each GT (by
    :func:`reference_driving`) and, per GT, the index of the first picked
    chip that contains it (-1 for an invalid GT).
    """
    height, width = image_size
    valid = np.array([
        reference_driving(box, image_size, factor, valid_range, chip_size,
                          stride) for box in np.asarray(gt_bboxes, float)
    ],
                     dtype=bool).reshape(-1)
    boxes = clip_to_image(np.asarray(gt_bboxes, float).reshape(-1, 4),
                          image_size)[valid] * factor
    x_origins, x_ends = reference_axis(width * factor, chip_size, stride)
    y_origins, y_ends = reference_axis(height * factor, chip_size, stride)
    candidates = np.array(
        [[x_origins[col], y_origins[row], x_ends[col], y_ends[row]]
         for row in range(len(y_origins)) for col in range(len(x_origins))])
    box_sets = [{
        index
        for index, box in enumerate(boxes) if contains(chip, box, 0)
    } for chip in candidates]
    uncovered = set(range(len(boxes)))
    picks = []
    while True:
        gains = [len(box_set & uncovered) for box_set in box_sets]
        best = int(np.argmax(gains)) if gains else 0
        if not gains or gains[best] == 0:
            break
        picks.append(best)
        uncovered -= box_sets[best]
    assert not uncovered, 'a valid box no candidate chip contains'
    first_pick = [
        next(order for order, pick in enumerate(picks)
             if contains(candidates[pick], box, 0)) for box in boxes
    ]
    gt_chip = np.full(len(valid), -1, dtype=np.int64)
    gt_chip[valid] = first_pick
    return candidates[picks].reshape(-1, 4) / factor, valid, gt_chip


# -- strategies --------------------------------------------------------------


@st.composite
def gt_boxes(draw, height, width, max_boxes):
    """Random boxes: tiny, ordinary, huge, partly or fully off the image."""
    num_boxes = draw(st.integers(0, max_boxes))
    boxes = []
    for _ in range(num_boxes):
        x1 = draw(st.floats(-0.2 * width, 1.1 * width))
        y1 = draw(st.floats(-0.2 * height, 1.1 * height))
        box_width = draw(
            st.one_of(
                st.floats(0, 3), st.floats(3, 200), st.floats(0, 1.5 * width)))
        box_height = draw(
            st.one_of(
                st.floats(0, 3), st.floats(3, 200), st.floats(0,
                                                              1.5 * height)))
        boxes.append([x1, y1, x1 + box_width, y1 + box_height])
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


scale_specs = st.one_of(
    st.floats(0.05, 3.0),
    st.tuples(
        st.sampled_from([-1, 200, 480, 800, 1400]),
        st.sampled_from([512, 1000, 1333, 2000])),
    st.tuples(st.sampled_from([300, 600, 900]), st.just(-1)))


@st.composite
def valid_ranges(draw):
    lo = draw(st.sampled_from([-1, 0, 16, 32, 75, 120]))
    hi = draw(st.sampled_from([-1, 80, 150, 180, 400, 2000]))
    assume(hi == -1 or hi > max(lo, 0))
    return lo, hi


@st.composite
def chip_setups(draw, min_side=50, max_side=3000, max_boxes=25):
    height = draw(st.integers(min_side, max_side))
    width = draw(st.integers(min_side, max_side))
    chip_size = draw(st.sampled_from([128, 256, 512]))
    stride = draw(st.sampled_from([8, 16, 32, 56, 59]))
    assume(stride < chip_size)
    return dict(
        gt_bboxes=draw(gt_boxes(height, width, max_boxes)),
        image_size=(height, width),
        scale=draw(scale_specs),
        valid_range=draw(valid_ranges()),
        chip_size=chip_size,
        stride=stride)


# -- candidate grid ----------------------------------------------------------


class TestCandidateGrid:

    def test_origins_regular_grid_plus_flush_chip(self):
        origins = candidate_chip_origins(1920, 512, 32)
        np.testing.assert_array_equal(origins[:-1], np.arange(0, 1408, 32))
        assert origins[-1] == 1408

    def test_flush_origin_off_grid(self):
        np.testing.assert_allclose(
            candidate_chip_origins(600.5, 512, 32), [0, 32, 64, 88.5])

    @pytest.mark.parametrize('extent', [512, 511.5, 100, 1])
    def test_extent_within_chip_gives_one_origin(self, extent):
        np.testing.assert_array_equal(
            candidate_chip_origins(extent, 512, 32), [0])

    def test_float_noise_above_chip_gives_one_origin(self):
        # (-1, 512) on a long side of 333 px: 333 * (512 / 333) ~ 512.
        extent = 333 * (512 / 333)
        np.testing.assert_array_equal(
            candidate_chip_origins(extent, 512, 32), [0])

    @settings(max_examples=200, deadline=None)
    @given(
        extent=st.floats(1, 20000),
        chip_size=st.sampled_from([64, 128, 512]),
        stride=st.integers(1, 80))
    def test_origins_sorted_unique_spaced_and_flush(self, extent, chip_size,
                                                    stride):
        origins = candidate_chip_origins(extent, chip_size, stride)
        assert origins[0] == 0
        if extent <= chip_size:
            assert len(origins) == 1
            return
        assert (np.diff(origins) > 0).all()
        assert (np.diff(origins) <= stride + 1e-6).all()
        assert origins[-1] == pytest.approx(max(extent - chip_size, 0))
        np.testing.assert_array_equal(origins[:-1] % stride, 0)

    def test_candidate_chips_raster_order(self):
        chips = candidate_chips((600, 700), 512, 64)
        x_origins = candidate_chip_origins(700, 512, 64)
        y_origins = candidate_chip_origins(600, 512, 64)
        assert chips.shape == (len(x_origins) * len(y_origins), 4)
        np.testing.assert_array_equal(chips[:len(x_origins), 0], x_origins)
        np.testing.assert_array_equal(chips[::len(x_origins), 1], y_origins)
        np.testing.assert_allclose(chips[:, 2] - chips[:, 0], 512)
        np.testing.assert_allclose(chips[:, 3] - chips[:, 1], 512)
        assert chips[:, 2].max() == 700 and chips[:, 3].max() == 600

    def test_candidate_chips_truncated_only_where_image_is_small(self):
        chips = candidate_chips((300, 1000), 512, 32)
        np.testing.assert_array_equal(chips[:, 1], 0)
        np.testing.assert_array_equal(chips[:, 3], 300)
        np.testing.assert_allclose(chips[:, 2] - chips[:, 0], 512)

    def test_small_image_one_chip(self):
        np.testing.assert_array_equal(
            candidate_chips((200, 300.5), 512, 32), [[0, 0, 300.5, 200]])

    @pytest.mark.parametrize('chip_size,stride', [(0, 32), (512, 0),
                                                  (512.5, 32), (512, -1),
                                                  (True, 32)])
    def test_bad_chip_params_raise(self, chip_size, stride):
        with pytest.raises(ValueError, match='positive integer'):
            candidate_chips((600, 600), chip_size, stride)


# -- chip driving mask ----------------------------------------------------


class TestChipDrivingMask:

    def test_valid_range_on_sqrt_area(self):
        boxes = [[0, 0, 20, 20], [0, 0, 100, 100], [0, 0, 200, 200]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 1.0, (32, 150), 512, 32),
            [False, True, False])

    def test_long_side_must_leave_room_for_stride(self):
        # (512 - 32 - 1) / 3 = 159.67 orig px.
        boxes = [[0, 0, 159, 10], [0, 0, 10, 160], [0, 0, 159.6, 159.6]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 3.0, (-1, -1), 512, 32),
            [True, False, True])

    @pytest.mark.parametrize('factor', [1.0, 3.0, 0.7])
    def test_fit_limit_is_chip_minus_stride_minus_one(self, factor):
        # The limit is (512 - 32 - 1) / s, strict; (512 - 32) / s would
        # accept the third and fourth boxes.
        limit = 479 / factor
        boxes = [[0, 0, limit * 0.999, 10], [0, 0, 10, limit],
                 [0, 0, limit * 1.001, 10], [0, 0, 10, 479.5 / factor],
                 [0, 0, 480 / factor, 10]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, factor, (-1, -1), 512, 32),
            [True, False, False, False, False])
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, factor, (-1, -1), 512, 32,
                              (5000, 5000)),
            [True, False, False, False, False])

    def test_fit_limit_follows_the_stride(self):
        # stride 59: (512 - 59 - 1) / 1 = 452.
        boxes = [[0, 0, 451.9, 10], [0, 0, 452, 10], [0, 0, 10, 452.5]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 1.0, (-1, -1), 512, 59),
            [True, False, False])

    def test_sides_under_two_pixels_skipped(self):
        boxes = [[0, 0, 1.9, 50], [0, 0, 50, 1.5], [0, 0, 2, 2],
                 [0, 0, 1.999, 50], [0, 0, 50, 1.999], [0, 0, 2, 50],
                 [0, 0, 50, 2]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 1.0, (-1, -1), 512, 32),
            [False, False, True, False, False, True, True])

    def test_two_pixel_rule_is_in_original_pixels(self):
        # At s = 3 a 1.9 px side is 5.7 scaled px: still skipped.
        boxes = [[0, 0, 1.9, 50], [0, 0, 2, 50]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 3.0, (-1, -1), 512, 32), [False, True])

    def test_valid_range_lo_inclusive_hi_exclusive(self):
        # The reference trains on lo <= sqrt(w * h) < hi (data_workers.py).
        boxes = [[0, 0, 32, 32], [0, 0, 31.99, 32], [0, 0, 150, 150],
                 [0, 0, 149.99, 150], [0, 0, 16, 64], [0, 0, 100, 225]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 1.0, (32, 150), 512, 32, (1000, 1000)),
            [True, False, False, True, True, False])

    def test_open_valid_range_sides(self):
        boxes = [[0, 0, 2, 2], [0, 0, 79.99, 80], [0, 0, 80, 80],
                 [0, 0, 400, 400]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 1.0, (-1, 80), 512, 32),
            [True, True, False, False])
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 1.0, (120, -1), 512, 32),
            [False, False, False, True])

    @settings(max_examples=200, deadline=None)
    @given(setup=chip_setups(max_boxes=30))
    def test_matches_the_rule_written_out(self, setup):
        height, width = setup['image_size']
        factor = compute_scale_factor(setup['scale'], (height, width))
        expected = [
            reference_driving(box, (height, width), factor,
                              setup['valid_range'], setup['chip_size'],
                              setup['stride']) for box in setup['gt_bboxes']
        ]
        np.testing.assert_array_equal(
            chip_driving_mask(setup['gt_bboxes'], factor,
                              setup['valid_range'], setup['chip_size'],
                              setup['stride'], (height, width)),
            np.array(expected, dtype=bool).reshape(-1))

    def test_image_within_one_chip_never_rejects_for_size(self):
        # 640 x 480 at (-1, 512): the scaled image is one 512 x 384 chip.
        factor = compute_scale_factor((-1, 512), (480, 640))
        boxes = [[0, 0, 640, 480], [10, 10, 630, 400]]
        assert chip_driving_mask(boxes, factor, (120, -1), 512, 32,
                                 (480, 640)).all()
        assert not chip_driving_mask(boxes, factor, (120, -1), 512, 32).any()

    def test_only_the_fitting_axis_is_relaxed(self):
        # 2000 x 100 at factor 1: x does not fit in 512, y does.
        boxes = [[0, 0, 400, 100], [0, 0, 480, 100]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 1.0, (-1, -1), 512, 32, (100, 2000)),
            [True, False])

    def test_boxes_clipped_to_image_first(self):
        boxes = [[-100, -100, 20, 20], [630, 470, 700, 520],
                 [700, 10, 800, 40]]
        np.testing.assert_array_equal(
            chip_driving_mask(boxes, 1.0, (15, -1), 512, 32, (480, 640)),
            [True, False, False])

    @pytest.mark.parametrize(
        'boxes', [[[0, 0, 1]], [[[0, 0, 1, 1]]], [[0, 0, np.nan, 1]],
                  [[0, 0, np.inf, 1]], [[0, 0, 'a', 1]]])
    def test_bad_boxes_raise(self, boxes):
        with pytest.raises(ValueError, match='gt_bboxes'):
            chip_driving_mask(boxes, 1.0, (-1, -1), 512, 32)


# -- greedy cover and assignment ----------------------------------------------


class TestGreedyCover:

    def test_picks_chip_with_most_boxes_first(self):
        chips = [[0, 0, 10, 10], [0, 0, 100, 100], [50, 50, 150, 150]]
        boxes = [[1, 1, 5, 5], [60, 60, 70, 70], [120, 120, 140, 140],
                 [20, 20, 30, 30]]
        np.testing.assert_array_equal(greedy_cover(chips, boxes), [1, 2])

    def test_ties_lowest_index_without_rng(self):
        chips = [[0, 0, 10, 10], [0, 0, 20, 20], [-5, -5, 20, 20]]
        np.testing.assert_array_equal(greedy_cover(chips, [[1, 1, 5, 5]]), [0])

    def test_ties_at_random_with_rng(self):
        chips = [[x, 0, x + 100, 100] for x in range(0, 50, 5)]
        picks = {
            int(
                greedy_cover(chips, [[50, 10, 60, 20]],
                             np.random.default_rng(seed))[0])
            for seed in range(40)
        }
        assert len(picks) > 3

    def test_boxes_no_chip_contains_are_left(self):
        chips = [[0, 0, 10, 10]]
        np.testing.assert_array_equal(
            greedy_cover(chips, [[5, 5, 15, 15], [1, 1, 2, 2]]), [0])
        picks = greedy_cover(chips, [[5, 5, 15, 15]])
        assert picks.shape == (0, ) and picks.dtype == np.int64

    def test_empty_inputs(self):
        assert greedy_cover(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, )
        assert greedy_cover([[0, 0, 1, 1]], np.zeros((0, 4))).shape == (0, )

    def test_bad_rng_raises(self):
        with pytest.raises(ValueError, match='rng'):
            greedy_cover([[0, 0, 1, 1]], [[0, 0, 1, 1]], rng=0)

    def test_bad_input_names_the_argument(self):
        with pytest.raises(ValueError, match=r'^chips must'):
            greedy_cover([[0, 0, 1]], [[0, 0, 5, 5]])
        with pytest.raises(ValueError, match=r'^boxes must'):
            greedy_cover([[0, 0, 5, 5]], [[0, 0, np.nan, 1]])


class TestAssignBoxesToChips:

    def test_containing_chip_beats_larger_overlap_elsewhere(self):
        chips = [[0, 0, 50, 50], [0, 0, 100, 100], [0, 0, 200, 200]]
        boxes = [[10, 10, 20, 20], [60, 60, 150, 150], [150, 150, 250, 250]]
        np.testing.assert_array_equal(
            assign_boxes_to_chips(boxes, chips), [0, 2, 2])

    def test_largest_intersection_over_box_area(self):
        chips = [[0, 0, 100, 100], [80, 0, 180, 100]]
        boxes = [[70, 10, 100, 20], [90, 10, 120, 20]]
        np.testing.assert_array_equal(
            assign_boxes_to_chips(boxes, chips), [0, 1])

    def test_no_intersection_or_no_chip(self):
        chips = [[0, 0, 10, 10]]
        np.testing.assert_array_equal(
            assign_boxes_to_chips([[20, 20, 30, 30], [10, 0, 20, 10]], chips),
            [-1, -1])
        np.testing.assert_array_equal(
            assign_boxes_to_chips([[0, 0, 1, 1]], np.zeros((0, 4))), [-1])
        assert assign_boxes_to_chips(np.zeros((0, 4)), chips).shape == (0, )

    def test_partial_overlaps_in_any_position(self):
        # Chips and boxes with x != y; boxes whose x2 + x1 or y2 - x1 is
        # not positive still have their own area.
        chips = [[0, 40, 20, 60], [10, 45, 100, 50], [50, 0, 100, 20]]
        boxes = [
            [-10, 40, 5, 50],  # IoB 1/3 with chip 0 only
            [15, 42, 40, 58],  # chip 0: 5 * 16 / 400; chip 1: 25 * 5 / 400
            [40, 5, 60, 15],  # IoB 0.5 with chip 2
            [2, 70, 8, 80],  # overlaps chip 0 in x only
            [150, 41, 160, 59],  # overlaps chip 0 in y only
            [40, -10, 60, 5],  # IoB 1/6 with chip 2
            [49.5, 10, 50.5, 10.5],  # area 0.5, half in chip 2
            [300, 300, 300, 310],  # zero area, in no chip
        ]
        np.testing.assert_array_equal(
            assign_boxes_to_chips(boxes, chips), [0, 1, 2, -1, -1, 2, 2, -1])

    def test_result_is_int64(self):
        chips = [[0, 0, 10, 10]]
        for boxes, chip_list in (([[0, 0, 1, 1]], chips),
                                 ([[0, 0, 1, 1]], np.zeros((0, 4))),
                                 (np.zeros((0, 4)), chips)):
            assert assign_boxes_to_chips(boxes, chip_list).dtype == np.int64

    def test_bad_input_names_the_argument(self):
        with pytest.raises(ValueError, match=r'^boxes must'):
            assign_boxes_to_chips([[0, 0, 1]], [[0, 0, 5, 5]])
        with pytest.raises(ValueError, match=r'^chips must'):
            assign_boxes_to_chips([[0, 0, 1, 1]], [[0, 0, np.inf, 5]])

    def test_zero_area_box_inside_a_chip(self):
        chips = [[0, 0, 10, 10], [5, 5, 20, 20]]
        np.testing.assert_array_equal(
            assign_boxes_to_chips([[12, 12, 12, 15]], chips), [1])


class TestGridGreedyCover:
    """The fast grid cover must pick what the plain greedy cover picks."""

    @pytest.mark.parametrize('small_max,corner_max', [(64, 64), (0, 64),
                                                      (0, 0)])
    @settings(max_examples=40, deadline=None)
    @given(
        data=st.data(),
        height=st.floats(100, 1500),
        width=st.floats(100, 1500))
    def test_strategies_match_plain_greedy(self, small_max, corner_max, data,
                                           height, width):
        stride = data.draw(st.sampled_from([16, 32, 59]))
        boxes = data.draw(gt_boxes(height, width, 40))
        boxes = clip_to_image(boxes, (height, width))
        x_origins, x_ends = axis_origins_and_ends(width, 256, stride)
        y_origins, y_ends = axis_origins_and_ends(height, 256, stride)
        chips = candidate_chips((height, width), 256, stride)
        patched = pytest.MonkeyPatch()
        patched.setattr(grid_cover_module, 'SMALL_COVER_MAX_BOXES', small_max)
        patched.setattr(grid_cover_module, 'CORNER_COVER_MAX_BOXES',
                        corner_max)
        try:
            rows, cols, covered_by = grid_greedy_cover(boxes, x_origins,
                                                       x_ends, y_origins,
                                                       y_ends)
        finally:
            patched.undo()
        picks = rows * len(x_origins) + cols
        np.testing.assert_array_equal(picks, greedy_cover(chips, boxes))
        for box, pick in zip(boxes, covered_by):
            if pick < 0:
                assert not any(contains(chip, box, 0) for chip in chips)
            else:
                assert contains(chips[picks[pick]], box, 0)
                assert not any(
                    contains(chips[earlier], box, 0)
                    for earlier in picks[:pick])

    @settings(max_examples=40, deadline=None)
    @given(data=st.data(), seed=st.integers(0, 2**32 - 1))
    def test_random_ties_match_plain_greedy(self, data, seed):
        boxes = clip_to_image(data.draw(gt_boxes(700, 900, 20)), (700, 900))
        x_origins, x_ends = axis_origins_and_ends(900.0, 256, 32)
        y_origins, y_ends = axis_origins_and_ends(700.0, 256, 32)
        rows, cols, _ = grid_greedy_cover(boxes, x_origins, x_ends, y_origins,
                                          y_ends, np.random.default_rng(seed))
        expected = greedy_cover(
            candidate_chips((700, 900), 256, 32), boxes,
            np.random.default_rng(seed))
        np.testing.assert_array_equal(rows * len(x_origins) + cols, expected)


def test_bit_count_fallbacks_agree():
    values = np.array([0, 1, 2**63 + 5, 2**64 - 1, 12345], dtype=np.uint64)
    np.testing.assert_array_equal(
        grid_cover_module._popcount_fallback(values), [0, 1, 3, 64, 6])
    for value in values.tolist():
        assert grid_cover_module._count_bits_fallback(value) == bin(
            value).count('1')


# -- positive chips -----------------------------------------------------------


class TestGenerateScaleChips:

    def test_coco_like_image(self):
        boxes = np.array([[10, 10, 50, 60], [300, 200, 340, 260], [0, 0, 5, 5],
                          [600, 400, 700, 470]])
        result = generate_scale_chips(boxes, (480, 640), 3.0, (-1, 80))
        assert isinstance(result, ScaleChips)
        assert result.scale_factor == 3.0
        np.testing.assert_array_equal(result.gt_valid, [True] * 4)
        # boxes 0 and 2 share the first chip (lowest raster position)
        np.testing.assert_allclose(result.chips[0], [0, 0, 512 / 3, 512 / 3])
        np.testing.assert_array_equal(result.gt_chip, [0, 1, 0, 2])
        # the box cut at the image edge sits in the bottom-right chip
        np.testing.assert_allclose(result.chips[2],
                                   [640 - 512 / 3, 480 - 512 / 3, 640, 480])

    def test_empty_gt(self):
        for boxes in ([], np.zeros((0, 4))):
            result = generate_scale_chips(boxes, (480, 640), 3.0, (-1, 80))
            assert result.chips.shape == (0, 4)
            assert result.gt_valid.shape == (0, )
            assert result.gt_chip.shape == (0, )

    def test_scale_without_valid_box_has_no_chip(self):
        result = generate_scale_chips([[0, 0, 10, 10]], (480, 640), 1.0,
                                      (100, -1))
        assert result.chips.shape == (0, 4)
        np.testing.assert_array_equal(result.gt_chip, [-1])

    def test_image_smaller_than_chip_gives_whole_image(self):
        boxes = [[0, 0, 640, 480], [10, 10, 20, 20], [300, 200, 500, 400]]
        result = generate_scale_chips(boxes, (480, 640), (-1, 512), (-1, -1))
        np.testing.assert_array_equal(result.chips, [[0, 0, 640, 480]])
        np.testing.assert_array_equal(result.gt_chip, [0, 0, 0])

    def test_deterministic_without_rng_reproducible_with_seed(self):
        rng = np.random.default_rng(0)
        corners = rng.uniform(0, 1800, (30, 2))
        boxes = np.hstack([corners, corners + rng.uniform(5, 60, (30, 2))])
        first = generate_scale_chips(boxes, (2000, 2000), 1.0, (-1, -1))
        second = generate_scale_chips(boxes, (2000, 2000), 1.0, (-1, -1))
        np.testing.assert_array_equal(first.chips, second.chips)
        np.testing.assert_array_equal(first.gt_chip, second.gt_chip)
        seeded = [
            generate_scale_chips(
                boxes, (2000, 2000),
                1.0, (-1, -1),
                rng=np.random.default_rng(7)) for _ in range(2)
        ]
        np.testing.assert_array_equal(seeded[0].chips, seeded[1].chips)

    def test_rng_varies_chip_position(self):
        boxes = [[900, 900, 920, 920]]
        positions = {
            tuple(
                generate_scale_chips(
                    boxes, (2000, 2000),
                    1.0, (-1, -1),
                    rng=np.random.default_rng(seed)).chips[0])
            for seed in range(20)
        }
        assert len(positions) > 5
        for chip in positions:
            assert contains(chip, boxes[0])

    @pytest.mark.parametrize('boxes,match', [([[0, 0, 1]], r'\(N, 4\)'),
                                             ([[0, 0, np.nan, 1]], 'finite'),
                                             (np.zeros((2, 5)), r'\(N, 4\)')])
    def test_bad_gt_raises(self, boxes, match):
        with pytest.raises(ValueError, match=match):
            generate_scale_chips(boxes, (480, 640), 1.0, (-1, -1))

    @settings(max_examples=120, deadline=None)
    @given(setup=chip_setups())
    def test_properties_on_random_images(self, setup):
        result = generate_scale_chips(**setup)
        gt_bboxes, (height, width) = setup['gt_bboxes'], setup['image_size']
        chip_size = setup['chip_size']
        factor = compute_scale_factor(setup['scale'], (height, width))
        chips = result.chips
        assert result.scale_factor == factor
        assert chips.shape[1] == 4 and chips.dtype == np.float64
        # validity is the spec's rule, written out box by box
        expected_valid = [
            reference_driving(box, (height, width), factor,
                              setup['valid_range'], chip_size,
                              setup['stride']) for box in gt_bboxes
        ]
        np.testing.assert_array_equal(
            result.gt_valid,
            np.array(expected_valid, dtype=bool).reshape(-1))
        assert_chips_inside_image(chips, (height, width), factor, chip_size)
        # each pick covers a new box: never more chips than valid boxes
        num_valid = int(result.gt_valid.sum())
        assert len(chips) <= num_valid
        assert (len(chips) == 0) == (num_valid == 0)
        if max(height, width) * factor <= chip_size and num_valid:
            np.testing.assert_array_equal(chips, [[0, 0, width, height]])
        # every valid GT is assigned to the first picked chip holding it
        clipped = clip_to_image(gt_bboxes, (height, width))
        np.testing.assert_array_equal(result.gt_chip[~result.gt_valid], -1)
        for box, chip_id in zip(clipped[result.gt_valid],
                                result.gt_chip[result.gt_valid]):
            assert 0 <= chip_id < len(chips)
            assert contains(chips[chip_id], box)
            assert not any(
                contains(chip, box, -TOLERANCE) for chip in chips[:chip_id])

    @settings(max_examples=60, deadline=None)
    @given(setup=chip_setups(max_side=700, max_boxes=12))
    def test_every_pick_is_a_candidate_that_covers_a_new_box(self, setup):
        result = generate_scale_chips(**setup)
        factor = result.scale_factor
        height, width = setup['image_size']
        candidates = candidate_chips((height * factor, width * factor),
                                     setup['chip_size'], setup['stride'])
        valid_boxes = clip_to_image(setup['gt_bboxes'],
                                    (height, width))[result.gt_valid] * factor
        covered = np.zeros(len(valid_boxes), dtype=bool)
        for chip in result.chips * factor:
            matches = np.abs(candidates - chip).max(axis=1) < 1e-6
            assert matches.sum() == 1, chip
            inside = np.array(
                [contains(chip, box) for box in valid_boxes], dtype=bool)
            assert (inside & ~covered).any()
            covered |= inside
        assert covered.all()

    @settings(max_examples=60, deadline=None)
    @given(setup=chip_setups(max_side=900, max_boxes=12))
    def test_matches_brute_force_reference(self, setup):
        factor = compute_scale_factor(setup['scale'], setup['image_size'])
        assume(max(setup['image_size']) * factor < 4000)
        result = generate_scale_chips(**setup)
        expected, valid, gt_chip = reference_scale_chips(
            setup['gt_bboxes'], setup['image_size'], factor,
            setup['valid_range'], setup['chip_size'], setup['stride'])
        np.testing.assert_array_equal(result.gt_valid, valid)
        assert len(result.chips) == len(expected)
        np.testing.assert_allclose(result.chips, expected, atol=1e-6)
        np.testing.assert_array_equal(result.gt_chip, gt_chip)

    def test_assignment_is_the_first_pick_not_the_lowest_raster(self):
        # The chip at x = 80 holds 3 boxes and is picked first; the chip at
        # x = 0 is picked for box 3 and also holds box 1 (x 85..95). Box 1
        # keeps the first pick (the reference takes the argmax of the
        # overlaps over the picked chips in order), not the lower raster.
        boxes = [[150, 10, 170, 20], [85, 10, 95, 20], [160, 10, 175, 20],
                 [20, 10, 30, 20]]
        result = generate_scale_chips(boxes, (100, 300), 1.0, (-1, -1), 100,
                                      10)
        np.testing.assert_allclose(result.chips,
                                   [[80, 0, 180, 100], [0, 0, 100, 100]])
        np.testing.assert_array_equal(result.gt_chip, [0, 0, 0, 1])

    def test_resolution_pair_scales(self):
        # (800, 1333) on 480 x 640: s = 800 / 480, long side 1066.7 < 1333.
        # (1400, 2000) on 480 x 1500: the cap gives s = 2000 / 1500.
        boxes = [[10, 10, 60, 60]]
        for image_size, scale, factor in (((480, 640), (800, 1333),
                                           800 / 480),
                                          ((480, 1500), (1400, 2000),
                                           2000 / 1500),
                                          ((1500, 480), (1400, 2000),
                                           2000 / 1500)):
            result = generate_scale_chips(boxes, image_size, scale, (-1, -1))
            assert result.scale_factor == pytest.approx(factor, rel=1e-12)
            np.testing.assert_allclose(result.chips,
                                       [[0, 0, 512 / factor, 512 / factor]])
            np.testing.assert_array_equal(result.gt_chip, [0])

    def test_non_square_image_height_and_width_not_swapped(self):
        # image_size is (h, w): a tall image and its transpose give
        # transposed chips. Grid along the 300 px side: 0, 32, flush 44.
        tall = generate_scale_chips([[10, 900, 40, 950], [280, 10, 295, 30]],
                                    (1200, 300), 1.0, (-1, -1), 256, 32)
        np.testing.assert_allclose(tall.chips,
                                   [[44, 0, 300, 256], [0, 704, 256, 960]])
        np.testing.assert_array_equal(tall.gt_chip, [1, 0])
        wide = generate_scale_chips([[900, 10, 950, 40], [10, 280, 30, 295]],
                                    (300, 1200), 1.0, (-1, -1), 256, 32)
        np.testing.assert_allclose(wide.chips,
                                   [[704, 0, 960, 256], [0, 44, 256, 300]])
        np.testing.assert_array_equal(wide.gt_chip, [0, 1])

    def test_chips_are_square_only(self):
        # The core takes one int side; a (h, w) pair is refused, not read.
        with pytest.raises(ValueError, match='chip_size'):
            generate_scale_chips([[0, 0, 10, 10]], (480, 640), 1.0, (-1, -1),
                                 chip_size=(512, 256))


class TestGeneratePositiveChips:

    def test_coco_setup_per_scale(self):
        boxes = np.array([[10, 10, 50, 60], [300, 200, 340, 260],
                          [100, 100, 300, 300], [0, 0, 639, 479]])
        chips = generate_positive_chips(boxes, (480, 640), COCO_SCALES,
                                        COCO_TRAIN_RANGES)
        assert len(chips) == 3
        # finest (x3) and middle (x1.667): the two small boxes (sqrt-areas
        # 45 and 49), too far apart for one chip; the 200 px box is out of
        # range at both. Coarsest: the two large boxes, in the one chip
        # that is the whole image.
        assert len(chips[0]) == 2
        assert len(chips[1]) == 2
        np.testing.assert_array_equal(chips[2], [[0, 0, 640, 480]])

    def test_matches_per_scale_generation(self):
        rng = np.random.default_rng(3)
        corners = rng.uniform(0, 900, (40, 2))
        boxes = np.hstack([corners, corners + rng.uniform(2, 300, (40, 2))])
        multi = generate_multiscale_chips(boxes, (1000, 1200), COCO_SCALES,
                                          COCO_TRAIN_RANGES, 512, 48)
        chips = generate_positive_chips(boxes, (1000, 1200), COCO_SCALES,
                                        COCO_TRAIN_RANGES, 512, 48)
        for scale, valid_range, scale_chips, scale_result in zip(
                COCO_SCALES, COCO_TRAIN_RANGES, chips, multi):
            single = generate_scale_chips(boxes, (1000, 1200), scale,
                                          valid_range, 512, 48)
            np.testing.assert_array_equal(scale_chips, single.chips)
            np.testing.assert_array_equal(scale_result.gt_chip, single.gt_chip)
            # and each is the brute-force answer
            factor = compute_scale_factor(scale, (1000, 1200))
            expected, valid, gt_chip = reference_scale_chips(
                boxes, (1000, 1200), factor, valid_range, 512, 48)
            assert scale_result.scale_factor == factor
            np.testing.assert_allclose(scale_chips, expected, atol=1e-9)
            np.testing.assert_array_equal(scale_result.gt_valid, valid)
            np.testing.assert_array_equal(scale_result.gt_chip, gt_chip)

    def test_defaults_are_chip_512_stride_32(self):
        # The box ends at x = 600: the first grid chip holding it starts at
        # the first multiple of 32 from 600 - 512 = 88, i.e. 96.
        boxes = [[590, 10, 600, 20]]
        expected = [[96, 0, 608, 512]]
        np.testing.assert_array_equal(
            generate_positive_chips(boxes, (600, 1500), [1.0],
                                    [(-1, -1)])[0], expected)
        result = generate_multiscale_chips(boxes, (600, 1500), [1.0],
                                           [(-1, -1)])[0]
        np.testing.assert_array_equal(result.chips, expected)
        np.testing.assert_array_equal(
            generate_scale_chips(boxes, (600, 1500), 1.0, (-1, -1)).chips,
            expected)

    def test_rng_reaches_every_scale(self):
        boxes = [[900, 900, 920, 920]]
        for generate in (generate_positive_chips, generate_multiscale_chips):
            positions = set()
            for seed in range(20):
                result = generate(
                    boxes, (2000, 2000), [1.0, 0.5], [(-1, -1), (-1, -1)],
                    rng=np.random.default_rng(seed))
                chips = [getattr(item, 'chips', item) for item in result]
                positions.add(tuple(chips[0][0]) + tuple(chips[1][0]))
            assert len(positions) > 5

    def test_empty_gt_gives_empty_chips(self):
        chips = generate_positive_chips(
            np.zeros((0, 4)), (480, 640), COCO_SCALES, COCO_TRAIN_RANGES)
        assert [c.shape for c in chips] == [(0, 4)] * 3

    def test_range_count_must_match(self):
        with pytest.raises(ValueError, match='valid ranges'):
            generate_positive_chips([[0, 0, 10, 10]], (480, 640), COCO_SCALES,
                                    COCO_TRAIN_RANGES[:2])


def test_chips_package_is_pure_numpy():
    forbidden = {'mmdet', 'mmcv', 'mmengine', 'torch', 'cv2'}
    package = pathlib.Path(__file__).parents[2] / 'mmsniper' / 'chips'
    for path in package.glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split('.')[0] not in forbidden, (path, name)
