# Copyright (c) mmsniper contributors. All rights reserved.
"""Chip generation whose cost follows the boxes, not the image.

The sparse strategies (sparse grid counts, bucketed overlap queries) must
give exactly what the brute-force oracles and the plain greedy cover give,
random ties included; their work and memory must grow with the boxes and
not with the image area.
"""
import contextlib
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mmsniper.chips.cover as cover_module
import mmsniper.chips.grid_cover as grid_cover_module
from chip_test_utils import clip_to_image, contains
from mmsniper.chips import (assign_boxes_to_chips, candidate_chips,
                            compute_scale_factor, generate_multiscale_chips,
                            generate_scale_chips, greedy_cover,
                            grid_greedy_cover)
from mmsniper.chips.cover import any_chip_contains
from mmsniper.chips.geometry import axis_origins_and_ends, containment_matrix
from mmsniper.chips.negative import generate_negative_chips
from test_negative import negative_setups
from test_positive import chip_setups, reference_scale_chips


@contextlib.contextmanager
def strategy(sparse):
    """Force the sparse strategies (``True``) or the dense ones."""
    big = 1 << 62
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(grid_cover_module, 'SMALL_COVER_MAX_BOXES', 0)
        patched.setattr(grid_cover_module, 'CORNER_COVER_MAX_BOXES', 0)
        patched.setattr(grid_cover_module, 'DENSE_COVER_MAX_CELLS',
                        0 if sparse else big)
        patched.setattr(grid_cover_module, 'SPARSE_COVER_MAX_DENSITY',
                        float('inf'))
        patched.setattr(cover_module, 'DENSE_PAIRS_MAX', 0 if sparse else big)
        yield


@st.composite
def clustered_boxes(draw, height, width, max_boxes=60):
    """Boxes in a few clusters, or spread; some snapped to an 8 px lattice
    (exact ties), some tiny or as large as a chip."""
    seed = draw(st.integers(0, 2**32 - 1))
    num = draw(st.integers(1, max_boxes))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        centers = rng.uniform(0, 1, (int(rng.integers(1, 5)), 2)) * [
            width, height
        ]
        spread = rng.uniform(5, 200)
        middles = centers[rng.integers(len(centers), size=num)] + rng.normal(
            0, spread, (num, 2))
    else:
        middles = rng.uniform(0, 1, (num, 2)) * [width, height]
    sides = rng.uniform(0, draw(st.sampled_from([20, 80, 260])), (num, 2))
    boxes = np.hstack([middles - sides / 2, middles + sides / 2])
    if draw(st.booleans()):
        boxes = np.round(boxes / 8) * 8
    return clip_to_image(boxes, (height, width))


