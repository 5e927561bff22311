# Copyright (c) mmsniper contributors. All rights reserved.
"""Propose SNIPER scales and valid ranges from a dataset's object sizes.

Pure numpy. The idea: a detector handles objects well inside a *target
band* of sizes in chip px (by default 32 to 256 px, what an FPN detector
with anchors from 32 to 256 px covers comfortably in a 512 px chip). Each
scale ``s`` maps the objects of sqrt-area ``[a / s, b / s]`` (orig px)
into the band ``[a, b]``; the scales are spaced so that these ranges
overlap and together span the dataset's object sizes.

:func:`propose_scales` does the proposal, :func:`evaluate_settings`
measures any settings (chips per image, training pixels, share of boxes
valid at no scale) with the same chip generator as training.
"""
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .positive import MIN_BOX_SIDE, generate_multiscale_chips
from .settings import gt_scale_validity, image_scale_factors

__all__ = [
    'DEFAULT_BAND', 'ScaleProposal', 'propose_scales', 'size_percentiles',
    'resize_pixels', 'SettingsReport', 'evaluate_settings'
]

#: Target object sizes (sqrt-area, chip px) of an FPN detector whose
#: anchors span 32 to 256 px, in 512 px chips.
DEFAULT_BAND = (32.0, 256.0)


class ScaleProposal(NamedTuple):
    """Proposed settings and how they were derived.

    Attributes:
        scales (list): Finest first; plain factors, the last one possibly
            ``(-1, chip_size)`` (each image's long side to one chip).
        valid_ranges (list): One ``(lo, hi)`` per scale, integer orig px,
            -1 for an open side.
        factors (list): The factor of each scale (for ``(-1, chip_size)``
            the median over the images).
        small (float): The object size (sqrt-area, orig px) at the low
            percentile.
        large (float): The object size at the high percentile.
        band (tuple): ``(a, b)``, the target band in chip px.
    """
    scales: list
    valid_ranges: list
    factors: list
    small: float
    large: float
    band: Tuple[float, float]


def _round_factor(factor: float) -> float:
    return float(f'{factor:.3g}')


