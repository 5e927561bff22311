# Copyright (c) mmsniper contributors. All rights reserved.
"""Checks of SNIPER chip settings and why each GT box is (not) valid.

Pure numpy. :func:`check_chip_settings` rejects settings that would train
silently on the wrong chips, naming the key and the fix;
:func:`gt_scale_validity` tells, for many boxes of many images at once,
at which scales each box drives chips (the same rule as
:func:`~mmsniper.chips.chip_driving_mask`) and, for a box valid at no
scale, why.
"""
import argparse
import math
import re
from typing import NamedTuple, Optional, Sequence

import numpy as np

from .geometry import FIT_TOLERANCE
from .positive import MIN_BOX_SIDE
from .scales import (UNBOUNDED, _check_resolution, _is_real_number,
                     compute_scale_factors, normalize_valid_range)

__all__ = [
    'parse_scale', 'parse_range', 'NEGATIVE_VALUE_MATCHER',
    'check_scales_and_ranges',
    'check_chip_settings', 'GtValidity', 'gt_scale_validity',
    'image_scale_factors', 'REFERENCE_RANGES_HINT'
]

#: An example of ranges that go with finest-first scales.
REFERENCE_RANGES_HINT = 'e.g. [(-1, 80), (32, 150), (120, -1)]'


def _fmt_scale(scale) -> str:
    if isinstance(scale, (list, tuple, np.ndarray)):
        return repr(tuple(float(v) for v in scale))
    return repr(scale)


def _scale_rank(scale):
    """A sortable fineness of a scale: ``(kind, value)``; only scales of the
    same kind compare (a factor against a resolution pair depends on the
    image)."""
    if _is_real_number(scale):
        return 'factor', float(scale)
    short_target, long_cap = (float(v) for v in scale)
    if short_target != UNBOUNDED:
        return 'short', short_target
    return 'long', long_cap


def check_scales_and_ranges(scales: Sequence,
                            valid_ranges: Sequence,
                            owner: str = 'SniperChipDataset') -> None:
    """The scale and range part of :func:`check_chip_settings`: well-formed
    scales, finest first; one ``(lo, hi)`` per scale, ordered like them.

    Also the check of the test-time models (``owner='SniperTTAModel'``),
    whose scales and ranges follow the same order.

    Raises:
        ValueError: On the first problem found, naming ``owner.key[i]``.
    """
    if isinstance(scales, (str, bytes)) or _is_real_number(scales) or \
            not hasattr(scales, '__len__') or len(scales) == 0:
        raise ValueError(
            f'{owner}.scales = {scales!r}: give a list of scales, finest '
            'first, e.g. scales=[3.0, 1.667, (-1, 512)]')
    for i, scale in enumerate(scales):
        if _is_real_number(scale):
            if not (math.isfinite(scale) and scale > 0):
                raise ValueError(
                    f'{owner}.scales[{i}] = {scale!r}: a scale factor must '
                    'be positive and finite (1.0 keeps the image size, 2.0 '
                    'doubles it); fix or remove it')
        elif isinstance(scale, (list, tuple, np.ndarray)):
            try:
                _check_resolution(scale)
            except ValueError as error:
                raise ValueError(
                    f'{owner}.scales[{i}] = {_fmt_scale(scale)}: {error}; '
                    'a resolution scale is (short_side_target, '
                    'long_side_cap), e.g. (-1, 512) for the whole image at '
                    'long side 512') from None
        else:
            raise ValueError(
                f'{owner}.scales[{i}] = {scale!r}: a scale must be a '
                'positive factor or a (short_target, long_cap) pair')
    ranks = [_scale_rank(s) for s in scales]
    for j in range(1, len(scales)):
        for i in range(j):
            if ranks[i][0] == ranks[j][0] and ranks[i][1] <= ranks[j][1]:
                raise ValueError(
                    f'{owner}.scales = {[_fmt_scale(s) for s in scales]}: '
                    'scales must be listed finest first (largest first), '
                    f'but scales[{i}] = {_fmt_scale(scales[i])} is not '
                    f'finer than scales[{j}] = {_fmt_scale(scales[j])}; fix: '
                    'reorder scales finest first and valid_ranges with them '
                    '(the finest scale takes the smallest objects)')
    if isinstance(valid_ranges, (str, bytes)) or not hasattr(
            valid_ranges, '__len__'):
        raise ValueError(f'{owner}.valid_ranges = {valid_ranges!r}: give '
                         f'one (lo, hi) per scale, {REFERENCE_RANGES_HINT}')
    if len(valid_ranges) != len(scales):
        raise ValueError(
            f'{owner}: {len(scales)} scales but {len(valid_ranges)} '
            'valid_ranges; give one (lo, hi) sqrt-area range (orig px, -1 '
            f'for an open side) per scale, {REFERENCE_RANGES_HINT}')
    bounds = []
    for i, valid_range in enumerate(valid_ranges):
        try:
            bounds.append(normalize_valid_range(valid_range))
        except ValueError as error:
            raise ValueError(
                f'{owner}.valid_ranges[{i}] = {valid_range!r}: {error}; each '
                'range is (lo, hi) with lo < hi in original px, -1 for an '
                f'open side, {REFERENCE_RANGES_HINT}') from None
    for i in range(1, len(bounds)):
        (lo0, hi0), (lo1, hi1) = bounds[i - 1], bounds[i]
        if lo1 < lo0 or hi1 < hi0:
            raise ValueError(
                f'{owner}.valid_ranges = {list(valid_ranges)}: ranges must '
                'be ordered like the scales (finest first, so the ranges '
                'go from small objects to large ones), but '
                f'valid_ranges[{i}] = {tuple(valid_ranges[i])} takes '
                f'smaller objects than valid_ranges[{i - 1}] = '
                f'{tuple(valid_ranges[i - 1])}; fix: neither lo nor hi may '
                f'decrease from one range to the next, '
                f'{REFERENCE_RANGES_HINT}')


