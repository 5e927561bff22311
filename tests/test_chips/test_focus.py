# Copyright (c) mmsniper contributors. All rights reserved.
"""FocusPixel labels and FocusChips (spec section 7)."""
import math

import numpy as np
import pytest

from mmsniper.chips.focus import focus_pixel_labels, generate_focus_chips


def reference_labels(boxes, size, stride=16, lo=5, hi=64, ignore_upper=90):
    """The reference's loop (``gen_mask``), with 1 winning over -1."""
    height, width = size
    pos = np.zeros(size, bool)
    ign = np.zeros(size, bool)
    for x1, y1, x2, y2 in boxes:
        area = math.sqrt(max(x2 - x1, 0) * max(y2 - y1, 0))
        if lo < area < hi:
            target = pos
        elif hi <= area < ignore_upper or area <= lo:
            target = ign
        else:
            continue
        for cx in range(int(x1 // stride),
                        min(int(math.ceil(x2 / stride)) + 1, width)):
            for cy in range(int(y1 // stride),
                            min(int(math.ceil(y2 / stride)) + 1, height)):
                target[cy, cx] = True
    labels = np.zeros(size, np.int8)
    labels[ign] = -1
    labels[pos] = 1
    return labels


class TestFocusPixelLabels:

    def test_bands(self):
        # sqrt-areas 20 (positive), 70 (ignored: in [64, 90)), 4 (ignored:
        # <= 5), 100 (large: nothing)
        boxes = [[16, 16, 36, 36], [200, 200, 270, 270], [480, 16, 484, 20],
                 [16, 300, 116, 400]]
        labels = focus_pixel_labels(boxes, (32, 32))
        # positive box: cells 1..ceil(36/16)=3, both ends included
        assert (labels[1:4, 1:4] == 1).all()
        assert labels[0, 0] == 0 and labels[4, 4] == 0
        # ignored middle-band box: cells 12..ceil(270/16)=17
        assert (labels[12:18, 12:18] == -1).all()
        assert labels[18, 18] == 0 and labels[11, 11] == 0
        # tiny box: ignored, cells 30..ceil(484/16)=31 x 1..2
        assert (labels[1:3, 30:32] == -1).all()
        # large box marks nothing
        assert (labels[19:25, 1:7] == 0).all()
        assert (labels == 1).sum() == 9
        assert (labels == -1).sum() == 36 + 4

    def test_band_boundaries(self):
        # a == 5 is ignored, a just above is positive; a == 64 is ignored,
        # a == 90 is large (0)
        labels = focus_pixel_labels(
            [[0, 0, 5, 5], [100, 0, 105.01, 105.01 - 100]], (32, 32))
        assert labels[0, 0] == -1
        assert labels[0, 6] == 1
        labels = focus_pixel_labels([[0, 0, 64, 64]], (32, 32))
        assert labels[0, 0] == -1
        labels = focus_pixel_labels([[0, 0, 90, 90]], (32, 32))
        assert not labels.any()

    def test_grid_rounding(self):
        # x1 = 31.9 -> cell 1; x2 = 32.1 -> ceil(2.006) = 3 (included)
        labels = focus_pixel_labels([[31.9, 0, 52.1, 20]], (8, 8))
        assert labels[0].tolist() == [0, 1, 1, 1, 1, 0, 0, 0]
        # an exact multiple ends at its own cell: 0..2 included
        labels = focus_pixel_labels([[0, 0, 32, 20]], (8, 8))
        assert labels[0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]

    def test_clipped_to_map_and_positive_wins(self):
        labels = focus_pixel_labels([[500, 500, 530, 530]], (32, 32))
        assert labels[31, 31] == 1 and (labels == 1).sum() == 1
        # a positive box inside an ignored one keeps its cells positive
        labels = focus_pixel_labels([[0, 0, 70, 70], [16, 16, 36, 36]],
                                    (32, 32))
        assert (labels[1:4, 1:4] == 1).all()
        assert labels[0, 0] == -1 and labels[5, 5] == -1

    def test_matches_loop_on_random_boxes(self):
        rng = np.random.default_rng(0)
        for _ in range(20):
            xy = rng.uniform(0, 512, (30, 2))
            wh = rng.uniform(0, 120, (30, 2)) * rng.uniform(0, 1, (30, 1))
            boxes = np.concatenate([xy, np.minimum(xy + wh, 512)], axis=1)
            np.testing.assert_array_equal(
                focus_pixel_labels(boxes, (32, 32)),
                reference_labels(boxes, (32, 32)))

    def test_settings(self):
        labels = focus_pixel_labels([[0, 0, 20, 20]], (16, 16), stride=32,
                                    positive_range=(25, 40),
                                    ignore_upper=50)
        assert labels[0, 0] == -1 and (labels == -1).sum() == 4
        assert not focus_pixel_labels(np.zeros((0, 4)), (4, 4)).any()
        with pytest.raises(ValueError, match='positive_range'):
            focus_pixel_labels([], (4, 4), positive_range=(64, 5))
        with pytest.raises(ValueError, match=r'\(N, 4\)'):
            focus_pixel_labels([[1, 2, 3]], (4, 4))
        with pytest.raises(ValueError, match='stride'):
            focus_pixel_labels([], (4, 4), stride=0)


def blob_map(shape, cells):
    fmap = np.zeros(shape)
    for y, x in cells:
        fmap[y, x] = 0.9
    return fmap


class TestFocusChips:

    def test_empty_map(self):
        chips = generate_focus_chips(np.zeros((30, 40)), 0.5, 3, 4,
                                     (480, 640))
        assert chips.shape == (0, 4)

    def test_one_blob(self):
        # cell (y=10, x=12) -> dilated 9..11 x 11..13 (end 12/14), grown to
        # 4 cells about the integer centre (11+14)//2 = 12 -> x 10..14;
        # y 9..12 -> centre 10 -> 8..12
        chips = generate_focus_chips(blob_map((30, 40), [(10, 12)]), 0.5, 3,
                                     4, (480, 640))
        np.testing.assert_allclose(chips, [[160, 128, 224, 192]])

    def test_threshold_is_inclusive(self):
        fmap = np.full((30, 40), 0.2)
        fmap[10, 12] = 0.3
        assert len(generate_focus_chips(fmap, 0.3, 1, 1, (480, 640))) == 1
        assert len(generate_focus_chips(fmap, 0.31, 1, 1, (480, 640))) == 0

    def test_two_blobs_merge_after_growth(self):
        # 6 cells apart: separate regions after a 3x3 dilation, but their
        # 8-cell chips overlap, so they merge into one chip
        fmap = blob_map((30, 40), [(10, 10), (10, 16)])
        apart = generate_focus_chips(fmap, 0.5, 3, 2, (480, 640))
        assert len(apart) == 2
        merged = generate_focus_chips(fmap, 0.5, 3, 8, (480, 640))
        assert len(merged) == 1
        x1, y1, x2, y2 = merged[0] / 16
        assert x1 <= 9 and x2 >= 18 and (y2 - y1) >= 8
        # far apart: they stay two chips
        fmap = blob_map((30, 40), [(5, 5), (25, 35)])
        assert len(generate_focus_chips(fmap, 0.5, 3, 8, (480, 640))) == 2

    def test_blob_at_image_edge_is_shifted_not_truncated(self):
        fmap = blob_map((30, 40), [(29, 39)])
        chips = generate_focus_chips(fmap, 0.5, 3, 10, (480, 640))
        np.testing.assert_allclose(chips, [[640 - 160, 480 - 160, 640, 480]])
        fmap = blob_map((30, 40), [(0, 0)])
        chips = generate_focus_chips(fmap, 0.5, 3, 10, (480, 640))
        np.testing.assert_allclose(chips, [[0, 0, 160, 160]])

    def test_far_edge_cut_at_region_size(self):
        # 630 px wide region: 40 cells; a chip touching the last cell ends
        # at 630, its near edge kept min_size cells away
        fmap = blob_map((30, 40), [(10, 39)])
        chips = generate_focus_chips(fmap, 0.5, 3, 10, (480, 630))
        np.testing.assert_allclose(chips[0, [0, 2]], [630 - 160, 630])

    def test_min_size_larger_than_image(self):
        fmap = blob_map((5, 6), [(2, 3)])
        chips = generate_focus_chips(fmap, 0.5, 3, 20, (70, 90))
        np.testing.assert_allclose(chips, [[0, 0, 90, 70]])

    def test_parent_offset_and_scale(self):
        # a parent chip at (100, 50) of 320 x 240 px seen at 0.5: a map of
        # 10 x 8 cells of 16 px
        fmap = blob_map((8, 10), [(3, 4)])
        chips = generate_focus_chips(fmap, 0.5, 1, 2, (240, 320), stride=16,
                                     parent_offset=(100, 50), scale=0.5)
        # cell 4..5 -> 2 cells about (4+5)//2 = 4 -> 3..5 -> 48..80 px at
        # 0.5 -> 96..160 orig + 100; y 2..4 -> 32..64 -> 64..128 + 50
        np.testing.assert_allclose(chips, [[196, 114, 260, 178]])

    def test_padded_map_is_cropped_and_short_map_refused(self):
        fmap = blob_map((40, 48), [(35, 45)])  # only padding is set
        assert len(generate_focus_chips(fmap, 0.5, 1, 1, (480, 640))) == 0
        with pytest.raises(ValueError, match='does not cover'):
            generate_focus_chips(np.zeros((10, 10)), 0.5, 3, 4, (480, 640))

    def test_bad_settings(self):
        fmap = np.zeros((30, 40))
        for kwargs, word in ((dict(dilation=0), 'dilation'),
                             (dict(min_size=0), 'min_size'),
                             (dict(scale=-1.0), 'scale')):
            args = dict(threshold=0.5, dilation=3, min_size=4,
                        image_size=(480, 640))
            args.update(kwargs)
            with pytest.raises(ValueError, match=word):
                generate_focus_chips(fmap, **args)

    def test_chips_inside_region_and_cover_every_set_cell(self):
        rng = np.random.default_rng(1)
        for _ in range(10):
            fmap = rng.random((40, 50)) ** 8
            chips = generate_focus_chips(fmap, 0.5, 3, 6, (640, 800))
            assert (chips[:, :2] >= 0).all()
            assert (chips[:, 2] <= 800).all() and (chips[:, 3] <= 640).all()
            ys, xs = np.nonzero(fmap >= 0.5)
            centres = np.stack([xs * 16 + 8, ys * 16 + 8], axis=1)
            inside = ((centres[:, None, 0] >= chips[None, :, 0])
                      & (centres[:, None, 0] <= chips[None, :, 2])
                      & (centres[:, None, 1] >= chips[None, :, 1])
                      & (centres[:, None, 1] <= chips[None, :, 3]))
            assert inside.any(axis=1).all()
            # merged until no two chips overlap
            for i in range(len(chips)):
                for j in range(i + 1, len(chips)):
                    a, b = chips[i], chips[j]
                    overlap = (min(a[2], b[2]) - max(a[0], b[0]) > 0
                               and min(a[3], b[3]) - max(a[1], b[1]) > 0)
                    assert not overlap


def _head_cells(image_size, factor, stride=16, pad_divisor=32):
    """The map FocusPixelHead.predict returns for a region resized by
    ``factor``: the detector sees mmcv's rounded size, padded to the
    divisor, and the head cuts ``ceil(seen / stride)`` cells."""
    from mmsniper.chips import scaled_size
    seen_h, seen_w = scaled_size(image_size, factor)
    padded_h = -(-seen_h // pad_divisor) * pad_divisor
    padded_w = -(-seen_w // pad_divisor) * pad_divisor
    return (min(padded_h // stride, -(-seen_h // stride)),
            min(padded_w // stride, -(-seen_w // stride)))


@pytest.mark.parametrize('scale', [1.0, 1.43, 3.0, 0.6, (480, 512),
                                   (800, 1280), (1400, 2000), (-1, 512),
                                   (-1, 1216)])
def test_head_maps_fit_every_image_size(scale):
    """Issue 19, item 1: a scaled side just above a multiple of 16 (500 x
    266 at (480, 512): 272.38 px) made the head's map one cell short.
    Every size from 100 to 1400 px a side (a sweep, both orientations)
    now gives chips, for every kind of scale."""
    from mmsniper.chips import compute_scale_factor
    rng = np.random.default_rng(0)
    sizes = [(266, 500), (421, 640), (500, 266)] + [
        tuple(int(v) for v in rng.integers(100, 1400, size=2))
        for _ in range(400)
    ]
    for size in sizes:
        factor = compute_scale_factor(scale, size)
        fmap = np.ones(_head_cells(size, factor))
        chips = generate_focus_chips(fmap, 0.5, 3, 4, size, scale=factor)
        assert len(chips), (size, scale)
        assert (chips[:, 2] <= size[1] + 1e-6).all()
        assert (chips[:, 3] <= size[0] + 1e-6).all()
    # the reported cases, exactly
    factor = compute_scale_factor((480, 512), (266, 500))
    assert 266 * factor == pytest.approx(272.38, abs=0.01)
    assert _head_cells((266, 500), factor) == (17, 32)
    # a map short of the rounded size is still refused
    with pytest.raises(ValueError, match='does not cover'):
        generate_focus_chips(np.ones((16, 32)), 0.5, 3, 4, (266, 500),
                             scale=factor)


def test_threshold_out_of_range_and_nan_maps_are_not_silent():
    """Issue 19, item 6: a threshold above 1 or NaN set no cell, and a NaN
    map gave no chips, without a word."""
    fmap = np.zeros((30, 40))
    for threshold in (1.5, float('nan'), -0.1, '0.5'):
        with pytest.raises(ValueError, match='threshold'):
            generate_focus_chips(fmap, threshold, 3, 4, (480, 640))
    fmap[:5, :5] = np.nan
    fmap[20, 20] = 0.9
    with pytest.warns(UserWarning, match='25 NaN cells'):
        chips = generate_focus_chips(fmap, 0.5, 1, 2, (480, 640))
    assert len(chips) == 1


@pytest.mark.parametrize('size', [1, 2, 3, 4, 5, 6])
def test_dilation_matches_cv2_dilate(size):
    """Issue 19, item 12: even sizes were mirrored by one cell against
    cv2.dilate's default (centre) anchor, which the reference uses."""
    cv2 = pytest.importorskip('cv2')
    from mmsniper.chips.focus import _dilate
    rng = np.random.default_rng(size)
    for _ in range(20):
        mask = rng.random((13, 17)) < 0.08
        ours = _dilate(mask, size)
        ref = cv2.dilate(mask.astype(np.uint8),
                         np.ones((size, size), np.uint8),
                         borderType=cv2.BORDER_CONSTANT, borderValue=0)
        np.testing.assert_array_equal(ours, ref.astype(bool))


def reference_gmask(fmap, dilation, threshold, min_size, width, height,
                    retrieval):
    """The reference's ``gmask`` (lib/chips/chips_inference.py:12-89),
    ported to Python 3 (``//`` for its integer ``/``) and OpenCV 4+, with
    the contour retrieval mode as a parameter (it uses ``RETR_LIST``)."""
    import cv2
    mask = fmap.copy()
    iw, ih = int(math.ceil(width / 16)), int(math.ceil(height / 16))
    mask[np.where(mask >= threshold)] = 1
    mask[np.where(mask < threshold)] = 0
    mask = cv2.dilate(mask, np.ones((dilation, dilation), np.uint8))
    mask *= 255

    def grown(cnt):
        x, y, w, h = cv2.boundingRect(cnt)
        cx, cy = (x + x + w) // 2, (y + y + h) // 2
        w, h = max(min_size, w), max(min_size, h)
        if cx + w // 2 >= iw:
            x = iw - w if iw - w >= 0 else 0
        elif cx - w // 2 < 0:
            x = 0
        else:
            x = cx - w // 2
        if cy + h // 2 >= ih:
            y = ih - h if ih - h >= 0 else 0
        elif cy - h // 2 < 0:
            y = 0
        else:
            y = cy - h // 2
        return x, y, w, h

    def contours(approx):
        return cv2.findContours(mask.astype(np.uint8), retrieval, approx)[-2]

    cnts = contours(cv2.CHAIN_APPROX_NONE)
    chips, nchips = [], -1
    while nchips != len(chips):
        nchips = len(chips)
        chips = []
        for cnt in cnts:
            x, y, w, h = grown(cnt)
            mask[y:y + h, x:x + w] = 255
        cnts = contours(cv2.CHAIN_APPROX_SIMPLE)
        for cnt in cnts:
            x, y, w, h = grown(cnt)
            chips.append([x, y, x + w, y + h])
    out = []
    for c in chips:
        x1, y1, x2, y2 = (v * 16 for v in c)
        if x2 > width:
            x2 = width
            x1 = max(min(x1, x2 - min_size * 16), 0)
        if y2 > height:
            y2 = height
            y1 = max(min(y1, y2 - min_size * 16), 0)
        out.append([x1, y1, x2, y2])
    out = np.array(out, dtype=np.float64).reshape(-1, 4)
    return out[np.lexsort((out[:, 0], out[:, 1]))]


def _ring_map(rng, cells_h, cells_w):
    """A map of a few filled rectangles, each with an off-centre hole."""
    fmap = rng.random((cells_h, cells_w)) * 0.3
    for _ in range(int(rng.integers(1, 4))):
        h, w = (int(v) for v in rng.integers(3, 7, 2))
        y = int(rng.integers(1, cells_h - h))
        x = int(rng.integers(1, cells_w - w))
        fmap[y:y + h, x:x + w] = 0.9
        fmap[int(rng.integers(y + 1, y + h - 1)),
             int(rng.integers(x + 1, x + w - 1))] = 0.1
    return fmap


def test_focus_chips_match_the_reference_gmask_port():
    """Issue 19, item 13: ``holes=True`` gives the reference's chips (its
    RETR_LIST contours include the holes of a region: each hole's box is
    grown and painted too); the default takes the regions only, which is
    the same port with RETR_EXTERNAL. Random maps and maps of rings."""
    cv2 = pytest.importorskip('cv2')
    rng = np.random.default_rng(0)
    differ = 0
    for trial in range(160):
        cells_h, cells_w = (int(v) for v in rng.integers(10, 30, 2))
        height = cells_h * 16 - int(rng.integers(0, 16))
        width = cells_w * 16 - int(rng.integers(0, 16))
        if trial % 2:
            fmap = _ring_map(rng, cells_h, cells_w)
            dilation = int(rng.integers(1, 3))
        else:
            fmap = rng.random((cells_h, cells_w))**rng.uniform(1, 12)
            dilation = int(rng.integers(1, 5))
        min_size = int(rng.integers(1, 10))
        threshold = float(rng.uniform(0.2, 0.8))
        args = (fmap, threshold, dilation, min_size, (height, width))
        for holes, mode in ((True, cv2.RETR_LIST),
                            (False, cv2.RETR_EXTERNAL)):
            ours = generate_focus_chips(*args, holes=holes)
            ref = reference_gmask(fmap, dilation, threshold, min_size,
                                  width, height, mode)
            np.testing.assert_array_equal(ours, ref)
        default = generate_focus_chips(*args)
        with_holes = generate_focus_chips(*args, holes=True)
        differ += not (default.shape == with_holes.shape
                       and np.array_equal(default, with_holes))
    assert differ > 0  # the switch changes some chips


def test_hole_grows_the_chip():
    """A 5 x 5 region with a hole off its centre: the hole's box, grown to
    8 cells about its own centre, sticks out of the region's grown box by
    one cell, so the reference's chip is 9 cells wide."""
    fmap = np.zeros((30, 40))
    fmap[10:15, 10:15] = 0.9
    fmap[11, 11] = 0.0
    chips = generate_focus_chips(fmap, 0.5, 1, 8, (480, 640))
    np.testing.assert_array_equal(chips / 16, [[8, 8, 16, 16]])
    chips = generate_focus_chips(fmap, 0.5, 1, 8, (480, 640), holes=True)
    np.testing.assert_array_equal(chips / 16, [[7, 7, 16, 16]])