def propose_scales(sqrt_areas: np.ndarray,
                   image_sizes: np.ndarray,
                   band: Sequence[float] = DEFAULT_BAND,
                   chip_size: int = 512,
                   low_percentile: float = 5.0,
                   high_percentile: float = 99.0,
                   max_upsample: float = 3.0,
                   overlap: float = 1.25,
                   num_scales: Optional[int] = None) -> ScaleProposal:
    """Propose scales and valid ranges for a target band of object sizes.

    With ``small`` and ``large`` the ``low_percentile`` and
    ``high_percentile`` sqrt-areas (orig px, boxes of 2 px or more) and
    ``(a, b) = band``:

    1. The finest factor puts ``small`` at ``a``: ``s_1 = min(a / small,
       max_upsample)``.
    2. The coarsest factor puts ``large`` at ``b``: ``s_n = b / large``.
       If at ``s_n`` the median image fits in one chip anyway, the
       coarsest scale becomes ``(-1, chip_size)`` (each whole image
       resized into one chip, as the reference does), with the median
       ``chip_size / long_side`` as its factor.
    3. Each scale covers a factor ``b / a`` of object sizes; consecutive
       ranges must overlap by ``overlap`` (a box near a range edge is
       valid at two scales), so consecutive factors differ by at most
       ``r = (b / a) / overlap``: ``n = 1 + ceil(log(s_1 / s_n) / log
       r)`` scales (or ``num_scales``), spaced geometrically.
    4. Scale ``k`` takes the objects of ``[a / s_k, b / s_k)``, except that
       the finest range is open below and the coarsest open above, so that
       no box is out of every range.

    When ``s_1 <= s_n`` one scale, ``s_1``, holds the band.

    Args:
        sqrt_areas (np.ndarray): ``(N,)`` object sqrt-areas, orig px.
        image_sizes (np.ndarray): ``(M, 2)`` ``(height, width)``.
        band (Sequence[float]): ``(a, b)`` target sqrt-areas, chip px.
        chip_size (int): Chip side, chip px.
        low_percentile (float): Percentile that defines ``small``.
        high_percentile (float): Percentile that defines ``large``.
        max_upsample (float): Cap of the finest factor.
        overlap (float): Minimum ratio by which consecutive ranges
            overlap, >= 1.
        num_scales (int, optional): Force the number of scales.

    Returns:
        ScaleProposal: The proposal.
    """
    a, b = (float(v) for v in band)
    if not 0 < a < b:
        raise ValueError(f'band must be (a, b) with 0 < a < b, got {band}')
    if overlap < 1 or overlap >= b / a:
        raise ValueError(f'overlap must be in [1, b / a = {b / a:g}), got '
                         f'{overlap}')
    sizes = np.asarray(sqrt_areas, dtype=np.float64).reshape(-1)
    sizes = sizes[np.isfinite(sizes) & (sizes >= MIN_BOX_SIDE)]
    if not len(sizes):
        raise ValueError('no object of 2 px or more to propose scales for')
    image_sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    if not len(image_sizes):
        raise ValueError('no image sizes given')
    small = float(np.percentile(sizes, low_percentile))
    large = float(np.percentile(sizes, high_percentile))
    fine = min(a / small, float(max_upsample))
    coarse = b / large
    whole = float(np.median(chip_size / image_sizes.max(axis=1)))
    median_long = float(np.median(image_sizes.max(axis=1)))
    coarse_is_whole = coarse * median_long <= chip_size
    if coarse_is_whole:
        coarse = whole
    if num_scales is None:
        if fine <= coarse:
            num_scales = 1
        else:
            step = (b / a) / overlap
            num_scales = 1 + math.ceil(
                math.log(fine / coarse) / math.log(step) - 1e-9)
    num_scales = int(num_scales)
    if num_scales < 1:
        raise ValueError(f'num_scales must be >= 1, got {num_scales}')
    if num_scales == 1:
        factors = [fine]
        coarse_is_whole = False
    else:
        factors = np.geomspace(fine, coarse, num_scales).tolist()
    scales: List = [_round_factor(f) for f in factors]
    if coarse_is_whole:
        scales[-1] = (-1, int(chip_size))
        factors[-1] = whole
    ranges = []
    for k, factor in enumerate(factors):
        shown = scales[k] if not isinstance(scales[k], tuple) else factor
        lo = -1 if k == 0 else int(round(a / shown))
        hi = -1 if k == len(factors) - 1 else int(round(b / shown))
        ranges.append((lo, hi))
    return ScaleProposal(scales, ranges, [float(f) for f in factors], small,
                         large, (a, b))


