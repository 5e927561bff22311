# Copyright (c) mmsniper contributors. All rights reserved.
"""Positive chips (SNIPER spec, section 2).

Per scale: the ground truth boxes that are in the scale's valid range and
fit in a chip drive a greedy cover of the candidate chip grid; each of them
is assigned to one chosen chip. Boxes are clipped to the image first, and
every test (valid range, size, containment) uses the clipped box.
Containment is decided in scaled pixels, where grid origins are integers;
chips are returned in original pixels. The scaled image is ``[0, w * s] x
[0, h * s]``, not rounded, so the chips flush with the far edges end
exactly on the image edge (see :mod:`mmsniper.chips.geometry`).
"""
import math
from typing import NamedTuple

import numpy as np

from .cover import assign_boxes_to_chips, check_rng, greedy_cover
from .geometry import (FIT_TOLERANCE, axis_origins_and_ends,
                       candidate_chip_origins, candidate_chips, check_bboxes,
                       check_chip_params, clip_bboxes)
from .grid_cover import grid_greedy_cover
from .scales import (check_image_size, check_scale_factor,
                     compute_scale_factors, normalize_valid_range,
                     normalize_valid_ranges, validity_ranges)

__all__ = [
    'ScaleChips', 'chip_driving_mask', 'candidate_chip_origins',
    'candidate_chips', 'greedy_cover', 'assign_boxes_to_chips',
    'generate_scale_chips', 'generate_multiscale_chips',
    'generate_positive_chips', 'MIN_BOX_SIDE'
]

#: Boxes narrower or lower than this (original px) never drive chips.
MIN_BOX_SIDE = 2.0


class ScaleChips(NamedTuple):
    """Positive chips of one scale of one image.

    Attributes:
        chips (np.ndarray): ``(M, 4)`` float64 xyxy chips, original px, in
            selection order.
        scale_factor (float): Resize factor of the scale.
        gt_valid (np.ndarray): ``(N,)`` bool, the GT valid at this scale:
            those that drive chips (:func:`chip_driving_mask`) and, with
            ``lower_bound_scales='coarsest'``, those below the range that
            overlap a chosen chip (see :func:`generate_multiscale_chips`).
        gt_chip (np.ndarray): ``(N,)`` int64 index into ``chips`` of the
            chip each valid GT is assigned to (it contains the GT, except
            a GT below the range, which may overlap it only in part); -1
            for the other GT.
    """
    chips: np.ndarray
    scale_factor: float
    gt_valid: np.ndarray
    gt_chip: np.ndarray


class _BoxGeometry(NamedTuple):
    """Per-image box quantities shared by all scales (orig px).

    ``coords`` is ``(4, N)`` C-contiguous (rows x1, y1, x2, y2) so that each
    coordinate is a contiguous 1-D array.
    """
    coords: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    long_sides: np.ndarray
    sqrt_areas: np.ndarray
    large_enough: np.ndarray


def _box_geometry(bboxes, image_size) -> _BoxGeometry:
    """Clip boxes to the image and measure them.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` validated xyxy boxes.
        image_size (tuple[float, float] | None): ``(height, width)``; None
            leaves the boxes unclipped.

    Returns:
        _BoxGeometry: Clipped coordinates and sizes; a box that is inverted
        or outside the image has a zero side.
    """
    if image_size is not None:
        bboxes = clip_bboxes(bboxes, image_size)
    coords = np.ascontiguousarray(bboxes.T)
    widths = np.maximum(coords[2] - coords[0], 0.0)
    heights = np.maximum(coords[3] - coords[1], 0.0)
    return _BoxGeometry(coords, widths, heights, np.maximum(widths, heights),
                        np.sqrt(widths * heights),
                        (widths >= MIN_BOX_SIDE) & (heights >= MIN_BOX_SIDE))


