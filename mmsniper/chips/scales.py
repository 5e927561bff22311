# Copyright (c) mmsniper contributors. All rights reserved.
"""Scale factors and valid ranges (SNIPER spec, section 1).

A *scale* is either a plain factor (``3.0``) or a resolution pair
``(short_target, long_cap)``. A *valid range* ``(lo, hi)`` bounds the
sqrt-area of a box in original-image pixels; ``-1`` leaves a side open.
"""
import math

import numpy as np

__all__ = [
    'compute_scale_factor', 'compute_scale_factors', 'box_sqrt_areas',
    'in_valid_range', 'normalize_valid_ranges', 'normalize_valid_range',
    'check_image_size', 'check_scale_factor', 'LOWER_BOUND_SCALES',
    'check_lower_bound_scales', 'validity_ranges'
]

#: Marks an open side of a resolution pair or of a valid range.
UNBOUNDED = -1

_REAL_TYPES = (int, float, np.integer, np.floating)

#: Where the lower bound of a valid range applies to GT validity and to
#: negative-mining proposals: ``'all'`` scales (spec and paper) or only the
#: ``'coarsest'`` one (the authors' code).
LOWER_BOUND_SCALES = ('all', 'coarsest')


def _is_real_number(value) -> bool:
    """Whether ``value`` is a real scalar (bools excluded)."""
    value_type = type(value)
    if value_type is float or value_type is int:
        return True
    is_bool = isinstance(value, (bool, np.bool_))
    return isinstance(value, _REAL_TYPES) and not is_bool


def check_image_size(image_size) -> tuple:
    """Validate an image size.

    Args:
        image_size (Sequence[float]): ``(height, width)`` in pixels.

    Returns:
        tuple[float, float]: ``(height, width)`` as floats.
    """
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError('image_size must be a (height, width) pair, got '
                         f'{image_size!r}') from None
    for name, side in (('height', height), ('width', width)):
        if not _is_real_number(side) or not math.isfinite(side) or side <= 0:
            raise ValueError(f'image {name} must be a positive finite '
                             f'number, got {side!r}')
    return float(height), float(width)


def check_scale_factor(factor) -> float:
    """Validate a plain scale factor.

    Args:
        factor (float): The factor.

    Returns:
        float: The factor, positive and finite.
    """
    if not (_is_real_number(factor) and math.isfinite(factor) and factor > 0):
        raise ValueError(
            f'a scale factor must be positive and finite, got {factor!r}')
    return float(factor)


def _check_resolution(scale) -> tuple:
    """Validate a ``(short_target, long_cap)`` pair.

    Args:
        scale (Sequence[float]): The resolution pair.

    Returns:
        tuple[float, float]: ``(short_target, long_cap)`` as floats.
    """
    if len(scale) != 2:
        raise ValueError('a resolution scale must be a (short_target, '
                         f'long_cap) pair, got {scale!r}')
    for value in scale:
        if not _is_real_number(value) or not math.isfinite(value) or (
                value <= 0 and value != UNBOUNDED):
            raise ValueError(
                f'resolution scale {tuple(scale)!r}: each side must be '
                'positive or -1 (unbounded)')
    short_target, long_cap = float(scale[0]), float(scale[1])
    if short_target == UNBOUNDED and long_cap == UNBOUNDED:
        raise ValueError('resolution scale (-1, -1) sets no size: give a '
                         'short-side target, a long-side cap or both')
    return short_target, long_cap


def compute_scale_factor(scale, image_size) -> float:
    """Compute the resize factor of one scale for one image.

    Follows the reference rule: for ``(short_target, long_cap)`` the factor
    is ``short_target / short_side``, reduced to ``long_cap / long_side``
    when ``round(factor * long_side) > long_cap``. ``short_target == -1``
    means ``long_cap / long_side``; ``long_cap == -1`` means no cap.

    Args:
        scale (float | Sequence[float]): A positive factor, or a
            ``(short_target, long_cap)`` resolution pair.
        image_size (Sequence[float]): ``(height, width)`` of the image.

    Returns:
        float: The factor that maps original pixels to scaled pixels.
    """
    return _scale_factor(scale, *check_image_size(image_size))


def _scale_factor(scale, height, width) -> float:
    """:func:`compute_scale_factor` for a validated image size."""
    if _is_real_number(scale):
        return check_scale_factor(scale)
    if not isinstance(scale, (tuple, list, np.ndarray)):
        raise ValueError('a scale must be a positive factor or a '
                         f'(short_target, long_cap) pair, got {scale!r}')
    short_target, long_cap = _check_resolution(scale)
    short_side, long_side = min(height, width), max(height, width)
    if short_target == UNBOUNDED:
        return long_cap / long_side
    factor = short_target / short_side
    if long_cap != UNBOUNDED and round(factor * long_side) > long_cap:
        factor = long_cap / long_side
    return factor


def compute_scale_factors(scales, image_size) -> np.ndarray:
    """Compute the factors of several scales for one image.

    Args:
        scales (Sequence[float | Sequence[float]]): Scale specs, finest
            first (see :func:`compute_scale_factor`).
        image_size (Sequence[float]): ``(height, width)`` of the image.

    Returns:
        np.ndarray: ``(S,)`` float64 factors.
    """
    if isinstance(scales, (str, bytes)) or _is_real_number(scales):
        raise ValueError(f'scales must be a sequence of scales, got '
                         f'{scales!r}')
    if len(scales) == 0:
        raise ValueError('scales must hold at least one scale')
    height, width = check_image_size(image_size)
    return np.array([_scale_factor(scale, height, width) for scale in scales],
                    dtype=np.float64)


