# Copyright (c) mmsniper contributors. All rights reserved.
"""Test-time valid ranges (SNIPER_SPEC.md section 6).

Boundary convention: the reference's *test* rule, lib/inference.py
``aggregate``: a detection of scale ``i`` is kept when
``area > lo ** 2`` (tested only when ``lo > 0``) and ``area <= hi ** 2``
(tested only when ``hi > 0``), ``area = (x2 - x1) * (y2 - y1)`` in original
px. That is ``lo < sqrt-area <= hi``; training uses ``lo <= sqrt-area < hi``
(:func:`mmsniper.chips.in_valid_range`).
"""
import numpy as np

from .geometry import check_bboxes
from .scales import normalize_valid_range, normalize_valid_ranges

__all__ = ['in_test_valid_range', 'scale_valid_range_mask']


def in_test_valid_range(bboxes, valid_range) -> np.ndarray:
    """Which detections lie in a scale's test valid range.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` xyxy detections, orig px.
        valid_range (Sequence[float]): ``(lo, hi)`` sqrt-area bounds,
            orig px; ``-1`` (or ``0`` for ``lo``) leaves a side open.

    Returns:
        np.ndarray: ``(N,)`` bool, ``lo^2 < area <= hi^2``.
    """
    boxes = check_bboxes(bboxes, 'bboxes')
    lo, hi = normalize_valid_range(valid_range)
    areas = (np.maximum(boxes[:, 2] - boxes[:, 0], 0) *
             np.maximum(boxes[:, 3] - boxes[:, 1], 0))
    keep = np.ones(len(boxes), dtype=bool)
    if lo > 0:
        keep &= areas > lo * lo
    if np.isfinite(hi):
        keep &= areas <= hi * hi
    return keep


def scale_valid_range_mask(bboxes, scale_inds, valid_ranges) -> np.ndarray:
    """:func:`in_test_valid_range` with each detection's own scale.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` xyxy detections, orig px.
        scale_inds (np.ndarray): ``(N,)`` int, the scale of each detection.
        valid_ranges (Sequence[Sequence[float]]): One range per scale.

    Returns:
        np.ndarray: ``(N,)`` bool.
    """
    boxes = check_bboxes(bboxes, 'bboxes')
    scale_inds = np.asarray(scale_inds).reshape(-1)
    if len(scale_inds) != len(boxes):
        raise ValueError(f'got {len(scale_inds)} scale indices for '
                         f'{len(boxes)} boxes')
    ranges = normalize_valid_ranges(valid_ranges, len(valid_ranges))
    if len(scale_inds) and not (0 <= scale_inds.min()
                                and scale_inds.max() < len(ranges)):
        raise ValueError(f'scale indices must be in [0, {len(ranges)})')
    keep = np.zeros(len(boxes), dtype=bool)
    for idx in np.unique(scale_inds):
        sel = scale_inds == idx
        keep[sel] = in_test_valid_range(boxes[sel], ranges[idx])
    return keep