class TestSparseGridCover:
    """The sparse grid cover picks what the plain greedy cover picks."""

    @settings(max_examples=60, deadline=None)
    @given(
        data=st.data(),
        size=st.tuples(st.floats(100, 1500), st.floats(100, 1500)),
        stride=st.sampled_from([16, 32, 59]),
        seed=st.one_of(st.none(), st.integers(0, 2**32 - 1)))
    def test_matches_plain_greedy(self, data, size, stride, seed):
        height, width = size
        boxes = data.draw(clustered_boxes(height, width))
        x_origins, x_ends = axis_origins_and_ends(width, 256, stride)
        y_origins, y_ends = axis_origins_and_ends(height, 256, stride)
        chips = candidate_chips((height, width), 256, stride)
        rngs = [None if seed is None else np.random.default_rng(seed)
                for _ in range(3)]
        results = []
        for sparse, rng in ((True, rngs[0]), (False, rngs[1])):
            with strategy(sparse):
                results.append(
                    grid_greedy_cover(boxes, x_origins, x_ends, y_origins,
                                      y_ends, rng))
        rows, cols, covered_by = results[0]
        picks = rows * len(x_origins) + cols
        np.testing.assert_array_equal(picks,
                                      greedy_cover(chips, boxes, rngs[2]))
        for sparse_part, dense_part in zip(*results):
            np.testing.assert_array_equal(sparse_part, dense_part)
        if seed is not None:  # as many draws as the dense count map
            assert rngs[0].integers(2**62) == rngs[1].integers(2**62)
        for box, pick in zip(boxes, covered_by):
            if pick < 0:
                assert not any(contains(chip, box, 0) for chip in chips)
            else:
                assert contains(chips[picks[pick]], box, 0)
                assert not any(
                    contains(chips[earlier], box, 0)
                    for earlier in picks[:pick])

    @pytest.mark.parametrize('seed', [None, 0, 1, 2])
    def test_isolated_boxes_with_and_without_random_ties(self, seed):
        # Far apart boxes: every pick covers one box (the disjoint phase)
        # after a few picks that cover pairs.
        rng = np.random.default_rng(5)
        lattice = np.arange(0, 2000, 400.0)
        corners = np.stack(np.meshgrid(lattice, lattice), -1).reshape(-1, 2)
        corners += rng.uniform(0, 80, corners.shape)
        boxes = np.hstack([corners, corners + rng.uniform(5, 60, (25, 2))])
        boxes = np.concatenate([boxes, boxes[[3, 11, 17]] + 4])
        x_origins, x_ends = axis_origins_and_ends(2100.0, 256, 16)
        chips = candidate_chips((2100.0, 2100.0), 256, 16)
        rngs = [None if seed is None else np.random.default_rng(seed)
                for _ in range(2)]
        with strategy(sparse=True):
            rows, cols, covered_by = grid_greedy_cover(
                boxes, x_origins, x_ends, x_origins, x_ends, rngs[0])
        expected = greedy_cover(chips, boxes, rngs[1])
        np.testing.assert_array_equal(rows * len(x_origins) + cols,
                                      expected)
        # the three pairs first, then one box per pick
        assert len(expected) == 25
        np.testing.assert_array_equal(np.sort(covered_by[[3, 11, 17]]),
                                      [0, 1, 2])
        np.testing.assert_array_equal(covered_by[25:], covered_by[[3, 11, 17]])
        np.testing.assert_array_equal(np.sort(covered_by[:25]),
                                      np.arange(25))

    @pytest.mark.parametrize('seed', [None, 3, 4])
    def test_sparse_and_dense_counts_agree_on_a_large_grid(self, seed):
        rng = np.random.default_rng(11)
        centers = rng.uniform(0, 24000, (12, 2))
        middles = centers[rng.integers(12, size=600)] + rng.normal(
            0, 150, (600, 2))
        sides = rng.uniform(30, 180, (600, 2))
        boxes = clip_to_image(
            np.hstack([middles - sides / 2, middles + sides / 2]),
            (24000, 24000))
        origins, ends = axis_origins_and_ends(24000.0, 512, 32)
        results, rngs = [], []
        for sparse in (True, False):
            rngs.append(None if seed is None else np.random.default_rng(seed))
            with strategy(sparse):
                results.append(
                    grid_greedy_cover(boxes, origins, ends, origins, ends,
                                      rngs[-1]))
        for sparse_part, dense_part in zip(*results):
            np.testing.assert_array_equal(sparse_part, dense_part)
        if seed is not None:
            assert rngs[0].integers(2**62) == rngs[1].integers(2**62)

    @settings(max_examples=60, deadline=None)
    @given(setup=chip_setups(max_side=900, max_boxes=12))
    def test_scale_chips_match_brute_force_reference(self, setup):
        factor = compute_scale_factor(setup['scale'], setup['image_size'])
        with strategy(sparse=True):
            result = generate_scale_chips(**setup)
        expected, valid, gt_chip = reference_scale_chips(
            setup['gt_bboxes'], setup['image_size'], factor,
            setup['valid_range'], setup['chip_size'], setup['stride'])
        np.testing.assert_array_equal(result.gt_valid, valid)
        assert len(result.chips) == len(expected)
        np.testing.assert_allclose(result.chips, expected, atol=1e-6)
        np.testing.assert_array_equal(result.gt_chip, gt_chip)


@st.composite
def box_sets(draw, max_boxes=120):
    """Boxes of any kind: ordinary, zero-sized, inverted, on a lattice."""
    seed = draw(st.integers(0, 2**32 - 1))
    num = draw(st.integers(0, max_boxes))
    extent = draw(st.sampled_from([50.0, 3000.0, 20000.0]))
    rng = np.random.default_rng(seed)
    corners = rng.uniform(-0.1, 1.1, (num, 2)) * extent
    sides = rng.uniform(-5 if draw(st.booleans()) else 0,
                        draw(st.sampled_from([1.0, 60.0, 600.0, 5000.0])),
                        (num, 2))
    boxes = np.hstack([corners, corners + sides])
    if draw(st.booleans()):
        boxes = np.round(boxes / 16) * 16
    return boxes.reshape(-1, 4)