def _scale_driving_mask(geometry, image_size, scale_factor, valid_range,
                        chip_size, stride) -> np.ndarray:
    """:func:`chip_driving_mask` on measured boxes.

    Args:
        geometry (_BoxGeometry): The measured boxes.
        image_size (tuple[float, float] | None): ``(height, width)``; when
            None, no axis counts as fitting in one chip.
        scale_factor (float): Resize factor of the scale.
        valid_range (tuple[float, float]): Normalized ``(lo, hi)``.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.

    Returns:
        np.ndarray: ``(N,)`` bool, a new array.
    """
    lo, hi = valid_range
    mask = geometry.large_enough.copy()
    if lo > 0:
        mask &= geometry.sqrt_areas >= lo
    if hi < math.inf:
        mask &= geometry.sqrt_areas < hi
    fits_x = fits_y = False
    if image_size is not None:
        height, width = image_size
        fits_x = width * scale_factor <= chip_size + FIT_TOLERANCE
        fits_y = height * scale_factor <= chip_size + FIT_TOLERANCE
    # A side must leave room for the stride in the chip, unless the image
    # fits in one chip along that axis.
    max_side = (chip_size - stride - 1) / scale_factor
    if not (fits_x or fits_y):
        mask &= geometry.long_sides < max_side
    elif not fits_x:
        mask &= geometry.widths < max_side
    elif not fits_y:
        mask &= geometry.heights < max_side
    return mask


def chip_driving_mask(gt_bboxes,
                      scale_factor,
                      valid_range,
                      chip_size,
                      stride,
                      image_size=None) -> np.ndarray:
    """Which GT drive chip generation (and are valid) at one scale.

    A GT drives chips when its sqrt-area is in the valid range, its sides
    are at least 2 px, and ``max(w, h) < (chip_size - stride - 1) / s``
    (all in orig px), which guarantees that a grid chip contains it. Along
    an axis where the whole scaled image fits in one chip the size test is
    dropped (that chip holds any box), so with ``image_size`` given a box
    of an image whose scaled size is at most ``chip_size`` is never
    rejected for its size.

    Args:
        gt_bboxes (np.ndarray): ``(N, 4)`` xyxy GT boxes, orig px.
        scale_factor (float): Resize factor of the scale.
        valid_range (Sequence[float]): ``(lo, hi)`` sqrt-area bounds, orig
            px; ``-1`` leaves a side open.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.
        image_size (Sequence[float], optional): ``(height, width)``. When
            given, boxes are clipped to the image first and the size test
            is relaxed as above.

    Returns:
        np.ndarray: ``(N,)`` bool.
    """
    bboxes = check_bboxes(gt_bboxes)
    scale_factor = check_scale_factor(scale_factor)
    valid_range = normalize_valid_range(valid_range)
    chip_size, stride = check_chip_params(chip_size, stride)
    if image_size is not None:
        image_size = check_image_size(image_size)
    return _scale_driving_mask(
        _box_geometry(bboxes, image_size), image_size, scale_factor,
        valid_range, chip_size, stride)


def _chips_of_scale(box_coords, valid, image_size, scale_factor, chip_size,
                    stride, rng) -> ScaleChips:
    """Greedy cover and assignment of one scale, on validated inputs.

    Args:
        box_coords (np.ndarray): ``(4, N)`` GT clipped to the image, rows
            x1, y1, x2, y2.
        valid (np.ndarray): ``(N,)`` bool chip-driving mask.
        image_size (tuple[float, float]): ``(height, width)``.
        scale_factor (float): Resize factor of the scale.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.
        rng (np.random.Generator | None): Tie breaker.

    Returns:
        ScaleChips: The chips of the scale.
    """
    height, width = image_size
    gt_chip = np.full(len(valid), -1, dtype=np.int64)
    valid_ids = valid.nonzero()[0]
    if len(valid_ids) == 0:
        return ScaleChips(np.zeros((0, 4)), scale_factor, valid, gt_chip)
    scaled_width, scaled_height = width * scale_factor, height * scale_factor
    if max(scaled_width, scaled_height) <= chip_size + FIT_TOLERANCE:
        # The whole scaled image is one chip; it holds every box.
        gt_chip[valid_ids] = 0
        chips = np.array([[0.0, 0.0, width, height]])
        return ScaleChips(chips, scale_factor, valid, gt_chip)
    x_origins, x_ends = axis_origins_and_ends(scaled_width, chip_size, stride)
    y_origins, y_ends = axis_origins_and_ends(scaled_height, chip_size, stride)
    # (N, 4) view whose columns are contiguous.
    scaled_boxes = (box_coords[:, valid_ids] * scale_factor).T
    rows, cols, covered_by = grid_greedy_cover(scaled_boxes, x_origins, x_ends,
                                               y_origins, y_ends, rng)
    scaled_chips = np.array(
        [x_origins[cols], y_origins[rows], x_ends[cols], y_ends[rows]]).T
    # Dividing by the factor may overshoot the image edge by an ulp.
    chips = np.minimum(scaled_chips / scale_factor,
                       (width, height, width, height))
    # The first chosen chip that contains a box is the one that covered it,
    # i.e. the lowest-index chip of largest intersection over box area.
    gt_chip[valid_ids] = covered_by
    if (covered_by < 0).any():  # not reachable with chip_driving_mask
        valid = gt_chip >= 0
    return ScaleChips(chips, scale_factor, valid, gt_chip)


