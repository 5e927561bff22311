# Copyright (c) mmsniper contributors. All rights reserved.
"""Negative chips pinned by exact values (tests/MUTATION.md): defaults,
thresholds and the random tie breaker reaching every scale."""
import numpy as np
import pytest

from chip_test_utils import contains
from mmsniper.chips import (generate_negative_chips,
                            generate_negative_scale_chips,
                            negative_proposal_mask)


def column(num, x1=595, y1=10, side=5, step=0.2):
    """``num`` small proposals stacked down a column."""
    offsets = np.arange(num) * step
    return np.stack([
        np.full(num, x1, float), y1 + offsets,
        np.full(num, x1 + side, float), y1 + side + offsets
    ],
                    axis=1)


class TestDefaults:

    def test_chip_512_stride_32_min_proposals_10(self):
        # The proposals end at x = 600: the first grid chip holding them
        # starts at the first multiple of 32 from 88, i.e. 96. 11 > 10.
        chips = generate_negative_scale_chips(column(11), [], (600, 1500),
                                              1.0, (-1, -1))
        np.testing.assert_array_equal(chips, [[96, 0, 608, 512]])
        assert chips.dtype == np.float64
        empty = generate_negative_scale_chips(column(10), [], (600, 1500),
                                              1.0, (-1, -1))
        assert empty.shape == (0, 4) and empty.dtype == np.float64

    def test_all_scales_default_thresholds_25_then_10(self):
        # Finest scale needs more than 25, the others more than 10.
        for num, expected in ((25, [0, 1]), (26, [1, 1]), (10, [0, 0]),
                              (11, [0, 1])):
            chips = generate_negative_chips(column(num), [[], []],
                                            (600, 1500), [1.0, 1.0],
                                            [(-1, -1), (-1, -1)])
            assert [len(c) for c in chips] == expected, num
            for scale_chips in chips:
                if len(scale_chips):
                    np.testing.assert_array_equal(scale_chips,
                                                  [[96, 0, 608, 512]])


class TestRandomTies:

    def cluster(self):
        return column(12, x1=900, y1=900, side=10, step=1.0)

    def test_rng_reaches_one_scale(self):
        proposals = self.cluster()
        positions = set()
        for seed in range(20):
            chips = generate_negative_scale_chips(
                proposals, [], (2000, 2000),
                1.0, (-1, -1),
                rng=np.random.default_rng(seed))
            assert len(chips) == 1
            assert all(contains(chips[0], box) for box in proposals)
            positions.add(tuple(chips[0]))
        assert len(positions) > 5

    def test_rng_reaches_every_scale(self):
        proposals = self.cluster()
        positions = set()
        for seed in range(20):
            chips = generate_negative_chips(
                proposals, [[], []], (2000, 2000), [1.0, 0.8],
                [(-1, -1), (-1, -1)],
                min_proposals=10,
                rng=np.random.default_rng(seed))
            assert [len(c) for c in chips] == [1, 1]
            positions.add(tuple(chips[0][0]) + tuple(chips[1][0]))
        assert len({p[:4] for p in positions}) > 5
        assert len({p[4:] for p in positions}) > 5


def test_axis_that_fits_in_a_chip_relaxes_the_size_limit():
    # 500 px wide at s = 1 fits one chip: 490 px wide proposals (over the
    # 479 px limit) still drive chips; along y (600 px) the limit holds.
    wide = np.array([[5, 10 + i, 495, 30 + i] for i in range(11)], float)
    tall = np.array([[10 + i, 5, 30 + i, 495] for i in range(11)], float)
    mask = negative_proposal_mask(
        np.concatenate([wide, tall]), [], 1.0, (-1, -1), 512, 32,
        (600, 500))
    np.testing.assert_array_equal(mask, [True] * 11 + [False] * 11)
    chips = generate_negative_scale_chips(wide, [], (600, 500), 1.0,
                                          (-1, -1))
    np.testing.assert_array_equal(chips, [[0, 0, 500, 512]])
    chips = generate_negative_chips(wide, [[]], (600, 500), [1.0],
                                    [(-1, -1)], min_proposals=10)
    np.testing.assert_array_equal(chips[0], [[0, 0, 500, 512]])


class TestInputs:

    def test_empty_proposals(self):
        for empty in ([], np.zeros((0, 4)), np.zeros((0, 5))):
            mask = negative_proposal_mask(empty, [], 1.0, (-1, -1), 512, 32)
            assert mask.shape == (0, )
            chips = generate_negative_scale_chips(empty, [], (600, 800), 1.0,
                                                  (-1, -1))
            assert chips.shape == (0, 4) and chips.dtype == np.float64

    def test_non_finite_rows_listed_up_to_five(self):
        proposals = np.tile([[0.0, 0.0, 10.0, 10.0]], (8, 1))
        proposals[[1, 2, 3, 4, 6]] = np.nan
        with pytest.raises(
                ValueError,
                match=r'5 of 8 rows hold NaN or inf \(rows 1, 2, 3, 4, 6; '
                r'first: \[nan, nan, nan, nan\]\)$'):
            negative_proposal_mask(proposals, [], 1.0, (-1, -1), 512, 32)
        proposals[7, 2] = np.inf
        with pytest.raises(
                ValueError,
                match=r'6 of 8 rows hold NaN or inf \(rows 1, 2, 3, 4, 6, '
                r'\.\.\.; first'):
            negative_proposal_mask(proposals, [], 1.0, (-1, -1), 512, 32)

    def test_pos_chips_as_one_3d_array(self):
        # (S, M, 4): one array of positive chips per scale.
        chips = generate_negative_chips(column(11), np.zeros((1, 0, 4)),
                                        (600, 1500), [1.0], [(-1, -1)],
                                        min_proposals=10)
        np.testing.assert_array_equal(chips[0], [[96, 0, 608, 512]])
        with pytest.raises(ValueError, match='one \\(M, 4\\) array per'):
            generate_negative_chips(column(11), np.zeros((0, 4)),
                                    (600, 1500), [1.0], [(-1, -1)])

    def test_bad_rng_rejected(self):
        # also when no chip can be kept (no greedy cover runs)
        for proposals in (column(11), column(3), []):
            with pytest.raises(ValueError, match='rng must be None or a'):
                generate_negative_scale_chips(proposals, [], (600, 1500),
                                              1.0, (-1, -1), rng=0)
        with pytest.raises(ValueError, match='rng must be None or a'):
            generate_negative_chips(column(11), [[]], (600, 1500), [1.0],
                                    [(-1, -1)], rng=0)
