# Copyright (c) mmsniper contributors. All rights reserved.
"""Overlapping tiles for images too large to process whole at a scale.

A tile is an integer-pixel region of the *original* image; it is cut and
resized on its own, so the enlarged image never exists in memory. The layout
guarantees (see :func:`tile_layout`) that every object up to a given size
lies wholly inside some tile, at least ``edge_margin`` away from each of
that tile's edges that are not image edges, so pruning detections cut by
inner tile edges (:func:`mmsniper.chips.mapping.edge_cut_mask`) loses none.
"""
import math
from numbers import Real

import numpy as np

from .scales import check_image_size, check_scale_factor

__all__ = [
    'axis_tiles', 'tile_layout', 'scaled_size', 'tile_overlap',
    'plan_scale_tiles', 'check_tile_settings'
]


def scaled_size(image_size, factor) -> tuple:
    """Size of a region resized by ``factor``, as mmcv rounds it.

    Args:
        image_size (Sequence[float]): ``(height, width)``.
        factor (float): Resize factor.

    Returns:
        tuple[int, int]: ``(int(h * f + 0.5), int(w * f + 0.5))``, at
        least 1 each (mmcv.imrescale's rounding).
    """
    height, width = check_image_size(image_size)
    factor = check_scale_factor(factor)
    return (max(1, int(height * factor + 0.5)),
            max(1, int(width * factor + 0.5)))


