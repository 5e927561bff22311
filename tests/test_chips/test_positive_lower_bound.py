# Copyright (c) mmsniper contributors. All rights reserved.
"""``lower_bound_scales='coarsest'``: where a GT below a scale's range is
valid, as in the authors' ``box_assigner`` (``lib/data_utils/
data_workers.py``): in the positive chip of the scale it overlaps most
(``ignore_overlaps``: intersection over the GT's area, argmax over the
chips, lowest index on ties), partial overlap included, when that
intersection is at least 1 px wide and high."""
import math

import numpy as np
import pytest

from mmsniper.chips import chip_driving_mask, generate_multiscale_chips

IMAGE = (1000, 1000)  # (h, w)
SCALES = (1.0, 0.1)  # 0.1: the whole image is one 100 px chip
RANGES = ((32, 80), (60, -1))
CHIP, STRIDE = 128, 32


def chips_and_assignment(gt, rule):
    return generate_multiscale_chips(
        np.array(gt, dtype=np.float64), IMAGE, SCALES, RANGES,
        chip_size=CHIP, stride=STRIDE, lower_bound_scales=rule)


def driven_chips(driving_gt):
    """The chips of scale 0 that the in-range GT alone choose."""
    return chips_and_assignment(driving_gt, 'all')[0].chips


def assignment(gt, rule):
    """Chips of scale 0 and the chip of each GT there (-1: invalid)."""
    result = chips_and_assignment(gt, rule)[0]
    np.testing.assert_array_equal(result.gt_valid, result.gt_chip >= 0)
    return result.chips, result.gt_chip


def test_gt_partly_inside_its_best_chip_is_valid_there():
    driving = [[100, 100, 140, 140]]  # sqrt-area 40, in (32, 80)
    (chip, ) = driven_chips(driving)
    cx2, cy1 = chip[2], chip[1]
    # 20 x 20 px (below 32), 8 px of its width inside the chip
    small = [cx2 - 8, cy1 + 10, cx2 + 12, cy1 + 30]
    gt = driving + [small]
    for rule, expected in (('all', [0, -1]), ('coarsest', [0, 0])):
        chips, gt_chip = assignment(gt, rule)
        np.testing.assert_array_equal(chips, [chip])  # small GT drive none
        np.testing.assert_array_equal(gt_chip, expected)


TWO_DRIVING = [[100, 100, 140, 140], [200, 100, 240, 140]]


def test_best_chip_is_the_one_of_largest_overlap():
    chips = driven_chips(TWO_DRIVING)
    np.testing.assert_array_equal(chips,
                                  [[32, 32, 160, 160], [128, 32, 256, 160]])
    # 50 x 8 px GT (sqrt-area 20) wider than the chips' 32 px overlap band,
    # so that each chip holds a part of them: 45 px in the first chip and
    # 37 in the second, then the other way round
    first = [115, 110, 165, 118]
    second = [123, 110, 173, 118]
    gt = TWO_DRIVING + [first, second]
    _, gt_chip = assignment(gt, 'coarsest')
    np.testing.assert_array_equal(gt_chip, [0, 1, 0, 1])
    np.testing.assert_array_equal(assignment(gt, 'all')[1], [0, 1, -1, -1])


def test_equal_overlap_goes_to_the_lowest_chip_index():
    # 41 px in each chip
    _, gt_chip = assignment(TWO_DRIVING + [[119, 110, 169, 118]], 'coarsest')
    np.testing.assert_array_equal(gt_chip, [0, 1, 0])


def test_containing_chip_beats_a_later_partial_one():
    # inside the first chip only; partly (10 px) in the second
    _, gt_chip = assignment(TWO_DRIVING + [[118, 110, 138, 130]], 'coarsest')
    np.testing.assert_array_equal(gt_chip, [0, 1, 0])
    # inside both chips: the first
    _, gt_chip = assignment(TWO_DRIVING + [[130, 110, 150, 130]], 'coarsest')
    np.testing.assert_array_equal(gt_chip, [0, 1, 0])


