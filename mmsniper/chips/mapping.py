# Copyright (c) mmsniper contributors. All rights reserved.
"""Boxes between chip and original pixels, and pruning at chip edges.

Shared by tiled SNIPER inference and AutoFocus (SNIPER_SPEC.md sections 6
and 7). A *chip* here is any region of the original image that was cut out
at ``offset = (x, y)`` (original px) and resized by ``scale`` (a factor, or
``(sx, sy)`` when the two axes were rounded to whole pixels separately):
chip px = (orig px - offset) * scale.
"""
import numpy as np

from .geometry import check_bboxes
from .scales import check_image_size

__all__ = [
    'flip_boxes', 'map_boxes_to_original', 'map_boxes_to_chip',
    'edge_cut_mask', 'IMAGE_EDGE_TOLERANCE'
]

#: A chip side closer than this (original px) to the image border counts as
#: the image edge (the reference's 0.5 px, lib/inference.py check_valid).
IMAGE_EDGE_TOLERANCE = 0.5


def _check_scale(scale) -> np.ndarray:
    """``scale`` as a ``(2,)`` array ``(sx, sy)`` of positive floats."""
    values = np.asarray(scale, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not (np.isfinite(values).all() and
                                (values > 0).all()):
        raise ValueError('scale must be a positive factor or a positive '
                         f'(sx, sy) pair, got {scale!r}')
    return values


def _check_offset(offset) -> np.ndarray:
    values = np.asarray(offset, dtype=np.float64).reshape(-1)
    if values.size != 2 or not np.isfinite(values).all():
        raise ValueError(f'offset must be a finite (x, y) pair, got '
                         f'{offset!r}')
    return values


def flip_boxes(bboxes, width) -> np.ndarray:
    """Mirror boxes horizontally inside an image of ``width`` px.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` xyxy boxes.
        width (float): Width of the (flipped) image, same px as the boxes.

    Returns:
        np.ndarray: ``(N, 4)`` float64 boxes, ``x -> width - x``.
    """
    boxes = check_bboxes(bboxes, 'bboxes').copy()
    boxes[:, [0, 2]] = float(width) - boxes[:, [2, 0]]
    return boxes


def map_boxes_to_original(bboxes, offset, scale, image_size=None):
    """Map boxes from chip px to original-image px.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` xyxy boxes in chip px.
        offset (Sequence[float]): ``(x, y)`` of the chip origin, orig px.
        scale (float | Sequence[float]): Chip px per orig px, a factor or
            ``(sx, sy)``.
        image_size (Sequence[float], optional): ``(height, width)`` of the
            original image; when given, boxes are clipped to it.

    Returns:
        np.ndarray: ``(N, 4)`` float64 boxes, ``box / scale + offset``.
    """
    boxes = check_bboxes(bboxes, 'bboxes')
    sx, sy = _check_scale(scale)
    ox, oy = _check_offset(offset)
    out = boxes / np.array([sx, sy, sx, sy]) + np.array([ox, oy, ox, oy])
    if image_size is not None:
        height, width = check_image_size(image_size)
        out = np.clip(out, 0.0, np.array([width, height, width, height]))
    return out


def map_boxes_to_chip(bboxes, offset, scale) -> np.ndarray:
    """Inverse of :func:`map_boxes_to_original` (no clipping).

    Args:
        bboxes (np.ndarray): ``(N, 4)`` xyxy boxes, orig px.
        offset (Sequence[float]): ``(x, y)`` of the chip origin, orig px.
        scale (float | Sequence[float]): Chip px per orig px.

    Returns:
        np.ndarray: ``(N, 4)`` float64 boxes, ``(box - offset) * scale``.
    """
    boxes = check_bboxes(bboxes, 'bboxes')
    sx, sy = _check_scale(scale)
    ox, oy = _check_offset(offset)
    return (boxes - np.array([ox, oy, ox, oy])) * np.array([sx, sy, sx, sy])


def edge_cut_mask(bboxes, chips, image_size, margin) -> np.ndarray:
    """Which detections are *not* cut by a chip edge inside the image.

    The reference rule (lib/inference.py ``check_valid``): a detection is
    dropped when one of its sides lies closer than ``margin`` to the same
    side of its chip, unless that chip side is an image edge (within
    :data:`IMAGE_EDGE_TOLERANCE`). A detection of an object the chip cut in
    two ends at the cut (the detector clips to its input), so it is dropped;
    an object wholly inside the chip, at least ``margin`` from its inner
    edges, is kept.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` xyxy detections, orig px.
        chips (np.ndarray): ``(4,)`` one chip for all detections, or
            ``(N, 4)`` the chip of each detection; xyxy, orig px.
        image_size (Sequence[float]): ``(height, width)`` of the image.
        margin (float): Distance, orig px, under which a detection side
            counts as cut (the reference uses 10).

    Returns:
        np.ndarray: ``(N,)`` bool, True = keep.
    """
    boxes = check_bboxes(bboxes, 'bboxes')
    height, width = check_image_size(image_size)
    if not (np.isfinite(margin) and margin >= 0):
        raise ValueError(f'margin must be >= 0, got {margin!r}')
    chips = np.asarray(chips, dtype=np.float64)
    if chips.shape == (4, ):
        chips = np.broadcast_to(chips, boxes.shape)
    if chips.shape != boxes.shape:
        raise ValueError('chips must have shape (4,) or (N, 4) matching the '
                         f'{len(boxes)} boxes, got {chips.shape}')
    tol = IMAGE_EDGE_TOLERANCE
    inner = np.stack([
        chips[:, 0] >= tol, chips[:, 1] >= tol, chips[:, 2] < width - tol,
        chips[:, 3] < height - tol
    ],
                     axis=1)
    near = np.abs(boxes - chips) < margin
    return ~(inner & near).any(axis=1)