def axis_tiles(extent: int, tile: int, overlap: int) -> tuple:
    """Tile starts and length along one axis.

    Args:
        extent (int): Image extent, px.
        tile (int): Largest tile side, px.
        overlap (int): Least overlap of neighbouring tiles, px, in
            ``[0, tile)``.

    Returns:
        tuple[np.ndarray, int]: Sorted int64 starts and the tile length.
        ``([0], extent)`` when ``extent <= tile``; else the fewest tiles
        ``n`` of at most ``tile`` px whose neighbours overlap by at least
        ``overlap``, shrunk to the shortest equal length that still does
        (``ceil((extent + (n - 1) * overlap) / n)``), starts evenly spread
        (floored) from 0 to ``extent - length``.
    """
    for name, value in (('extent', extent), ('tile', tile)):
        if int(value) != value or value <= 0:
            raise ValueError(f'{name} must be a positive integer, got '
                             f'{value!r}')
    if int(overlap) != overlap or not 0 <= overlap < tile:
        raise ValueError(f'overlap must be an integer in [0, tile={tile}), '
                         f'got {overlap!r}')
    extent, tile, overlap = int(extent), int(tile), int(overlap)
    if extent <= tile:
        return np.zeros(1, dtype=np.int64), extent
    num = math.ceil((extent - tile) / (tile - overlap)) + 1
    length = -(-(extent + (num - 1) * overlap) // num)
    last = extent - length
    # floor(k * last / (num - 1)): gaps <= ceil(last / (num - 1)) <=
    # length - overlap, last start exactly ``last``.
    return (np.arange(num, dtype=np.int64) * last) // (num - 1), length


def tile_layout(image_size, tile_size: int, overlap: int) -> np.ndarray:
    """Overlapping tiles covering an image.

    Guarantee: a box inside the image whose width and height are at most
    ``overlap - 2 * m`` lies inside some tile with each of its sides at
    least ``m`` px from the tile side, unless that tile side is an image
    edge (property-tested in tests/test_chips/test_tiles.py).

    Args:
        image_size (Sequence[int]): ``(height, width)``, px.
        tile_size (int): Largest tile side, px (tiles are shrunk to the
            shortest equal side that keeps ``overlap``; see
            :func:`axis_tiles`).
        overlap (int): Least overlap of neighbouring tiles, px.

    Returns:
        np.ndarray: ``(K, 4)`` float64 xyxy integer-valued tiles, raster
        order, all inside ``[0, width] x [0, height]``.
    """
    height, width = check_image_size(image_size)
    if height != int(height) or width != int(width):
        raise ValueError(f'image_size must be whole pixels, got {image_size}')
    height, width = int(height), int(width)
    xs, tile_w = axis_tiles(width, tile_size, overlap)
    ys, tile_h = axis_tiles(height, tile_size, overlap)
    x1 = np.tile(xs, len(ys))
    y1 = np.repeat(ys, len(xs))
    return np.stack([x1, y1, x1 + tile_w, y1 + tile_h],
                    axis=1).astype(np.float64)


def tile_overlap(max_object_size: float, edge_margin: float) -> int:
    """Least tile overlap, px, so that objects up to ``max_object_size``
    lie in some tile ``edge_margin`` away from its inner edges."""
    if not (max_object_size >= 0 and edge_margin >= 0):
        raise ValueError('max_object_size and edge_margin must be >= 0, got '
                         f'{max_object_size!r}, {edge_margin!r}')
    return int(math.ceil(max_object_size + 2 * edge_margin))


def check_tile_settings(tile_size, overlap=None) -> None:
    """Refuse a tile side that is not a positive integer and an explicit
    overlap that is negative, not a number or not smaller than the tile
    (both in scaled px, as ``tile_cfg.tile_size`` / ``tile_cfg.overlap``).

    Raises:
        ValueError: Naming ``tile_cfg.tile_size`` or ``tile_cfg.overlap``.
    """
    if (isinstance(tile_size, bool) or not isinstance(tile_size, Real)
            or not 0 < tile_size < math.inf or int(tile_size) != tile_size):
        raise ValueError('tile_cfg.tile_size must be a positive integer '
                         f'(scaled px), got {tile_size!r}')
    if overlap is None:
        return
    if (isinstance(overlap, bool) or not isinstance(overlap, Real)
            or not 0 <= overlap < tile_size):
        raise ValueError(
            f'tile_cfg.overlap must be a number of scaled px >= 0 and '
            f'smaller than tile_cfg.tile_size ({tile_size!r}), got '
            f'{overlap!r}; None derives it from the valid range and '
            'edge_margin')


def plan_scale_tiles(image_size,
                     factor: float,
                     max_pixels: float,
                     tile_size: int,
                     max_object_size: float,
                     edge_margin: float = 10.0,
                     overlap=None) -> np.ndarray:
    """The regions of one image processed at one test scale.

    The whole image when its scaled size is at most ``max_pixels`` px, else
    overlapping tiles of about ``tile_size`` scaled px.

    Args:
        image_size (Sequence[int]): ``(height, width)``, orig px.
        factor (float): The scale's resize factor.
        max_pixels (float): Pixel budget of one model input (scaled px).
        tile_size (int): Tile side, scaled px (orig side
            ``floor(tile_size / factor)``).
        max_object_size (float): Largest object side, orig px, that must
            lie wholly in a tile: the scale's valid-range upper bound.
            ``inf`` (open range) uses half the tile as overlap.
        edge_margin (float): Pruning margin, orig px.
        overlap (int, optional): Explicit overlap, scaled px; overrides
            ``max_object_size``.

    Returns:
        np.ndarray: ``(K, 4)`` float64 xyxy regions in orig px; ``K == 1``
        and the whole image when no tiling is needed.
    """
    height, width = check_image_size(image_size)
    factor = check_scale_factor(factor)
    out_h, out_w = scaled_size((height, width), factor)
    whole = np.array([[0.0, 0.0, width, height]])
    if out_h * out_w <= max_pixels:
        return whole
    check_tile_settings(tile_size, overlap)
    orig_tile = int(math.floor(tile_size / factor))
    if orig_tile < 1:
        raise ValueError(f'tile_size {tile_size} is under one original px '
                         f'at factor {factor:.4g}')
    if overlap is not None:
        orig_overlap = int(math.ceil(overlap / factor))
    elif math.isinf(max_object_size):
        orig_overlap = orig_tile // 2
    else:
        orig_overlap = tile_overlap(max_object_size, edge_margin)
    if orig_overlap >= orig_tile and overlap is not None:
        # overlap < tile_size in scaled px, but rounding to orig px at a
        # factor > 1 made them meet
        raise ValueError(
            f'tile_cfg.overlap {overlap!r} scaled px = {orig_overlap} orig '
            f'px does not leave room in a tile of tile_cfg.tile_size '
            f'{tile_size} scaled px = {orig_tile} orig px at factor '
            f'{factor:.4g}: lower tile_cfg.overlap or raise tile_size')
    if orig_overlap >= orig_tile:
        raise ValueError(
            f'tile overlap {orig_overlap} orig px (objects up to '
            f'{max_object_size:g} px plus 2 x {edge_margin:g} px margin) '
            f'does not fit in a tile of {tile_size} scaled px = {orig_tile} '
            f'orig px at factor {factor:.4g}: raise tile_size')
    return tile_layout((int(height), int(width)), orig_tile, orig_overlap)
