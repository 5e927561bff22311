# Copyright (c) mmsniper contributors. All rights reserved.
"""The scale advisor (mmsniper.chips.advisor) on hand-made sizes."""
import numpy as np
import pytest

from mmsniper.chips import (evaluate_settings, propose_scales,
                            resize_pixels, size_percentiles)


def sizes_with_percentiles(p5, p99, n=10000):
    """sqrt-areas whose 5th percentile is ``p5`` and 99th is ``p99``
    (log-uniform between, with exact order statistics)."""
    q = np.linspace(0, 1, n)
    # piecewise: 5% of the mass below p5, 1% above p99
    values = np.interp(q, [0, 0.05, 0.99, 1.0],
                       np.log([p5 / 2, p5, p99, p99 * 1.2]))
    return np.exp(values)


def test_two_scales_by_hand():
    # small = 8, large = 512, band (32, 256), images 2000 x 2000, chip 512:
    # s1 = min(32 / 8, 3) = 3; sn = 256 / 512 = 0.5 (0.5 * 2000 = 1000 >
    # 512: a plain factor); step = (256 / 32) / 1.25 = 6.4 >= 3 / 0.5 = 6,
    # so 2 scales. Ranges: (-1, 256 / 3 = 85.3 -> 85), (32 / 0.5 = 64, -1).
    sizes = sizes_with_percentiles(8, 512)
    assert np.percentile(sizes, 5) == pytest.approx(8, rel=1e-3)
    assert np.percentile(sizes, 99) == pytest.approx(512, rel=1e-3)
    prop = propose_scales(sizes, np.full((10, 2), 2000.0))
    assert prop.scales == [3.0, 0.5]
    assert prop.valid_ranges == [(-1, 85), (64, -1)]
    assert prop.small == pytest.approx(8, rel=1e-3)


def test_three_scales_and_whole_image_coarsest():
    # small = 4 -> s1 = min(8, 3) = 3; large = 200 -> sn = 1.28, but
    # 1.28 * 400 = 512 <= 512, so the coarsest is (-1, 512) with factor
    # 512 / 400 = 1.28. With overlap 3 the step is 8 / 3 = 2.67 >= 3 /
    # 1.28 = 2.34: 2 scales; with overlap 4 the step is 2 < 2.34: 3 scales,
    # factors 3, sqrt(3 * 1.28) = 1.96, 1.28.
    sizes = sizes_with_percentiles(4, 200)
    images = np.tile([300.0, 400.0], (5, 1))
    prop = propose_scales(sizes, images, overlap=3)
    assert prop.scales == [3.0, (-1, 512)]
    assert prop.factors[-1] == pytest.approx(1.28)
    assert prop.valid_ranges == [(-1, 85), (25, -1)]  # 32 / 1.28 = 25
    prop = propose_scales(sizes, images, overlap=4)
    assert prop.scales == [3.0, 1.96, (-1, 512)]
    # 256 / 3 = 85.3; 32 / 1.96 = 16.3, 256 / 1.96 = 130.6; 32 / 1.28 = 25
    assert prop.valid_ranges == [(-1, 85), (16, 131), (25, -1)]


def test_narrow_sizes_give_one_scale():
    # small 40, large 60: s1 = 32 / 40 = 0.8 <= sn = 256 / 60: one scale
    sizes = sizes_with_percentiles(40, 60)
    prop = propose_scales(sizes, np.full((3, 2), 2000.0))
    assert prop.scales == [0.8]
    assert prop.valid_ranges == [(-1, -1)]


def test_forced_number_of_scales_and_bad_args():
    sizes = sizes_with_percentiles(8, 512)
    prop = propose_scales(sizes, np.full((2, 2), 2000.0), num_scales=3)
    assert len(prop.scales) == 3
    assert prop.scales[1] == pytest.approx(np.sqrt(3 * 0.5), rel=1e-2)
    with pytest.raises(ValueError, match='band'):
        propose_scales(sizes, np.ones((1, 2)), band=(64, 32))
    with pytest.raises(ValueError, match='overlap'):
        propose_scales(sizes, np.ones((1, 2)), overlap=9)
    with pytest.raises(ValueError, match='no object'):
        propose_scales([0.5, 1.0], np.ones((1, 2)))


def test_evaluate_settings_counts_chips_pixels_and_invalid():
    # one 1000x1000 image, two 30 px boxes far apart and a 300 px box;
    # one scale 1.0, range (-1, 100), chip 512: 2 chips, the large box valid
    # nowhere (out of range)
    boxes = [np.array([[10, 10, 40, 40], [900, 900, 930, 930],
                       [300, 300, 600, 600]], dtype=float)]
    rep = evaluate_settings(boxes, np.array([[1000.0, 1000.0]]), [1.0],
                            [(-1, 100)], 512, 32)
    assert rep.chips_per_scale == [2]
    assert rep.pixels_per_image == 2 * 512**2
    # 800x1333 resize of a square 1000 px image: 800 x 800
    assert rep.pixels_vs_resize == pytest.approx(2 * 512**2 / 800**2)
    assert (rep.boxes, rep.invalid) == (3, 1)
    assert rep.reasons['out_of_ranges'] == 1
    assert rep.invalid_share == pytest.approx(1 / 3)
    assert resize_pixels([[1000, 2000]])[0] == pytest.approx(
        1000 * 2000 * (1333 / 2000)**2)


def test_size_percentiles_per_class():
    table = size_percentiles([1, 2, 3, 10, 20], [0, 0, 0, 1, 1], 3,
                             (0, 50, 100))
    np.testing.assert_allclose(table[0], [1, 2, 3])
    np.testing.assert_allclose(table[1], [10, 15, 20])
    assert np.isnan(table[2]).all()
    np.testing.assert_allclose(table[3], [1, 3, 20])