class TestOverlapQueries:
    """Bucketed overlap queries equal the all-pairs ones."""

    @settings(max_examples=150, deadline=None)
    @given(boxes=box_sets(), chips=box_sets(60))
    def test_assignment_and_containment_match_all_pairs(self, boxes, chips):
        results = []
        for sparse in (True, False):
            with strategy(sparse):
                results.append((assign_boxes_to_chips(boxes, chips),
                                any_chip_contains(chips, boxes)))
        np.testing.assert_array_equal(results[0][0], results[1][0])
        np.testing.assert_array_equal(results[0][1], results[1][1])
        np.testing.assert_array_equal(
            results[1][1],
            containment_matrix(chips, boxes).any(axis=0).reshape(-1))

    def test_hand_cases(self):
        chips = [[0, 40, 20, 60], [10, 45, 100, 50], [50, 0, 100, 20],
                 [0, 0, 200, 200]]
        boxes = [[-10, 40, 5, 50], [15, 42, 40, 58], [40, 5, 60, 15],
                 [49.5, 10, 50.5, 10.5], [300, 300, 300, 310],
                 [12, 12, 12, 15], [150, 150, 250, 250]]
        with strategy(sparse=True):
            np.testing.assert_array_equal(
                assign_boxes_to_chips(boxes, chips), [0, 3, 3, 3, -1, 3, 3])
            np.testing.assert_array_equal(
                any_chip_contains(np.array(chips, float),
                                  np.array(boxes, float)),
                [False, True, True, True, False, True, False])


@settings(max_examples=40, deadline=None)
@given(setup=negative_setups(), seed=st.one_of(st.none(), st.integers(0, 99)))
def test_negative_chips_same_with_sparse_strategies(setup, seed):
    results = []
    for sparse in (True, False):
        rng = None if seed is None else np.random.default_rng(seed)
        with strategy(sparse):
            results.append(generate_negative_chips(**setup, rng=rng))
    for sparse_chips, dense_chips in zip(*results):
        np.testing.assert_array_equal(sparse_chips, dense_chips)


# -- growth -------------------------------------------------------------------


def clustered_scene(num_clusters, side, seed=0):
    """40 boxes (10 to 60 px) per cluster around cluster centers that are
    spread over a ``side`` x ``side`` image, at least 1,500 px apart."""
    rng = np.random.default_rng(seed)
    cells = side // 1500
    slots = rng.permutation(cells * cells)[:num_clusters]
    centers = (np.stack([slots % cells, slots // cells], axis=1) + 0.5) * (
        side / cells)
    offsets = rng.normal(0, 60, (num_clusters, 40, 2))
    sides = rng.uniform(10, 60, (num_clusters, 40, 2))
    middles = (centers[:, None] + offsets).reshape(-1, 2)
    sides = sides.reshape(-1, 2)
    return np.hstack([middles - sides / 2, middles + sides / 2])


def measure_work(boxes, side, seed):
    """Work units and peak traced memory of chip generation at scales 3
    and 1.667 (the sparse strategies' cells and ties, and bytes)."""
    work = dict(cells=0, ties=0)
    rectangle_cells = grid_cover_module._rectangle_cells
    tie_set_init = grid_cover_module._TieSet.__init__

    def counted_cells(*args):
        result = rectangle_cells(*args)
        work['cells'] += len(result[0])
        return result

    def counted_ties(tie_set, cells):
        work['ties'] += len(cells)
        tie_set_init(tie_set, cells)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(grid_cover_module, '_rectangle_cells', counted_cells)
        patched.setattr(grid_cover_module._TieSet, '__init__', counted_ties)
        tracemalloc.start()
        try:
            results = generate_multiscale_chips(
                boxes, (side, side), [3.0, 1.667], [(-1, 80), (32, 150)],
                rng=None if seed is None else np.random.default_rng(seed))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert sum(len(result.chips) for result in results) > 0
    return work['cells'] + work['ties'], peak


@pytest.mark.parametrize('seed', [None, 0])
def test_work_follows_the_boxes_not_the_image_area(seed):
    # The same clusters on 16 times the area (4 times the side): the old
    # count map grew with the area spanned by the boxes (16x here).
    small = measure_work(clustered_scene(12, 9000), 9000, seed)
    large = measure_work(clustered_scene(12, 36000), 36000, seed)
    assert large[0] <= 1.3 * small[0]
    assert large[1] <= 1.5 * small[1]


@pytest.mark.parametrize('seed', [None, 0])
def test_work_grows_linearly_with_boxes_and_area(seed):
    # 4 times the clusters on 4 times the area: about 4 times the work.
    small = measure_work(clustered_scene(9, 6000), 6000, seed)
    large = measure_work(clustered_scene(36, 12000), 12000, seed)
    assert 3 * small[0] <= large[0] <= 5 * small[0]
    assert large[1] <= 5 * small[1]
