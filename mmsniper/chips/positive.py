# Copyright (c) mmsniper contributors. All rights reserved.
"""Positive chips (SNIPER spec, section 2).

Per scale: the ground truth boxes that are in the scale's valid range and
fit in a chip drive a greedy cover of the candidate chip grid; each of them
is assigned to one chosen chip. Boxes are clipped to the image first, and
every test (valid range, size, containment) uses the clipped box. See
:mod:`mmsniper.chips.geometry` for the coordinate conventions.
"""
from typing import NamedTuple

import numpy as np

from .cover import (assign_boxes_to_chips, check_rng, greedy_cover,
                    grid_greedy_cover)
from .geometry import (FIT_TOLERANCE, axis_origins_and_ends,
                       candidate_chip_origins, candidate_chips, check_bboxes,
                       check_chip_params, clip_bboxes)
from .scales import (box_sqrt_areas, check_image_size, check_scale_factor,
                     compute_scale_factors, normalize_valid_range,
                     normalize_valid_ranges)

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
        gt_valid (np.ndarray): ``(N,)`` bool, the GT that drive chips at
            this scale (:func:`chip_driving_mask`).
        gt_chip (np.ndarray): ``(N,)`` int64 index into ``chips`` of the
            chip each valid GT is assigned to (it contains the GT); -1 for
            the other GT.
    """
    chips: np.ndarray
    scale_factor: float
    gt_valid: np.ndarray
    gt_chip: np.ndarray


def _driving_masks(box_sides, sqrt_areas, scale_factors, valid_ranges,
                   chip_size, stride, image_fits) -> np.ndarray:
    """Chip-driving masks of several scales at once.

    Args:
        box_sides (np.ndarray): ``(N, 2)`` box widths and heights, orig px.
        sqrt_areas (np.ndarray): ``(N,)`` box sqrt-areas, orig px.
        scale_factors (np.ndarray): ``(S,)`` factors.
        valid_ranges (np.ndarray): ``(S, 2)`` normalized ranges.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.
        image_fits (np.ndarray): ``(S, 2)`` bool, whether the scaled image
            fits in one chip along x and along y.

    Returns:
        np.ndarray: ``(S, N)`` bool masks.
    """
    max_sides = (chip_size - stride - 1) / scale_factors
    sides_fit = ((box_sides[None] < max_sides[:, None, None])
                 | image_fits[:, None, :]).all(axis=2)
    in_range = ((sqrt_areas >= valid_ranges[:, :1])
                & (sqrt_areas < valid_ranges[:, 1:]))
    large_enough = (box_sides >= MIN_BOX_SIDE).all(axis=1)
    return in_range & sides_fit & large_enough


def _box_sides(bboxes) -> np.ndarray:
    """``(N, 2)`` widths and heights of xyxy boxes, negatives as 0."""
    return np.maximum(bboxes[:, 2:] - bboxes[:, :2], 0.0)


def _image_fits(image_size, scale_factors, chip_size) -> np.ndarray:
    """``(S, 2)`` bool: scaled image within one chip along x, along y."""
    height, width = image_size
    scaled_sizes = np.array([width, height]) * scale_factors[:, None]
    return scaled_sizes <= chip_size + FIT_TOLERANCE


def chip_driving_mask(gt_bboxes, scale_factor, valid_range, chip_size,
                      stride, image_size=None) -> np.ndarray:
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
    scale_factors = np.array([check_scale_factor(scale_factor)])
    valid_ranges = np.array([normalize_valid_range(valid_range)])
    chip_size, stride = check_chip_params(chip_size, stride)
    if image_size is None:
        image_fits = np.zeros((1, 2), dtype=bool)
    else:
        image_size = check_image_size(image_size)
        bboxes = clip_bboxes(bboxes, image_size)
        image_fits = _image_fits(image_size, scale_factors, chip_size)
    return _driving_masks(_box_sides(bboxes), box_sqrt_areas(bboxes),
                          scale_factors, valid_ranges, chip_size, stride,
                          image_fits)[0]


def _chips_of_scale(clipped_bboxes, valid, image_size, scale_factor,
                    chip_size, stride, rng) -> ScaleChips:
    """Greedy cover and assignment of one scale, on validated inputs.

    Args:
        clipped_bboxes (np.ndarray): ``(N, 4)`` GT clipped to the image.
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
    valid_ids = np.flatnonzero(valid)
    if len(valid_ids) == 0:
        return ScaleChips(np.zeros((0, 4)), scale_factor, valid, gt_chip)
    scaled_width, scaled_height = width * scale_factor, height * scale_factor
    if max(scaled_width, scaled_height) <= chip_size + FIT_TOLERANCE:
        # The whole scaled image is one chip; it holds every box.
        gt_chip[valid_ids] = 0
        chips = np.array([[0.0, 0.0, width, height]])
        return ScaleChips(chips, scale_factor, valid, gt_chip)
    x_origins, x_ends = axis_origins_and_ends(scaled_width, chip_size, stride)
    y_origins, y_ends = axis_origins_and_ends(scaled_height, chip_size,
                                              stride)
    rows, cols, covered_by = grid_greedy_cover(
        clipped_bboxes[valid_ids] * scale_factor, x_origins, x_ends,
        y_origins, y_ends, rng)
    scaled_chips = np.stack(
        [x_origins[cols], y_origins[rows], x_ends[cols], y_ends[rows]],
        axis=1)
    chips = np.minimum(scaled_chips / scale_factor,
                       [width, height, width, height])
    # The first chosen chip that contains a box is the one that covered it,
    # i.e. the lowest-index chip of largest intersection over box area.
    gt_chip[valid_ids] = covered_by
    if (covered_by < 0).any():  # not reachable with chip_driving_mask
        valid = valid.copy()
        valid[valid_ids[covered_by < 0]] = False
    return ScaleChips(chips, scale_factor, valid, gt_chip)


def generate_multiscale_chips(gt_bboxes,
                              image_size,
                              scales,
                              valid_ranges,
                              chip_size=512,
                              stride=32,
                              rng=None) -> list:
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

    Returns:
        list[ScaleChips]: One entry per scale.
    """
    bboxes = check_bboxes(gt_bboxes)
    image_size = check_image_size(image_size)
    scale_factors = compute_scale_factors(scales, image_size)
    valid_ranges = normalize_valid_ranges(valid_ranges, len(scale_factors))
    chip_size, stride = check_chip_params(chip_size, stride)
    check_rng(rng)
    clipped_bboxes = clip_bboxes(bboxes, image_size)
    box_sides = _box_sides(clipped_bboxes)
    valid_masks = _driving_masks(box_sides,
                                 np.sqrt(box_sides[:, 0] * box_sides[:, 1]),
                                 scale_factors, valid_ranges, chip_size,
                                 stride,
                                 _image_fits(image_size, scale_factors,
                                             chip_size))
    return [
        _chips_of_scale(clipped_bboxes, valid, image_size, float(factor),
                        chip_size, stride, rng)
        for valid, factor in zip(valid_masks, scale_factors)
    ]


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
                                     [valid_range], chip_size, stride,
                                     rng)[0]


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
