# Copyright (c) mmsniper contributors. All rights reserved.
"""Negative chips mined from proposals (SNIPER spec, section 3)."""
import ast
import pathlib

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chip_test_utils import (COCO_SCALES, COCO_TRAIN_RANGES,
                             assert_chips_inside_image, clip_to_image,
                             contains)
from mmsniper.chips import (assign_boxes_to_chips, chip_driving_mask,
                            compute_scale_factor, compute_scale_factors,
                            generate_multiscale_chips,
                            generate_positive_chips)
from mmsniper.chips.negative import (generate_negative_chips,
                                     generate_negative_scale_chips,
                                     negative_proposal_mask,
                                     per_scale_min_proposals)


def square_cluster(num, x0, y0, side=30.0, spacing=20.0):
    """``num`` ``side`` x ``side`` boxes on a row-major lattice from
    ``(x0, y0)``, 5 per row (all inside a ~130 x ~(num/5*20+side) area)."""
    index = np.arange(num)
    x1 = x0 + (index % 5) * spacing
    y1 = y0 + (index // 5) * spacing
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(float)


def brute_driving_mask(proposals, pos_chips, factor, valid_range,
                       chip_size, stride, image_size):
    """The spec's rule for proposals that drive negative chips, written out:
    clipped to the image, sides >= 2 px, ``lo <= sqrt(w h) < hi``, each side
    below ``(chip - stride - 1) / s`` unless the scaled image fits one chip
    along that axis, and inside no positive chip."""
    height, width = image_size
    boxes = np.clip(np.asarray(proposals, float)[:, :4], 0,
                    [width, height, width, height])
    lo, hi = valid_range
    lo = 0.0 if lo == -1 else lo
    hi = np.inf if hi == -1 else hi
    mask = []
    limit = (chip_size - stride - 1) / factor
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1, y2 - y1
        ok = w >= 2 and h >= 2 and lo <= np.sqrt(w * h) < hi
        ok = ok and (width * factor <= chip_size or w < limit)
        ok = ok and (height * factor <= chip_size or h < limit)
        ok = ok and not any(
            c[0] <= x1 and c[1] <= y1 and x2 <= c[2] and y2 <= c[3]
            for c in np.asarray(pos_chips, float).reshape(-1, 4))
        mask.append(bool(ok))
    return np.array(mask, dtype=bool)


def brute_axis(extent, chip_size, stride):
    """Chip origins and ends along one axis: 0, stride, ... below the last
    origin, then the chip flush with the far edge; one truncated chip when
    the extent fits."""
    last = extent - chip_size
    if last <= 1e-6:
        return [0.0], [extent]
    origins = [k * stride for k in range(int(last // stride) + 1)
               if k * stride < last - 1e-6] + [last]
    return origins, [o + chip_size for o in origins[:-1]] + [extent]


def recompute_scale(proposals, pos_chips, image_size, factor, valid_range,
                    chip_size, stride, min_proposals):
    """Brute-force negative chips of one scale, independent of the code
    under test: greedy cover of the driving proposals on the raster-ordered
    candidate grid (most uncovered proposals first, lowest raster index on
    ties), each driving proposal assigned to the chosen chip of largest
    intersection over its area (a containing chip first, lowest index on
    ties), chips holding more than ``min_proposals`` kept.

    Returns the expected kept chips, the driving proposals (clipped) and
    the full list of chips the greedy cover chose.
    """
    height, width = image_size
    mask = brute_driving_mask(proposals, pos_chips, factor, valid_range,
                              chip_size, stride, image_size)
    driving = clip_to_image(np.asarray(proposals, float)[:, :4],
                            image_size)[mask]
    xs, xe = brute_axis(width * factor, chip_size, stride)
    ys, ye = brute_axis(height * factor, chip_size, stride)
    grid = np.array([[x0, y0, x1, y1] for y0, y1 in zip(ys, ye)
                     for x0, x1 in zip(xs, xe)])
    scaled = driving * factor
    holds = ((grid[:, None, 0] <= scaled[None, :, 0])
             & (grid[:, None, 1] <= scaled[None, :, 1])
             & (scaled[None, :, 2] <= grid[:, None, 2])
             & (scaled[None, :, 3] <= grid[:, None, 3]))
    uncovered = np.ones(len(driving), bool)
    picks = []
    while True:
        counts = (holds & uncovered).sum(axis=1)
        if not len(counts) or counts.max() == 0:
            break
        best = int(np.flatnonzero(counts == counts.max())[0])
        picks.append(best)
        uncovered &= ~holds[best]
    chosen = np.minimum(grid[picks].reshape(-1, 4) / factor,
                        [width, height] * 2)
    kept_counts = np.zeros(len(chosen), int)
    for box in driving:
        area = (box[2] - box[0]) * (box[3] - box[1])
        scores = []
        for chip in chosen:
            iw = min(box[2], chip[2]) - max(box[0], chip[0])
            ih = min(box[3], chip[3]) - max(box[1], chip[1])
            ratio = max(iw, 0) * max(ih, 0) / area
            scores.append(ratio + 2.0 * contains(chip, box, 0))
        if scores and max(scores) > 0:
            kept_counts[int(np.argmax(scores))] += 1
    return chosen[kept_counts > min_proposals], driving, chosen


def check_scale_invariants(chips, proposals, pos_chips, image_size, factor,
                           valid_range, chip_size, stride, threshold):
    """Invariants of the negative chips of one scale; returns the driving
    proposals (clipped)."""
    assert chips.ndim == 2 and chips.shape[1] == 4
    assert chips.dtype == np.float64
    assert_chips_inside_image(chips, image_size, factor, chip_size)
    # the driving proposals: valid like GT at this scale (so in range) and
    # entirely inside no positive chip
    mask = brute_driving_mask(proposals, pos_chips, factor, valid_range,
                              chip_size, stride, image_size)
    np.testing.assert_array_equal(
        negative_proposal_mask(proposals, pos_chips, factor, valid_range,
                               chip_size, stride, image_size), mask)
    driving = clip_to_image(np.asarray(proposals)[:, :4], image_size)[mask]
    pos_chips = np.asarray(pos_chips, dtype=float).reshape(-1, 4)
    for box in driving:
        assert not any(contains(chip, box, 0) for chip in pos_chips)
    # each kept chip holds (entirely) more than the threshold of them
    for chip in chips:
        assert sum(contains(chip, box) for box in driving) > threshold
    assigned = assign_boxes_to_chips(driving, chips)
    counts = np.bincount(assigned[assigned >= 0], minlength=len(chips))
    assert (counts > threshold).all()
    return driving


# -- strategies --------------------------------------------------------------

scale_specs = st.one_of(
    st.floats(0.05, 3.0),
    st.tuples(
        st.sampled_from([-1, 200, 480, 800, 1400]),
        st.sampled_from([512, 1000, 1333, 2000])))


@st.composite
def valid_ranges(draw):
    lo = draw(st.sampled_from([-1, 0, 16, 32, 75, 120]))
    hi = draw(st.sampled_from([-1, 80, 150, 180, 400]))
    assume(hi == -1 or hi > max(lo, 0))
    return lo, hi


@st.composite
def proposal_sets(draw, height, width):
    """Clusters of similar proposals (as an RPN gives) plus loose ones,
    some partly or fully off the image; sometimes with a score column."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        num = draw(st.integers(1, 40))
        center = draw(st.tuples(st.floats(-0.1, 1.1), st.floats(-0.1, 1.1)))
        spread = draw(st.sampled_from([5.0, 40.0, 150.0]))
        side = draw(st.sampled_from([3.0, 20.0, 60.0, 140.0, 400.0]))
        seed = draw(st.integers(0, 2**16))
        rng = np.random.default_rng(seed)
        centers = (
            np.array([center[0] * width, center[1] * height]) +
            rng.normal(0, spread, (num, 2)))
        sides = side * rng.uniform(0.5, 1.5, (num, 2))
        parts.append(np.hstack([centers - sides / 2, centers + sides / 2]))
    num_loose = draw(st.integers(0, 15))
    loose_seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(loose_seed)
    corners = rng.uniform([-0.2 * width, -0.2 * height],
                          [1.1 * width, 1.1 * height], (num_loose, 2))
    parts.append(
        np.hstack([corners, corners + rng.uniform(0, 500, (num_loose, 2))]))
    proposals = np.concatenate(parts).reshape(-1, 4)
    if draw(st.booleans()):
        proposals = np.hstack(
            [proposals, rng.uniform(0, 1, (len(proposals), 1))])
    return proposals


@st.composite
def negative_setups(draw, max_side=2500):
    height = draw(st.integers(50, max_side))
    width = draw(st.integers(50, max_side))
    chip_size = draw(st.sampled_from([128, 256, 512]))
    stride = draw(st.sampled_from([16, 32, 59]))
    num_scales = draw(st.integers(1, 3))
    scales = [draw(scale_specs) for _ in range(num_scales)]
    ranges = [draw(valid_ranges()) for _ in range(num_scales)]
    proposals = draw(proposal_sets(height, width))
    # positive chips: from random GT (as in training) or arbitrary boxes
    gt_seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(gt_seed)
    num_gt = draw(st.integers(0, 8))
    corners = rng.uniform(0, [width, height], (num_gt, 2))
    gt = np.hstack([corners, corners + rng.uniform(2, 300, (num_gt, 2))])
    if draw(st.booleans()):
        pos_chips = generate_positive_chips(gt, (height, width), scales,
                                            ranges, chip_size, stride)
    else:
        pos_chips = [
            np.hstack([corners, corners + rng.uniform(50, 900, (num_gt, 2))])
            for _ in range(num_scales)
        ]
    min_proposals = draw(
        st.one_of(
            st.integers(0, 6),
            st.lists(st.integers(0, 6), min_size=1, max_size=4)))
    return dict(
        proposals=proposals,
        pos_chips=pos_chips,
        image_size=(height, width),
        scales=scales,
        valid_ranges=ranges,
        chip_size=chip_size,
        stride=stride,
        min_proposals=min_proposals)


# -- negative_proposal_mask --------------------------------------------------


class TestNegativeProposalMask:

    def test_valid_like_gt_and_outside_positive_chips(self):
        proposals = np.concatenate([
            square_cluster(5, 10, 10),  # inside the positive chip
            square_cluster(5, 600, 600),  # outside it
            [[500, 500, 530, 530]],  # straddles its edge
            [[700, 10, 703, 11]],  # under 2 px
        ])
        pos_chips = np.array([[0.0, 0.0, 512.0, 512.0]])
        mask = negative_proposal_mask(proposals, pos_chips, 1.0, (-1, -1), 512,
                                      32)
        np.testing.assert_array_equal(mask, [False] * 5 + [True] * 6 + [False])

    def test_equals_driving_mask_without_positive_chips(self):
        rng = np.random.default_rng(0)
        corners = rng.uniform(-50, 900, (200, 2))
        proposals = np.hstack(
            [corners, corners + rng.uniform(0, 600, (200, 2))])
        for factor, valid_range in ((3.0, (-1, 80)), (1.667, (32, 150)),
                                    (0.5, (120, -1))):
            mask = negative_proposal_mask(proposals, np.zeros((0, 4)), factor,
                                          valid_range, 512, 32, (800, 1000))
            expected = brute_driving_mask(proposals, np.zeros((0, 4)),
                                          factor, valid_range, 512, 32,
                                          (800, 1000))
            assert 0 < expected.sum() < len(expected)
            np.testing.assert_array_equal(mask, expected)
            np.testing.assert_array_equal(
                mask,
                chip_driving_mask(proposals, factor, valid_range, 512, 32,
                                  (800, 1000)))

    def test_out_of_range_and_too_large_never_drive(self):
        proposals = np.array([[0, 0, 20, 20], [0, 0, 200, 200], [0, 0, 60, 60],
                              [0, 0, 480, 10]], float)
        mask = negative_proposal_mask(proposals, np.zeros((0, 4)), 1.0,
                                      (32, 150), 512, 32)
        # 20 < 32 and 200 >= 150 are out of range; the 480-long box is in
        # range (sqrt-area 69) but leaves no room for the stride.
        np.testing.assert_array_equal(mask, [False, False, True, False])

    def test_clipped_to_image_when_size_given(self):
        # 40 x 40 box half off the image: clipped, it lies inside the chip.
        proposals = np.array([[-20.0, 100.0, 20.0, 140.0]])
        pos_chips = np.array([[0.0, 0.0, 512.0, 512.0]])
        assert negative_proposal_mask(proposals, pos_chips, 1.0, (-1, -1), 512,
                                      32)[0]
        assert not negative_proposal_mask(proposals, pos_chips, 1.0,
                                          (-1, -1), 512, 32, (600, 800))[0]

    def test_scores_ignored(self):
        boxes = square_cluster(6, 100, 100)
        with_scores = np.hstack([boxes, np.linspace(0, 1, 6)[:, None]])
        pos_chips = np.array([[0.0, 0.0, 150.0, 150.0]])
        np.testing.assert_array_equal(
            negative_proposal_mask(with_scores, pos_chips, 1.0, (-1, -1), 512,
                                   32),
            negative_proposal_mask(boxes, pos_chips, 1.0, (-1, -1), 512, 32))


# -- one scale ---------------------------------------------------------------


class TestNegativeScaleChips:

    @pytest.mark.parametrize('min_proposals, expected', [(10, 1), (11, 0),
                                                         (0, 1)])
    def test_more_than_min_proposals(self, min_proposals, expected):
        proposals = square_cluster(11, 600, 300)
        chips = generate_negative_scale_chips(
            proposals,
            np.zeros((0, 4)), (1200, 1600),
            1.0, (-1, 80),
            min_proposals=min_proposals)
        assert chips.shape == (expected, 4) and chips.dtype == np.float64
        for chip in chips:
            assert all(contains(chip, box) for box in proposals)
            np.testing.assert_allclose(chip[2:] - chip[:2], 512)

    def test_selection_order_and_per_chip_counts(self):
        # 30 proposals far right, 15 far left: the larger cluster is picked
        # first; a threshold of 20 keeps only it.
        proposals = np.concatenate([
            square_cluster(15, 50, 50),
            square_cluster(30, 1400, 700),
        ])
        chips = generate_negative_scale_chips(
            proposals,
            np.zeros((0, 4)), (1200, 1600),
            1.0, (-1, -1),
            min_proposals=10)
        assert len(chips) == 2
        assert chips[0, 0] > 800 and chips[1, 0] < 100
        kept = generate_negative_scale_chips(
            proposals,
            np.zeros((0, 4)), (1200, 1600),
            1.0, (-1, -1),
            min_proposals=20)
        np.testing.assert_array_equal(kept, chips[:1])

    def test_proposals_inside_positive_chips_never_drive(self):
        proposals = square_cluster(40, 100, 100)
        pos_chips = np.array([[0.0, 0.0, 512.0, 512.0]])
        chips = generate_negative_scale_chips(
            proposals, pos_chips, (1200, 1600), 1.0, (-1, -1), min_proposals=0)
        assert chips.shape == (0, 4)
        # a positive chip that holds only part of the cluster: its first
        # four rows (y2 <= 190) are inside, the other 20 proposals drive.
        pos_chips = np.array([[0.0, 0.0, 512.0, 200.0]])
        mask = negative_proposal_mask(proposals, pos_chips, 1.0, (-1, -1), 512,
                                      32)
        np.testing.assert_array_equal(mask, np.arange(40) >= 20)
        for min_proposals, expected in ((19, 1), (20, 0)):
            chips = generate_negative_scale_chips(
                proposals,
                pos_chips, (1200, 1600),
                1.0, (-1, -1),
                min_proposals=min_proposals)
            assert len(chips) == expected

    def test_out_of_range_proposals_never_drive(self):
        small = square_cluster(30, 100, 100, side=10)
        large = square_cluster(30, 700, 100, side=300, spacing=5)
        chips = generate_negative_scale_chips(
            np.concatenate([small, large]),
            np.zeros((0, 4)), (1200, 1600),
            1.0, (32, 150),
            min_proposals=0)
        assert chips.shape == (0, 4)

    def test_partly_outside_image_clipped(self):
        proposals = square_cluster(20, -15, -15)
        chips = generate_negative_scale_chips(proposals, np.zeros((0, 4)),
                                              (800, 1000), 1.0, (-1, -1))
        np.testing.assert_array_equal(chips, [[0, 0, 512, 512]])

    def test_scale_spec_and_small_image(self):
        # (-1, 512) on a 400 x 300 image: the whole image is one chip.
        proposals = square_cluster(12, 10, 10)
        chips = generate_negative_scale_chips(proposals, np.zeros((0, 4)),
                                              (300, 400), (-1, 512), (-1, -1))
        np.testing.assert_array_equal(chips, [[0, 0, 400, 300]])

    def test_empty_proposals(self):
        for proposals in ([], np.zeros((0, 4)), np.zeros((0, 5))):
            chips = generate_negative_scale_chips(
                proposals,
                np.zeros((0, 4)), (480, 640),
                1.0, (-1, -1),
                min_proposals=0)
            assert chips.shape == (0, 4) and chips.dtype == np.float64


# -- every scale -------------------------------------------------------------


class TestGenerateNegativeChips:
    SCALES = (1.0, 0.5, 0.3)
    RANGES = ((-1, -1), (-1, -1), (-1, -1))
    IMAGE = (2000, 3000)

    def _counts(self, num, **kwargs):
        proposals = square_cluster(num, 300, 300)
        pos_chips = [np.zeros((0, 4))] * 3
        return [
            len(chips) for chips in generate_negative_chips(
                proposals, pos_chips, self.IMAGE, self.SCALES, self.RANGES, **
                kwargs)
        ]

    def test_reference_default_25_finest_10_elsewhere(self):
        assert per_scale_min_proposals((25, 10), 3) == [25, 10, 10]
        assert self._counts(11) == [0, 1, 1]
        assert self._counts(10) == [0, 0, 0]
        assert self._counts(25) == [0, 1, 1]
        assert self._counts(26) == [1, 1, 1]

    def test_min_proposals_forms(self):
        assert self._counts(20, min_proposals=19) == [1, 1, 1]
        assert self._counts(20, min_proposals=20) == [0, 0, 0]
        assert self._counts(20, min_proposals=(25, 19, 20)) == [0, 1, 0]
        assert self._counts(20, min_proposals=[19]) == [1, 1, 1]
        # extra values are ignored (a single scale keeps the finest one)
        assert per_scale_min_proposals((25, 10), 1) == [25]
        assert per_scale_min_proposals(np.array([3, 4, 5, 6]), 2) == [3, 4]

    def test_matches_per_scale_generation_coco(self):
        rng = np.random.default_rng(5)
        centers = rng.uniform(0, [2000, 1500], (900, 2))
        sides = np.exp(rng.uniform(np.log(4), np.log(600), (900, 2)))
        proposals = np.hstack([
            centers - sides / 2, centers + sides / 2,
            rng.uniform(0, 1, (900, 1))
        ])
        gt = proposals[rng.choice(900, 12, replace=False), :4]
        image_size = (1500, 2000)
        pos_chips = generate_positive_chips(gt, image_size, COCO_SCALES,
                                            COCO_TRAIN_RANGES)
        negatives = generate_negative_chips(proposals, pos_chips, image_size,
                                            COCO_SCALES, COCO_TRAIN_RANGES)
        assert len(negatives) == 3 and sum(map(len, negatives)) > 0
        for index, (scale, valid_range, threshold) in enumerate(
                zip(COCO_SCALES, COCO_TRAIN_RANGES, (25, 10, 10))):
            single = generate_negative_scale_chips(
                proposals,
                pos_chips[index],
                image_size,
                scale,
                valid_range,
                min_proposals=threshold)
            np.testing.assert_array_equal(negatives[index], single)

    def test_accepts_scale_chips(self):
        proposals = square_cluster(30, 300, 300)
        gt = np.array([[1000.0, 1000.0, 1040.0, 1040.0]])
        multi = generate_multiscale_chips(gt, self.IMAGE, self.SCALES,
                                          self.RANGES)
        from_arrays = generate_negative_chips(
            proposals, [result.chips for result in multi], self.IMAGE,
            self.SCALES, self.RANGES)
        from_results = generate_negative_chips(proposals, multi, self.IMAGE,
                                               self.SCALES, self.RANGES)
        for left, right in zip(from_arrays, from_results):
            np.testing.assert_array_equal(left, right)

    def test_empty_proposals_give_empty_chips(self):
        for proposals in ([], np.zeros((0, 4)), np.zeros((0, 5))):
            chips = generate_negative_chips(proposals, [np.zeros(
                (0, 4))] * 3, (480, 640), COCO_SCALES, COCO_TRAIN_RANGES)
            assert [c.shape for c in chips] == [(0, 4)] * 3

    @settings(max_examples=120, deadline=None)
    @given(setup=negative_setups())
    def test_properties_on_random_images(self, setup):
        negatives = generate_negative_chips(**setup)
        image_size = setup['image_size']
        factors = compute_scale_factors(setup['scales'], image_size)
        thresholds = per_scale_min_proposals(setup['min_proposals'],
                                             len(factors))
        assert len(negatives) == len(factors)
        for index, chips in enumerate(negatives):
            args = (setup['proposals'], setup['pos_chips'][index], image_size,
                    factors[index], setup['valid_ranges'][index],
                    setup['chip_size'], setup['stride'], thresholds[index])
            check_scale_invariants(chips, *args)
            # a brute-force cover on the whole candidate grid agrees
            height, width = image_size
            if (height * factors[index] / setup['stride']) * (
                    width * factors[index] / setup['stride']) < 2e4:
                expected, _, _ = recompute_scale(*args)
                assert len(chips) == len(expected)
                np.testing.assert_allclose(chips, expected, atol=1e-6)
        # deterministic without rng
        again = generate_negative_chips(**setup)
        for left, right in zip(negatives, again):
            np.testing.assert_array_equal(left, right)

    @settings(max_examples=40, deadline=None)
    @given(setup=negative_setups(max_side=1500), seed=st.integers(0, 2**32))
    def test_random_ties_keep_invariants(self, setup, seed):
        negatives = generate_negative_chips(
            **setup, rng=np.random.default_rng(seed))
        again = generate_negative_chips(
            **setup, rng=np.random.default_rng(seed))
        factors = compute_scale_factors(setup['scales'], setup['image_size'])
        thresholds = per_scale_min_proposals(setup['min_proposals'],
                                             len(factors))
        for index, chips in enumerate(negatives):
            np.testing.assert_array_equal(chips, again[index])
            check_scale_invariants(chips, setup['proposals'],
                                   setup['pos_chips'][index],
                                   setup['image_size'], factors[index],
                                   setup['valid_ranges'][index],
                                   setup['chip_size'], setup['stride'],
                                   thresholds[index])


# -- bad inputs --------------------------------------------------------------


class TestBadInputs:
    POS = [np.zeros((0, 4))] * 3

    def _call(self, **kwargs):
        args = dict(
            proposals=square_cluster(3, 10, 10),
            pos_chips=self.POS,
            image_size=(480, 640),
            scales=COCO_SCALES,
            valid_ranges=COCO_TRAIN_RANGES)
        args.update(kwargs)
        return generate_negative_chips(**args)

    @pytest.mark.parametrize('proposals, match', [
        (np.zeros((3, 3)), r'shape \(P, 4\) or \(P, 5\).*\(3, 3\)'),
        (np.zeros((3, 6)), r'\(3, 6\)'),
        (np.zeros(4), r'\(4,\)'),
        (np.zeros((2, 3, 4)), r'\(2, 3, 4\)'),
        ([['a', 'b', 'c', 'd']], 'array of numbers'),
    ])
    def test_bad_proposal_shapes(self, proposals, match):
        with pytest.raises(ValueError, match=match):
            self._call(proposals=proposals)
        with pytest.raises(ValueError, match=match):
            negative_proposal_mask(proposals, np.zeros((0, 4)), 1.0, (-1, -1),
                                   512, 32)

    def test_non_finite_proposals_say_how_many_and_where(self):
        proposals = square_cluster(8, 10, 10)
        proposals[2, 1] = np.nan
        proposals[5, 3] = np.inf
        with pytest.raises(
                ValueError, match=r'2 of 8 rows hold NaN or inf \(rows 2, 5'):
            self._call(proposals=proposals)
        with pytest.raises(ValueError, match=r'1 of 8 rows.*rows 2'):
            generate_negative_scale_chips(
                np.where(np.isinf(proposals), 1.0, proposals), np.zeros(
                    (0, 4)), (480, 640), 1.0, (-1, -1))

    def test_nan_score_is_ignored(self):
        """Scores play no part in mining: a NaN score neither drops the
        proposal nor raises. 11 proposals make a chip above a threshold of
        10 only if none of them is dropped."""
        boxes = square_cluster(11, 600, 300)
        scores = np.linspace(0.1, 1.0, 11)[:, None]
        scores[4] = np.nan
        for proposals in (boxes, np.hstack([boxes, scores])):
            chips = generate_negative_scale_chips(
                proposals, np.zeros((0, 4)), (1200, 1600), 1.0, (-1, 80),
                min_proposals=10)
            assert chips.shape == (1, 4)
            assert all(contains(chips[0], box) for box in boxes)
            per_scale = generate_negative_chips(
                proposals, [np.zeros((0, 4))], (1200, 1600), [1.0],
                [(-1, 80)], min_proposals=10)
            np.testing.assert_array_equal(per_scale[0], chips)
            assert negative_proposal_mask(proposals, np.zeros((0, 4)), 1.0,
                                          (-1, 80), 512, 32).all()

    @pytest.mark.parametrize('pos_chips, match', [
        ([np.zeros((0, 4))] * 2, r'2 pos_chips entries for 3 scales'),
        ([np.zeros((0, 4))] * 4, r'4 pos_chips entries for 3 scales'),
        (np.zeros((3, 4)), r'one \(M, 4\) array per scale'),
        (None, r'one \(M, 4\) array per scale'),
        ([np.zeros(
            (0, 4)), np.zeros(
                (2, 3)), np.zeros((0, 4))], r'pos_chips\[1\] must have shape'),
        ([np.zeros((0, 4)),
          np.zeros(
              (0, 4)), [[0, 0, np.nan, 1]]], r'pos_chips\[2\] must be finite'),
    ])
    def test_bad_pos_chips(self, pos_chips, match):
        with pytest.raises(ValueError, match=match):
            self._call(pos_chips=pos_chips)

    @pytest.mark.parametrize(
        'min_proposals', [-1, (25, -1), (), 2.5, True, 'ten', [10, 1.0], None])
    def test_bad_min_proposals(self, min_proposals):
        with pytest.raises(ValueError, match='min_proposals'):
            self._call(min_proposals=min_proposals)

    @pytest.mark.parametrize('min_proposals', [-3, 1.5, False])
    def test_bad_min_proposals_one_scale(self, min_proposals):
        with pytest.raises(ValueError, match='non-negative integer'):
            generate_negative_scale_chips(
                square_cluster(3, 0, 0),
                np.zeros((0, 4)), (480, 640),
                1.0, (-1, -1),
                min_proposals=min_proposals)

    def test_other_bad_arguments(self):
        with pytest.raises(ValueError, match='valid ranges'):
            self._call(valid_ranges=COCO_TRAIN_RANGES[:2])
        with pytest.raises(ValueError, match='image'):
            self._call(image_size=(0, 640))
        with pytest.raises(ValueError, match='rng'):
            self._call(rng=3)
        with pytest.raises(ValueError, match='stride'):
            self._call(stride=0)
        with pytest.raises(ValueError, match='pos_chips must have shape'):
            negative_proposal_mask(
                square_cluster(3, 0, 0), np.zeros(4), 1.0, (-1, -1), 512, 32)


def test_negative_module_is_pure_numpy():
    path = (
        pathlib.Path(__file__).parents[2] / 'mmsniper' / 'chips' /
        'negative.py')
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            assert [alias.name for alias in node.names] == ['numpy']
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            raise AssertionError(f'absolute import from {node.module}')


def test_reference_coco_setup_is_plausible():
    # A 2000 x 1500 image with 900 proposals over the reference scales:
    # spread proposals are too sparse for the finest scale (> 25 in a
    # 170 x 170 px chip), a dense cluster of 30 small ones is not.
    rng = np.random.default_rng(11)
    centers = rng.uniform(0, [2000, 1500], (870, 2))
    sides = np.exp(rng.uniform(np.log(6), np.log(500), (870, 2)))
    spread = np.hstack([centers - sides / 2, centers + sides / 2])
    cluster = square_cluster(30, 1000, 700, side=20, spacing=8)
    image_size, pos_chips = (1500, 2000), [np.zeros((0, 4))] * 3
    sparse = generate_negative_chips(spread, pos_chips, image_size,
                                     COCO_SCALES, COCO_TRAIN_RANGES)
    dense = generate_negative_chips(
        np.concatenate([spread, cluster]), pos_chips, image_size, COCO_SCALES,
        COCO_TRAIN_RANGES)
    assert [len(chips) for chips in sparse] == [0, 11, 1]
    assert [len(chips) for chips in dense] == [1, 11, 1]
    assert all(contains(dense[0][0], box) for box in cluster)
    # the brute-force rule gives the same chips
    factors = compute_scale_factors(COCO_SCALES, image_size)
    for k, (factor, valid_range, threshold) in enumerate(
            zip(factors, COCO_TRAIN_RANGES, (25, 10, 10))):
        expected, _, _ = recompute_scale(spread, pos_chips[k], image_size,
                                         factor, valid_range, 512, 32,
                                         threshold)
        np.testing.assert_allclose(sparse[k], expected, atol=1e-6)
    # coarsest: the whole image (long side 512) is the only chip
    factor = compute_scale_factor(COCO_SCALES[2], image_size)
    assert factor * 2000 == pytest.approx(512)
    np.testing.assert_allclose(sparse[2], [[0, 0, 2000, 1500]])


# -- lower_bound_scales ------------------------------------------------------


class TestLowerBoundScales:
    """``'all'`` (spec): proposals below a scale's range never drive its
    negative chips. ``'coarsest'`` (the authors' code, box_assigner in
    lib/data_utils/data_workers.py): only the coarsest scale has a lower
    bound."""
    SCALES = (2.0, 1.0, 0.5)
    RANGES = ((16, 64), (32, 160), (24, -1))
    IMAGE = (1200, 1600)

    def _chips(self, proposals, lower_bound_scales):
        return generate_negative_chips(
            proposals, [np.zeros((0, 4))] * 3, self.IMAGE, self.SCALES,
            self.RANGES, chip_size=256, min_proposals=10,
            lower_bound_scales=lower_bound_scales)

    def test_small_proposals_drive_only_below_the_coarsest_scale(self):
        # 12 proposals of side 10 (sqrt-area 10): below every lower bound.
        small = square_cluster(12, 600, 300, side=10.0, spacing=12.0)
        assert [len(c) for c in self._chips(small, 'all')] == [0, 0, 0]
        chips = self._chips(small, 'coarsest')
        assert [len(c) for c in chips] == [1, 1, 0]
        for factor, scale_chips in zip(self.SCALES, chips[:2]):
            assert all(contains(scale_chips[0], box) for box in small)
            np.testing.assert_allclose(
                (scale_chips[0, 2:] - scale_chips[0, :2]) * factor, 256)

    def test_upper_bound_still_applies(self):
        # side 100: above the finest range's hi (64), in range elsewhere.
        large = square_cluster(12, 300, 300, side=100.0, spacing=12.0)
        for rule in ('all', 'coarsest'):
            assert [len(c) for c in self._chips(large, rule)] == [0, 1, 1]

    def test_bad_value_is_named(self):
        with pytest.raises(ValueError, match="lower_bound_scales must be "
                           "'all' or 'coarsest', got 'finest'"):
            self._chips(square_cluster(3, 0, 0), 'finest')