def check_chip_settings(scales: Sequence,
                        valid_ranges: Sequence,
                        chip_size: int,
                        stride: int,
                        stride_jitter: Optional[Sequence[int]] = None,
                        owner: str = 'SniperChipDataset') -> None:
    """Reject chip settings that cannot be what the user meant.

    Each error names the key (``owner.key[i]``) and says how to fix it.
    Checked: a non-positive or malformed scale; scales not finest first
    (among plain factors, and among resolution pairs of the same kind; a
    factor against a pair depends on the image and is not checked here);
    one valid range per scale, each with ``lo < hi``, and ranges ordered
    like the scales (neither ``lo`` nor ``hi`` may decrease from a finer
    scale to a coarser one); a chip not larger than the grid stride (or
    the largest jittered stride).

    Args:
        scales (Sequence): Scale specs, finest first.
        valid_ranges (Sequence): One ``(lo, hi)`` per scale, orig px.
        chip_size (int): Chip side, chip px.
        stride (int): Candidate grid step, chip px.
        stride_jitter (Sequence[int], optional): ``(low, high)`` strides.
        owner (str): Name used in the messages.

    Raises:
        ValueError: On the first problem found.
    """
    check_scales_and_ranges(scales, valid_ranges, owner)
    for name, value in (('chip_size', chip_size), ('stride', stride)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, np.integer)) or value <= 0:
            raise ValueError(f'{owner}.{name} = {value!r}: must be a '
                             'positive integer (chip px)')
    largest = int(stride)
    key = f'stride = {stride}'
    if stride_jitter is not None:
        try:
            high = int(stride_jitter[1])
        except (TypeError, ValueError, IndexError):
            high = None  # malformed: the dataset reports it
        if high is not None and high - 1 > largest:
            largest = high - 1
            key = f'stride_jitter = {tuple(stride_jitter)}'
    if chip_size <= largest:
        raise ValueError(
            f'{owner}.chip_size = {chip_size} is not larger than {owner}.'
            f'{key}: a box must fit in a chip with room for the stride '
            '(max side < chip_size - stride - 1), so no box could drive a '
            'chip; fix: a stride well below the chip size, e.g. chip_size='
            '512, stride=32')


def image_scale_factors(scales: Sequence,
                        image_sizes: np.ndarray) -> np.ndarray:
    """Scale factors of many images, computed once per distinct size.

    Args:
        scales (Sequence): Scale specs.
        image_sizes (np.ndarray): ``(M, 2)`` ``(height, width)``.

    Returns:
        np.ndarray: ``(M, S)`` float64 factors.
    """
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    if not len(sizes):
        return np.zeros((0, len(scales)))
    unique, inverse = np.unique(sizes, axis=0, return_inverse=True)
    table = np.stack(
        [compute_scale_factors(scales, tuple(size)) for size in unique])
    return table[np.asarray(inverse).reshape(-1)]