def box_sqrt_areas(bboxes) -> np.ndarray:
    """Sqrt-areas of boxes.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` boxes, xyxy. A negative width or
            height counts as 0.

    Returns:
        np.ndarray: ``(N,)`` float64 ``sqrt(w * h)``.
    """
    bboxes = np.asarray(bboxes, dtype=np.float64)
    if bboxes.size == 0:
        return np.zeros(0, dtype=np.float64)
    if bboxes.ndim != 2 or bboxes.shape[1] != 4:
        raise ValueError(f'bboxes must have shape (N, 4), got {bboxes.shape}')
    widths = np.maximum(bboxes[:, 2] - bboxes[:, 0], 0.0)
    heights = np.maximum(bboxes[:, 3] - bboxes[:, 1], 0.0)
    return np.sqrt(widths * heights)


def normalize_valid_range(valid_range) -> tuple:
    """Validate one valid range and close its open sides.

    Args:
        valid_range (Sequence[float]): ``(lo, hi)`` sqrt-area bounds;
            ``-1`` leaves a side open.

    Returns:
        tuple[float, float]: ``(lo, hi)`` with an open ``lo`` as ``0`` and
        an open ``hi`` as ``inf``.
    """
    try:
        lo, hi = valid_range
    except (TypeError, ValueError):
        raise ValueError('a valid range must be a (lo, hi) pair, got '
                         f'{valid_range!r}') from None
    bounds = []
    for name, value in (('lo', lo), ('hi', hi)):
        if not _is_real_number(value) or math.isnan(value) or (
                value < 0 and value != UNBOUNDED):
            raise ValueError(f'valid range {tuple(valid_range)!r}: {name} '
                             'must be >= 0 or -1 (unbounded)')
        bounds.append(float(value))
    lo = 0.0 if bounds[0] == UNBOUNDED else bounds[0]
    hi = math.inf if bounds[1] == UNBOUNDED else bounds[1]
    if not lo < hi:
        raise ValueError(f'valid range {tuple(valid_range)!r}: lo must be '
                         'smaller than hi')
    return lo, hi


def normalize_valid_ranges(valid_ranges, num_scales) -> np.ndarray:
    """Validate the valid ranges of all scales.

    Args:
        valid_ranges (Sequence[Sequence[float]]): One ``(lo, hi)`` per
            scale, finest first; ``-1`` leaves a side open.
        num_scales (int): Number of scales the ranges must match.

    Returns:
        np.ndarray: ``(S, 2)`` float64 ranges, open sides as ``0``/``inf``.
    """
    if isinstance(valid_ranges, np.ndarray) and valid_ranges.ndim == 2:
        valid_ranges = valid_ranges.tolist()
    if len(valid_ranges) != num_scales:
        raise ValueError(f'got {len(valid_ranges)} valid ranges for '
                         f'{num_scales} scales: give one (lo, hi) per scale')
    return np.array(
        [normalize_valid_range(valid_range) for valid_range in valid_ranges],
        dtype=np.float64).reshape(num_scales, 2)


def in_valid_range(bboxes, valid_range) -> np.ndarray:
    """Which boxes have their sqrt-area inside a valid range.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` boxes, xyxy, original pixels.
        valid_range (Sequence[float]): ``(lo, hi)``; ``-1`` leaves a side
            open. The test is ``lo <= sqrt(w * h) < hi``.

    Returns:
        np.ndarray: ``(N,)`` bool.
    """
    lo, hi = normalize_valid_range(valid_range)
    sqrt_areas = box_sqrt_areas(bboxes)
    return (sqrt_areas >= lo) & (sqrt_areas < hi)


def check_lower_bound_scales(lower_bound_scales) -> str:
    """Validate a ``lower_bound_scales`` setting.

    Args:
        lower_bound_scales (str): ``'all'`` or ``'coarsest'``.

    Returns:
        str: The setting.
    """
    if lower_bound_scales not in LOWER_BOUND_SCALES:
        raise ValueError("lower_bound_scales must be 'all' or 'coarsest', "
                         f'got {lower_bound_scales!r}')
    return lower_bound_scales


def validity_ranges(valid_ranges, lower_bound_scales='all') -> np.ndarray:
    """The ranges that decide GT validity and negative-mining proposals.

    With ``lower_bound_scales='all'`` these are the valid ranges. With
    ``'coarsest'`` (the rule of the authors' code, ``box_assigner`` in
    ``lib/data_utils/data_workers.py``) every scale but the coarsest (the
    last) loses its lower bound: a box smaller than the range is still valid
    there. Positive chips are driven by the full ranges either way.

    Args:
        valid_ranges (np.ndarray): ``(S, 2)`` normalized ranges, finest
            first (:func:`normalize_valid_ranges`).
        lower_bound_scales (str): ``'all'`` or ``'coarsest'``.

    Returns:
        np.ndarray: ``(S, 2)`` float64 ranges (a new array).
    """
    ranges = np.array(valid_ranges, dtype=np.float64).reshape(-1, 2)
    if check_lower_bound_scales(lower_bound_scales) == 'coarsest':
        ranges[:-1, 0] = 0.0
    return ranges