def size_percentiles(sqrt_areas: np.ndarray,
                     labels: np.ndarray,
                     num_classes: int,
                     percentiles: Sequence[float] = (1, 5, 25, 50, 75, 95,
                                                     99)) -> np.ndarray:
    """Sqrt-area percentiles per class and over all objects.

    Args:
        sqrt_areas (np.ndarray): ``(N,)`` sqrt-areas.
        labels (np.ndarray): ``(N,)`` class index of each object.
        num_classes (int): Number of classes.
        percentiles (Sequence[float]): Percentiles to compute.

    Returns:
        np.ndarray: ``(num_classes + 1, len(percentiles))``; the last row
        is over all objects; NaN for a class without objects.
    """
    sizes = np.asarray(sqrt_areas, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    out = np.full((num_classes + 1, len(percentiles)), np.nan)
    for c in range(num_classes):
        if (labels == c).any():
            out[c] = np.percentile(sizes[labels == c], percentiles)
    if len(sizes):
        out[-1] = np.percentile(sizes, percentiles)
    return out


def resize_pixels(image_sizes: np.ndarray,
                  short: float = 800,
                  long: float = 1333) -> np.ndarray:
    """Pixels of each image after mmdet's keep-ratio resize to
    ``(long, short)`` (the factor ``min(short / short_side, long /
    long_side)``)."""
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    factor = np.minimum(short / sizes.min(axis=1), long / sizes.max(axis=1))
    return sizes[:, 0] * sizes[:, 1] * factor**2


class SettingsReport(NamedTuple):
    """What some settings cost and cover on a dataset.

    Attributes:
        chips_per_scale (list[int]): Positive chips per scale.
        chips_per_image (float): Positive chips per image.
        pixels_per_image (float): Chip px per image.
        pixels_vs_resize (float): ``pixels_per_image`` over the px of one
            800x1333 resize per image.
        boxes (int): Boxes evaluated (sides >= 2 px or not).
        invalid (int): Boxes valid at no scale.
        invalid_share (float): ``invalid / boxes``.
        reasons (dict): ``too_small``, ``out_of_ranges``,
            ``too_large_for_chip`` counts.
        valid_per_scale (list[int]): Boxes valid at each scale.
    """
    chips_per_scale: list
    chips_per_image: float
    pixels_per_image: float
    pixels_vs_resize: float
    boxes: int
    invalid: int
    invalid_share: float
    reasons: dict
    valid_per_scale: list


def evaluate_settings(image_boxes: Sequence[np.ndarray],
                      image_sizes: np.ndarray,
                      scales: Sequence,
                      valid_ranges: Sequence,
                      chip_size: int = 512,
                      stride: int = 32,
                      progress=None) -> SettingsReport:
    """Positive chips, pixels and GT validity of settings on a dataset.

    Args:
        image_boxes (Sequence[np.ndarray]): Per image, ``(N_i, 4)`` xyxy
            boxes (orig px) that drive chips (no crowd / ignored boxes).
        image_sizes (np.ndarray): ``(M, 2)`` ``(height, width)``.
        scales (Sequence): Scale specs, finest first.
        valid_ranges (Sequence): One ``(lo, hi)`` per scale.
        chip_size (int): Chip side.
        stride (int): Grid step.
        progress (callable, optional): Called once per image (a progress
            bar's ``update``).

    Returns:
        SettingsReport: The measurements.
    """
    sizes = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    num_images = max(len(sizes), 1)
    chips = np.zeros(len(scales), dtype=np.int64)
    for boxes, size in zip(image_boxes, sizes):
        for k, result in enumerate(
                generate_multiscale_chips(boxes, tuple(size), scales,
                                          valid_ranges, chip_size, stride)):
            chips[k] += len(result.chips)
        if progress is not None:
            progress()
    counts = [len(b) for b in image_boxes]
    all_boxes = np.concatenate(
        [np.asarray(b, dtype=np.float64).reshape(-1, 4)
         for b in image_boxes]) if len(image_boxes) else np.zeros((0, 4))
    box_sizes = np.repeat(sizes, counts, axis=0)
    factors = image_scale_factors(scales, sizes)
    validity = gt_scale_validity(all_boxes, box_sizes,
                                 np.repeat(factors, counts, axis=0),
                                 valid_ranges, chip_size, stride)
    stats = validity.counts()
    pixels = chips.sum() * chip_size**2 / num_images
    resize = resize_pixels(sizes).sum() / num_images if len(sizes) else 1.0
    return SettingsReport(
        chips_per_scale=chips.tolist(),
        chips_per_image=float(chips.sum() / num_images),
        pixels_per_image=float(pixels),
        pixels_vs_resize=float(pixels / resize),
        boxes=stats['boxes'],
        invalid=stats['invalid'],
        invalid_share=stats['invalid'] / max(stats['boxes'], 1),
        reasons={
            k: stats[k]
            for k in ('too_small', 'out_of_ranges', 'too_large_for_chip')
        },
        valid_per_scale=validity.valid.sum(axis=0).tolist())