class GtValidity(NamedTuple):
    """Per box: where it drives chips, and why not when nowhere.

    Attributes:
        valid (np.ndarray): ``(N, S)`` bool, valid at each scale.
        in_range (np.ndarray): ``(N, S)`` bool, sqrt-area in the range.
        too_small (np.ndarray): ``(N,)`` bool, a side under 2 px (after
            clipping to the image): valid nowhere.
        out_of_ranges (np.ndarray): ``(N,)`` bool, large enough but in no
            scale's range.
        too_large_for_chip (np.ndarray): ``(N,)`` bool, in some scale's
            range but, at every such scale, too long to fit in a chip with
            room for the stride.
    """
    valid: np.ndarray
    in_range: np.ndarray
    too_small: np.ndarray
    out_of_ranges: np.ndarray
    too_large_for_chip: np.ndarray

    @property
    def valid_anywhere(self) -> np.ndarray:
        return self.valid.any(axis=1)

    def counts(self) -> dict:
        """``boxes``, ``valid``, ``invalid`` and the three reasons."""
        return dict(
            boxes=int(len(self.valid)),
            valid=int(self.valid_anywhere.sum()),
            invalid=int((~self.valid_anywhere).sum()),
            too_small=int(self.too_small.sum()),
            out_of_ranges=int(self.out_of_ranges.sum()),
            too_large_for_chip=int(self.too_large_for_chip.sum()))


def gt_scale_validity(bboxes: np.ndarray, image_sizes: np.ndarray,
                      factors: np.ndarray, valid_ranges: Sequence,
                      chip_size: int, stride: int) -> GtValidity:
    """At which scales boxes drive chips, for boxes of many images at once.

    The rule of :func:`~mmsniper.chips.chip_driving_mask` with
    ``image_size`` given (boxes clipped to their image; sides >= 2 px;
    sqrt-area in ``[lo, hi)``; the box fits in a chip with room for the
    stride, unless the scaled image fits in one chip along that axis),
    vectorised over boxes of different images.

    Args:
        bboxes (np.ndarray): ``(N, 4)`` xyxy boxes, orig px.
        image_sizes (np.ndarray): ``(N, 2)`` ``(height, width)`` of each
            box's image.
        factors (np.ndarray): ``(N, S)`` scale factors of each box's image.
        valid_ranges (Sequence): One ``(lo, hi)`` per scale, orig px.
        chip_size (int): Chip side, chip px.
        stride (int): Grid step, chip px.

    Returns:
        GtValidity: Per-box validity and reasons.
    """
    boxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    factors = np.asarray(factors, dtype=np.float64).reshape(len(boxes), -1)
    num_scales = factors.shape[1]
    ranges = np.array([normalize_valid_range(r) for r in valid_ranges],
                      dtype=np.float64).reshape(num_scales, 2)
    height, width = sizes[:, 0], sizes[:, 1]
    upper = np.stack([width, height, width, height], axis=1)
    clipped = np.minimum(np.maximum(boxes, 0.0), upper)
    widths = np.maximum(clipped[:, 2] - clipped[:, 0], 0.0)
    heights = np.maximum(clipped[:, 3] - clipped[:, 1], 0.0)
    sqrt_areas = np.sqrt(widths * heights)[:, None]
    large = (widths >= MIN_BOX_SIDE) & (heights >= MIN_BOX_SIDE)
    in_range = (sqrt_areas >= ranges[None, :, 0]) & (
        sqrt_areas < ranges[None, :, 1])
    fits_x = width[:, None] * factors <= chip_size + FIT_TOLERANCE
    fits_y = height[:, None] * factors <= chip_size + FIT_TOLERANCE
    max_side = (chip_size - stride - 1) / factors
    size_ok = np.where(
        ~fits_x & ~fits_y,
        np.maximum(widths, heights)[:, None] < max_side,
        np.where(~fits_x, widths[:, None] < max_side,
                 np.where(~fits_y, heights[:, None] < max_side, True)))
    valid = large[:, None] & in_range & size_ok
    anywhere = valid.any(axis=1)
    out_of_ranges = large & ~in_range.any(axis=1)
    return GtValidity(valid, in_range, ~large, out_of_ranges,
                      large & ~anywhere & ~out_of_ranges)


#: argparse's ``_negative_number_matcher`` for options that take scales and
#: ranges: ``-1,512`` and ``-1,-1`` are values, not options
NEGATIVE_VALUE_MATCHER = re.compile(
    r'^-\d+$|^-\d*\.\d+$|^-\d*\.?\d*,-?\d*\.?\d*$')


def parse_scale(text: str):
    """A scale on the command line: ``'2.0'`` -> 2.0 (a factor);
    ``'-1,512'`` -> (-1, 512) (short target, long cap)."""
    parts = [float(p) for p in text.split(',')]
    if len(parts) == 1:
        return parts[0]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f'bad scale {text!r}')
    return tuple(int(p) if p.is_integer() else p for p in parts)


def parse_range(text: str):
    """A valid range on the command line: ``'32,150'``, ``'-1,80'``."""
    parts = [float(p) for p in text.split(',')]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(
            f'bad valid range {text!r}: give LO,HI (-1 for open)')
    return tuple(int(p) if p.is_integer() else p for p in parts)