def _add_small_valid_gt(scale_chips, geometry, below_range) -> ScaleChips:
    """Make the GT below the valid range valid in the chip they overlap most.

    The rule of the authors' code (``box_assigner`` in
    ``lib/data_utils/data_workers.py``): each such GT goes to the chip of
    the scale with the largest intersection over the GT's area (their
    ``ignore_overlaps``, argmax over the chips, the lowest index on ties; a
    chip that contains the GT always wins), and is valid there when that
    intersection is at least 1 px (orig px) wide and high. Partial overlap
    is enough: the chip crop clips the GT to the chip, and drops the piece
    if it is under ``min_gt_size`` chip px, as the reference does. The
    chip of largest overlap is the only one tried: when its intersection is
    thinner than 1 px, or the GT overlaps no chip, the GT stays invalid at
    this scale. The reference's other test, sqrt(intersection area) <=
    ``hi``, always holds here (the GT itself is below ``hi``).

    Args:
        scale_chips (ScaleChips): The chips driven by the in-range GT.
        geometry (_BoxGeometry): The measured boxes.
        below_range (np.ndarray): ``(N,)`` bool, GT that are valid by every
            test but the range's lower bound.

    Returns:
        ScaleChips: ``scale_chips`` with those GT made valid and assigned.
    """
    chips = scale_chips.chips
    ids = np.flatnonzero(below_range & ~scale_chips.gt_valid)
    if not len(ids) or not len(chips):
        return scale_chips
    boxes = geometry.coords[:, ids].T
    best = assign_boxes_to_chips(boxes, chips)
    best_chips = chips[np.maximum(best, 0)]
    inter_widths = (np.minimum(boxes[:, 2], best_chips[:, 2]) -
                    np.maximum(boxes[:, 0], best_chips[:, 0]))
    inter_heights = (np.minimum(boxes[:, 3], best_chips[:, 3]) -
                     np.maximum(boxes[:, 1], best_chips[:, 1]))
    taken = (best >= 0) & (inter_widths >= 1.0) & (inter_heights >= 1.0)
    gt_chip = scale_chips.gt_chip.copy()
    gt_chip[ids[taken]] = best[taken]
    return scale_chips._replace(gt_valid=gt_chip >= 0, gt_chip=gt_chip)


