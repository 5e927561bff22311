"""Tiles for huge images, box mapping and edge pruning (numpy core)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmsniper.chips import (axis_tiles, edge_cut_mask, flip_boxes,
                            map_boxes_to_chip, map_boxes_to_original,
                            plan_scale_tiles, scaled_size, tile_layout)


def test_axis_tiles_fewest_shortest_tiles():
    starts, length = axis_tiles(1000, 300, 100)
    num = math.ceil(700 / 200) + 1  # fewest 300 px tiles overlapping 100
    assert len(starts) == num == 5
    assert length == math.ceil((1000 + 4 * 100) / 5) == 280  # shrunk
    assert starts[0] == 0 and starts[-1] + length == 1000
    assert (starts[:-1] + length - starts[1:]).min() >= 100
    assert axis_tiles(300, 300, 100)[0].tolist() == [0]
    starts, length = axis_tiles(10, 300, 100)
    assert starts.tolist() == [0] and length == 10
    # 3000 px at 2000 px tiles: 2 tiles of 1553, not 2 of 2000
    starts, length = axis_tiles(3000, 2000, 105)
    assert starts.tolist() == [0, 1447] and length == 1553


@pytest.mark.parametrize('overlap', [-1, 300, 2.5])
def test_axis_tiles_rejects_bad_overlap(overlap):
    with pytest.raises(ValueError, match='overlap'):
        axis_tiles(1000, 300, overlap)


def test_plan_whole_image_under_budget():
    tiles = plan_scale_tiles((1000, 1500), 1.5, 1500 * 2250, 512, 90)
    assert tiles.tolist() == [[0, 0, 1500, 1000]]
    tiles = plan_scale_tiles((1000, 1500), 1.5, 1500 * 2250 - 1, 512, 90)
    assert len(tiles) > 1


def test_plan_overlap_from_valid_range_upper_bound():
    # factor 2, tile 1000 scaled px = 500 orig px; objects up to 90 orig px
    # plus 2 x 10 px margin need >= 110 orig px of overlap (220 scaled px)
    tiles = plan_scale_tiles((1200, 1200), 2.0, 1e5, 1000, 90, 10)
    xs = np.unique(tiles[:, 0])
    widths = np.unique(tiles[:, 2] - tiles[:, 0])
    assert len(widths) == 1 and widths[0] <= 500
    assert (xs[:-1] + widths[0] - xs[1:]).min() >= 110
    with pytest.raises(ValueError, match='raise tile_size'):
        plan_scale_tiles((5000, 5000), 2.0, 1e5, 200, 90, 10)
    # open upper bound: half a tile of overlap
    tiles = plan_scale_tiles((1200, 1200), 2.0, 1e5, 1000, math.inf, 10)
    xs = np.unique(tiles[:, 0])
    width = tiles[0, 2] - tiles[0, 0]
    assert (xs[:-1] + width - xs[1:]).min() >= 250


@pytest.mark.parametrize('overlap', [1000, 1500, -1, float('nan'), '100'])
def test_plan_explicit_overlap_not_smaller_than_tile_is_named(overlap):
    """Issue 19 item 11: an explicit overlap >= tile_size was reported as
    'objects up to 90 px plus 2 x 10 px margin does not fit': the valid
    range and margins, which it does not use, instead of the overlap."""
    with pytest.raises(ValueError) as info:
        plan_scale_tiles((5000, 5000), 1.0, 1e5, 1000, 90, 10,
                         overlap=overlap)
    msg = str(info.value)
    assert msg.startswith('tile_cfg.overlap must be') and (
        'smaller than tile_cfg.tile_size (1000)') in msg, msg
    assert 'margin)' not in msg


def test_plan_explicit_overlap_rounding_up_to_the_tile_is_named():
    # 999 < 1000 scaled px, but at factor 3 both round to 333 orig px
    with pytest.raises(ValueError, match=r'^tile_cfg.overlap 999 scaled px '
                       r'= 333 orig px .* 333 orig px at factor 3'):
        plan_scale_tiles((5000, 5000), 3.0, 1e5, 1000, 90, 10, overlap=999)
    tiles = plan_scale_tiles((5000, 5000), 1.0, 1e5, 1000, 90, 10,
                             overlap=999)
    assert (tiles[:, 2] - tiles[:, 0]).max() <= 1000


def _covering_tiles(tiles, box, image_size, margin):
    """Tiles holding ``box`` with ``margin`` to each inner tile edge."""
    height, width = image_size
    ok = np.ones(len(tiles), dtype=bool)
    for side in range(4):
        inner = (tiles[:, side] > 0) if side < 2 else (
            tiles[:, side] < (width, height)[side - 2])
        if side < 2:
            dist = box[side] - tiles[:, side]
        else:
            dist = tiles[:, side] - box[side]
        ok &= (dist >= 0) & (~inner | (dist >= margin))
    return np.flatnonzero(ok)


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 4000),
    width=st.integers(1, 4000),
    factor=st.floats(0.2, 4.0),
    tile_size=st.integers(200, 2500),
    max_object=st.floats(1, 200),
    margin=st.floats(0, 20),
    data=st.data())
def test_every_valid_box_lies_wholly_in_a_tile(height, width, factor,
                                               tile_size, max_object, margin,
                                               data):
    try:
        tiles = plan_scale_tiles((height, width), factor, 0, tile_size,
                                 max_object, margin)
    except ValueError as error:  # tile too small for the range: said so
        assert 'raise tile_size' in str(error)
        orig_tile = math.floor(tile_size / factor)
        assert math.ceil(max_object + 2 * margin) >= orig_tile
        return
    # tiles lie inside the image, integer, and cover it
    assert (tiles[:, :2] >= 0).all()
    assert (tiles[:, 2] <= width).all() and (tiles[:, 3] <= height).all()
    assert (tiles == np.round(tiles)).all()
    assert tiles[:, 2].max() == width and tiles[:, 3].max() == height
    sides = (tiles[:, 2:] - tiles[:, :2]).max()
    assert round(sides * factor) <= tile_size + 1
    # a box whose sides are at most the valid-range bound, anywhere
    bw = data.draw(st.floats(0, min(max_object, width)))
    bh = data.draw(st.floats(0, min(max_object, height)))
    x1 = data.draw(st.floats(0, width - bw))
    y1 = data.draw(st.floats(0, height - bh))
    box = np.array([x1, y1, x1 + bw, y1 + bh])
    hits = _covering_tiles(tiles, box, (height, width), margin)
    assert len(hits), (box, tiles)
    # and edge pruning keeps it in that tile
    assert edge_cut_mask(box[None], tiles[hits[0]], (height, width),
                         margin).all()


def test_map_boxes_round_trip_and_flip():
    boxes = np.array([[10.0, 20.0, 30.0, 60.0], [0, 0, 5, 5]])
    chip = map_boxes_to_chip(boxes, (100, 200), (1.5, 2.0))
    assert np.allclose(chip[0], [(10 - 100) * 1.5, (20 - 200) * 2.0,
                                 (30 - 100) * 1.5, (60 - 200) * 2.0])
    back = map_boxes_to_original(chip, (100, 200), (1.5, 2.0))
    assert np.allclose(back, boxes)
    # clipping to the image
    clipped = map_boxes_to_original([[-10, -10, 500, 30]], (0, 0), 2.0,
                                    (100, 200))
    assert clipped.tolist() == [[0, 0, 200, 15]]
    flipped = flip_boxes([[10, 1, 30, 2]], 100)
    assert flipped.tolist() == [[70, 1, 90, 2]]
    with pytest.raises(ValueError, match='scale'):
        map_boxes_to_original(boxes, (0, 0), 0)


def test_edge_cut_mask_drops_only_inner_edge_cuts():
    image = (1000, 1000)
    tile = np.array([400.0, 0.0, 800.0, 500.0])  # inner edges: x1, x2, y2
    boxes = np.array([
        [400, 100, 450, 150],  # cut by the inner left edge: drop
        [405, 100, 450, 150],  # 5 px from it (< 10): drop
        [410, 100, 450, 150],  # 10 px from it: keep
        [500, 0, 550, 50],  # touches the top edge = image edge: keep
        [500, 450, 550, 500],  # cut by the inner bottom edge: drop
        [750, 100, 795, 150],  # 5 px from the inner right edge: drop
        [500, 100, 550, 150],  # in the middle: keep
    ])
    keep = edge_cut_mask(boxes, tile, image, 10)
    assert keep.tolist() == [False, False, True, True, False, False, True]
    # a tile flush with the image's right and bottom edges prunes nothing
    # there
    corner = np.array([600.0, 500.0, 1000.0, 1000.0])
    boxes = np.array([[900, 900, 1000, 1000], [600, 900, 650, 950]])
    assert edge_cut_mask(boxes, corner, image, 10).tolist() == [True, False]
    # one chip per box
    keep = edge_cut_mask(boxes, np.stack([corner, [0, 0, 1000, 1000]]),
                         image, 10)
    assert keep.tolist() == [True, True]


def test_scaled_size_rounds_like_mmcv():
    assert scaled_size((1000, 1501), 1.5) == (1500, 2252)
    assert scaled_size((1, 1), 0.1) == (1, 1)


def test_tile_layout_raster_order():
    tiles = tile_layout((250, 250), 100, 30)
    assert len(tiles) == 16 and tiles[:4, 1].tolist() == [0, 0, 0, 0]
    assert tiles[:4, 0].tolist() == [0, 55, 110, 165]
    assert (tiles[:, 2:] - tiles[:, :2] == 85).all()


def test_chips_core_imports_without_torch_or_mmdet():
    """The test-time geometry is numpy only, like the rest of the core."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    code = (
        'import sys, types\n'
        "pkg = types.ModuleType('mmsniper')\n"
        f"pkg.__path__ = [{str(root / 'mmsniper')!r}]\n"
        "sys.modules['mmsniper'] = pkg\n"
        'import mmsniper.chips.tiles, mmsniper.chips.mapping\n'
        'import mmsniper.chips.merge\n'
        "bad = [m for m in ('torch', 'mmdet', 'mmcv', 'mmengine')\n"
        '       if m in sys.modules]\n'
        'assert not bad, bad\n')
    proc = subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