def test_thin_best_overlap_or_no_overlap_stays_invalid():
    driving = [[100, 100, 140, 140]]
    (chip, ) = driven_chips(driving)
    cx2, cy1 = chip[2], chip[1]
    thin = [cx2 - 0.5, cy1 + 10, cx2 + 19.5, cy1 + 30]  # 0.5 px inside
    apart = [cx2 + 100, cy1 + 10, cx2 + 120, cy1 + 30]  # overlaps none
    one_px = [cx2 - 1, cy1 + 10, cx2 + 19, cy1 + 30]  # exactly 1 px inside
    _, gt_chip = assignment(driving + [thin, apart, one_px], 'coarsest')
    np.testing.assert_array_equal(gt_chip, [0, -1, -1, 0])


def test_gt_that_fails_another_test_than_lo_stays_invalid():
    driving = [[100, 100, 140, 140]]
    (chip, ) = driven_chips(driving)
    # inside the chip but 1.5 px wide (the 2 px test), and a 20 x 20 GT in
    # the coarsest scale, whose lower bound (60) holds under 'coarsest'
    narrow = [chip[0] + 5, chip[1] + 5, chip[0] + 6.5, chip[1] + 25]
    results = chips_and_assignment(
        driving + [narrow, [500, 500, 520, 520]], 'coarsest')
    np.testing.assert_array_equal(results[0].gt_chip, [0, -1, -1])
    np.testing.assert_array_equal(results[1].gt_chip, [-1, -1, -1])


def box_assigner_oracle(gt, chips, factor, valid_range, open_range):
    """The non-coarsest branch of the authors' ``box_assigner``, box by box
    (continuous coordinates: no +1), over the GT that pass every test but
    the lower bound."""
    hi = valid_range[1] if valid_range[1] > 0 else math.inf
    candidates = chip_driving_mask(gt, factor, open_range, CHIP, STRIDE,
                                   image_size=IMAGE)
    out = np.full(len(gt), -1)
    if not len(chips):
        return out
    for i in np.flatnonzero(candidates):
        x1, y1, x2, y2 = gt[i]
        x1, y1 = max(x1, 0.0), max(y1, 0.0)
        x2, y2 = min(x2, IMAGE[1]), min(y2, IMAGE[0])
        area = (x2 - x1) * (y2 - y1)
        overlaps = []
        for c in chips:
            iw = min(x2, c[2]) - max(x1, c[0])
            ih = min(y2, c[3]) - max(y1, c[1])
            overlaps.append(iw * ih / area if iw > 0 and ih > 0 else 0.0)
        best = int(np.argmax(overlaps))  # the first on ties
        c = chips[best]
        iw = min(x2, c[2]) - max(x1, c[0])
        ih = min(y2, c[3]) - max(y1, c[1])
        if iw >= 1 and ih >= 1 and math.sqrt(iw * ih) <= hi:
            out[i] = best
    return out


@pytest.mark.parametrize('seed', range(12))
def test_matches_box_assigner_on_random_images(seed):
    rng = np.random.default_rng(seed)
    num = int(rng.integers(5, 40))
    xy = rng.uniform(-20, 990, size=(num, 2))
    wh = np.exp(rng.uniform(math.log(3), math.log(120), size=(num, 2)))
    gt = np.concatenate([xy, xy + wh], axis=1)
    coarsest = chips_and_assignment(gt, 'coarsest')
    spec = chips_and_assignment(gt, 'all')
    for scale in range(len(SCALES)):
        np.testing.assert_array_equal(coarsest[scale].chips,
                                      spec[scale].chips)
    # the coarsest scale keeps its lower bound
    np.testing.assert_array_equal(coarsest[1].gt_chip, spec[1].gt_chip)
    expected = box_assigner_oracle(gt, coarsest[0].chips, SCALES[0],
                                   RANGES[0], (-1, RANGES[0][1]))
    np.testing.assert_array_equal(coarsest[0].gt_chip, expected)
    assert (spec[0].gt_chip[expected < 0] == -1).all()