def generate_multiscale_chips(gt_bboxes,
                              image_size,
                              scales,
                              valid_ranges,
                              chip_size=512,
                              stride=32,
                              rng=None,
                              lower_bound_scales='all') -> list:
    """Positive chips, GT validity and assignment at every scale.

    Args:
        gt_bboxes (np.ndarray): ``(N, 4)`` xyxy GT boxes, orig px; clipped
            to the image before use.
        image_size (Sequence[float]): ``(height, width)``.
        scales (Sequence[float | Sequence[float]]): Scale specs, finest
            first (see :func:`~mmsniper.chips.scales.compute_scale_factor`).
        valid_ranges (Sequence[Sequence[float]]): One ``(lo, hi)`` per
            scale.
        chip_size (int): Chip side, scaled px. Defaults to 512.
        stride (int): Grid step, scaled px. Defaults to 32.
        rng (np.random.Generator, optional): Breaks greedy ties at random;
            without it the result is deterministic.
        lower_bound_scales (str): ``'all'`` (spec, paper): a GT below a
            scale's range is never valid there. ``'coarsest'`` (the
            authors' code, ``box_assigner``): at every scale but the
            coarsest, a GT that passes every test but the lower bound does
            not drive chips but is valid in the chosen chip it overlaps
            most (largest intersection over its area, lowest index on
            ties), partial overlap included, if that intersection is at
            least 1 px wide and high (orig px); the chip crop then keeps
            the part inside the chip. Defaults to ``'all'``.

    Returns:
        list[ScaleChips]: One entry per scale.
    """
    bboxes = check_bboxes(gt_bboxes)
    image_size = check_image_size(image_size)
    scale_factors = compute_scale_factors(scales, image_size).tolist()
    ranges = normalize_valid_ranges(valid_ranges, len(scale_factors))
    open_ranges = validity_ranges(ranges, lower_bound_scales).tolist()
    chip_size, stride = check_chip_params(chip_size, stride)
    check_rng(rng)
    geometry = _box_geometry(bboxes, image_size)
    results = []
    for factor, valid_range, open_range in zip(scale_factors,
                                               ranges.tolist(), open_ranges):
        valid = _scale_driving_mask(geometry, image_size, factor, valid_range,
                                    chip_size, stride)
        scale_chips = _chips_of_scale(geometry.coords, valid, image_size,
                                      factor, chip_size, stride, rng)
        if open_range[0] < valid_range[0]:
            scale_chips = _add_small_valid_gt(
                scale_chips, geometry,
                _scale_driving_mask(geometry, image_size, factor, open_range,
                                    chip_size, stride))
        results.append(scale_chips)
    return results


def generate_scale_chips(gt_bboxes,
                         image_size,
                         scale,
                         valid_range,
                         chip_size=512,
                         stride=32,
                         rng=None) -> ScaleChips:
    """Positive chips of one scale.

    Args:
        gt_bboxes (np.ndarray): ``(N, 4)`` xyxy GT boxes, orig px; clipped
            to the image before use.
        image_size (Sequence[float]): ``(height, width)``.
        scale (float | Sequence[float]): Scale spec or factor.
        valid_range (Sequence[float]): ``(lo, hi)`` sqrt-area bounds.
        chip_size (int): Chip side, scaled px. Defaults to 512.
        stride (int): Grid step, scaled px. Defaults to 32.
        rng (np.random.Generator, optional): Breaks greedy ties at random.

    Returns:
        ScaleChips: Chips in orig px, factor, GT validity and assignment.
    """
    return generate_multiscale_chips(gt_bboxes, image_size, [scale],
                                     [valid_range], chip_size, stride, rng)[0]


def generate_positive_chips(gt_bboxes,
                            image_size,
                            scales,
                            valid_ranges,
                            chip_size=512,
                            stride=32,
                            rng=None) -> list:
    """Positive chips of every scale.

    Args:
        gt_bboxes (np.ndarray): ``(N, 4)`` xyxy GT boxes, orig px.
        image_size (Sequence[float]): ``(height, width)``.
        scales (Sequence[float | Sequence[float]]): Scale specs, finest
            first.
        valid_ranges (Sequence[Sequence[float]]): One ``(lo, hi)`` per
            scale.
        chip_size (int): Chip side, scaled px. Defaults to 512.
        stride (int): Grid step, scaled px. Defaults to 32.
        rng (np.random.Generator, optional): Breaks greedy ties at random.

    Returns:
        list[np.ndarray]: Per scale, ``(M, 4)`` float64 chips in orig px;
        ``(0, 4)`` for a scale without valid GT.
    """
    return [
        scale_chips.chips for scale_chips in generate_multiscale_chips(
            gt_bboxes, image_size, scales, valid_ranges, chip_size, stride,
            rng)
    ]
