# Copyright (c) mmsniper contributors. All rights reserved.
"""Negative chips mined from proposals (SNIPER spec, section 3).

Per scale: the proposals that are valid like GT at that scale (valid range,
size, see :func:`~mmsniper.chips.positive.chip_driving_mask`) and that lie
entirely inside none of the scale's positive chips drive the same greedy
cover as positive chips; each of them is assigned to its best chip (largest
intersection over box area) and a chip is kept when it holds *more than*
``min_proposals`` of them. Proposals are clipped to the image first, as GT
are. Scores play no part: a proposal with a NaN score is mined like any
other (the proposal-file loader is where such rows are counted and
dropped). Pure numpy.
"""
import numpy as np

from .cover import any_chip_contains, assign_boxes_to_chips, check_rng
from .geometry import check_bboxes, check_chip_params, clip_bboxes
from .positive import ScaleChips, chip_driving_mask, generate_scale_chips
from .scales import (check_image_size, check_scale_factor,
                     compute_scale_factor, compute_scale_factors,
                     normalize_valid_range, normalize_valid_ranges,
                     validity_ranges)

__all__ = [
    'negative_proposal_mask', 'generate_negative_scale_chips',
    'generate_negative_chips', 'check_proposals', 'per_scale_min_proposals'
]

#: Reference thresholds: more than 25 proposals at the finest scale, more
#: than 10 at every other one.
REFERENCE_MIN_PROPOSALS = (25, 10)


def check_proposals(proposals) -> np.ndarray:
    """Validate proposals and drop their scores.

    Args:
        proposals (ArrayLike): ``(P, 4)`` xyxy boxes or ``(P, 5)`` boxes
            with a score column (ignored, whatever its value, NaN
            included); an empty sequence means none.

    Returns:
        np.ndarray: ``(P, 4)`` float64 boxes (a new array).
    """
    try:
        array = np.asarray(proposals, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError('proposals must be a (P, 4) or (P, 5) array of '
                         f'numbers: {error}') from None
    if array.shape == (0, ):
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] not in (4, 5):
        raise ValueError('proposals must have shape (P, 4) or (P, 5) '
                         f'(xyxy[, score]), got {array.shape}')
    boxes = np.array(array[:, :4], dtype=np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if len(bad_rows):
        shown = ', '.join(str(row) for row in bad_rows[:5].tolist())
        more = ', ...' if len(bad_rows) > 5 else ''
        raise ValueError(
            f'proposals must be finite: {len(bad_rows)} of {len(boxes)} '
            f'rows hold NaN or inf (rows {shown}{more}; first: '
            f'{boxes[bad_rows[0]].tolist()})')
    return boxes


def per_scale_min_proposals(min_proposals, num_scales) -> list:
    """Expand ``min_proposals`` to one threshold per scale.

    Args:
        min_proposals (int | Sequence[int]): One threshold for every
            scale, or thresholds finest first; a shorter sequence repeats
            its last value, extra values are ignored.
        num_scales (int): Number of scales.

    Returns:
        list[int]: ``num_scales`` non-negative thresholds.
    """
    if _is_integer(min_proposals):
        values = [min_proposals]
    else:
        try:
            values = list(min_proposals)
        except TypeError:
            raise ValueError('min_proposals must be an int or a sequence '
                             f'of ints, got {min_proposals!r}') from None
        if isinstance(min_proposals, (str, bytes)) or not values:
            raise ValueError('min_proposals must be an int or a non-empty '
                             f'sequence of ints, got {min_proposals!r}')
    for value in values:
        if not _is_integer(value) or value < 0:
            raise ValueError('min_proposals must be non-negative integers, '
                             f'got {min_proposals!r}')
    values = [int(value) for value in values[:num_scales]]
    return values + values[-1:] * (num_scales - len(values))


def _is_integer(value) -> bool:
    """Whether ``value`` is an int (bools excluded)."""
    return isinstance(
        value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_min_proposals(min_proposals) -> int:
    """Validate a single threshold."""
    if not _is_integer(min_proposals) or min_proposals < 0:
        raise ValueError('min_proposals must be a non-negative integer, got '
                         f'{min_proposals!r}')
    return int(min_proposals)


def _check_scale_pos_chips(pos_chips, name='pos_chips') -> np.ndarray:
    """Validate the positive chips of one scale (array or ScaleChips)."""
    if isinstance(pos_chips, ScaleChips):
        pos_chips = pos_chips.chips
    return check_bboxes(pos_chips, name)


def _driving_mask(boxes, pos_chips, scale_factor, valid_range, chip_size,
                  stride, image_size) -> np.ndarray:
    """:func:`negative_proposal_mask` on validated, clipped inputs."""
    mask = chip_driving_mask(boxes, scale_factor, valid_range, chip_size,
                             stride, image_size)
    if len(pos_chips) and mask.any():
        candidates = np.flatnonzero(mask)
        inside = any_chip_contains(pos_chips, boxes[candidates])
        mask[candidates[inside]] = False
    return mask


def negative_proposal_mask(proposals,
                           pos_chips,
                           scale_factor,
                           valid_range,
                           chip_size,
                           stride,
                           image_size=None) -> np.ndarray:
    """Which proposals can drive negative chips at one scale.

    A proposal drives negative chips when it would be a valid GT at this
    scale (:func:`~mmsniper.chips.positive.chip_driving_mask`: in the valid
    range, fits a chip with room for the stride, sides >= 2 px) and lies
    entirely inside none of the scale's positive chips.

    Args:
        proposals (np.ndarray): ``(P, 4)`` xyxy or ``(P, 5)`` with scores,
            orig px.
        pos_chips (np.ndarray): ``(M, 4)`` positive chips of this scale,
            orig px.
        scale_factor (float): Resize factor of the scale.
        valid_range (Sequence[float]): ``(lo, hi)`` sqrt-area bounds, orig
            px; ``-1`` leaves a side open.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.
        image_size (Sequence[float], optional): ``(height, width)``. When
            given, proposals are clipped to the image first and the size
            test is relaxed as for GT.

    Returns:
        np.ndarray: ``(P,)`` bool.
    """
    boxes = check_proposals(proposals)
    chips = _check_scale_pos_chips(pos_chips)
    scale_factor = check_scale_factor(scale_factor)
    valid_range = normalize_valid_range(valid_range)
    chip_size, stride = check_chip_params(chip_size, stride)
    if image_size is not None:
        image_size = check_image_size(image_size)
        boxes = clip_bboxes(boxes, image_size)
    return _driving_mask(boxes, chips, scale_factor, valid_range, chip_size,
                         stride, image_size)


def _negative_chips_of_scale(boxes, pos_chips, image_size, scale_factor,
                             valid_range, chip_size, stride, min_proposals,
                             rng) -> np.ndarray:
    """Negative chips of one scale, on validated inputs.

    Args:
        boxes (np.ndarray): ``(P, 4)`` proposals clipped to the image.
        pos_chips (np.ndarray): ``(M, 4)`` positive chips, orig px.
        image_size (tuple[float, float]): ``(height, width)``.
        scale_factor (float): Resize factor of the scale.
        valid_range (tuple[float, float]): Normalized ``(lo, hi)``.
        chip_size (int): Chip side, scaled px.
        stride (int): Grid step, scaled px.
        min_proposals (int): A chip needs more proposals than this.
        rng (np.random.Generator | None): Greedy tie breaker.

    Returns:
        np.ndarray: ``(K, 4)`` float64 chips, orig px, selection order.
    """
    mask = _driving_mask(boxes, pos_chips, scale_factor, valid_range,
                         chip_size, stride, image_size)
    if mask.sum() <= min_proposals:  # no chip can hold enough of them
        return np.zeros((0, 4), dtype=np.float64)
    driving = boxes[mask]
    chips = generate_scale_chips(driving, image_size, scale_factor,
                                 valid_range, chip_size, stride, rng).chips
    assigned = assign_boxes_to_chips(driving, chips)
    counts = np.bincount(assigned[assigned >= 0], minlength=len(chips))
    return chips[counts > min_proposals].reshape(-1, 4)


def generate_negative_scale_chips(proposals,
                                  pos_chips,
                                  image_size,
                                  scale,
                                  valid_range,
                                  chip_size=512,
                                  stride=32,
                                  min_proposals=10,
                                  rng=None) -> np.ndarray:
    """Negative chips of one scale.

    The driving proposals (:func:`negative_proposal_mask`) are covered
    greedily on the positive-chip candidate grid; each is assigned to the
    chosen chip with the largest intersection over its area, and the chips
    assigned more than ``min_proposals`` proposals are kept.

    Args:
        proposals (np.ndarray): ``(P, 4)`` xyxy or ``(P, 5)`` with scores,
            orig px; clipped to the image before use.
        pos_chips (np.ndarray): ``(M, 4)`` positive chips of this scale,
            orig px.
        image_size (Sequence[float]): ``(height, width)``.
        scale (float | Sequence[float]): Scale spec or factor.
        valid_range (Sequence[float]): ``(lo, hi)`` sqrt-area bounds.
        chip_size (int): Chip side, scaled px. Defaults to 512.
        stride (int): Grid step, scaled px. Defaults to 32.
        min_proposals (int): A chip is kept when it holds more proposals
            than this. Defaults to 10.
        rng (np.random.Generator, optional): Breaks greedy ties at random;
            without it the result is deterministic.

    Returns:
        np.ndarray: ``(K, 4)`` float64 chips, orig px, in greedy selection
        order; ``(0, 4)`` when none.
    """
    boxes = check_proposals(proposals)
    chips = _check_scale_pos_chips(pos_chips)
    image_size = check_image_size(image_size)
    scale_factor = compute_scale_factor(scale, image_size)
    valid_range = normalize_valid_range(valid_range)
    chip_size, stride = check_chip_params(chip_size, stride)
    min_proposals = _check_min_proposals(min_proposals)
    check_rng(rng)
    return _negative_chips_of_scale(
        clip_bboxes(boxes, image_size), chips, image_size, scale_factor,
        valid_range, chip_size, stride, min_proposals, rng)


def generate_negative_chips(proposals,
                            pos_chips,
                            image_size,
                            scales,
                            valid_ranges,
                            chip_size=512,
                            stride=32,
                            min_proposals=REFERENCE_MIN_PROPOSALS,
                            rng=None,
                            lower_bound_scales='all') -> list:
    """Negative chips of every scale.

    Args:
        proposals (np.ndarray): ``(P, 4)`` xyxy or ``(P, 5)`` with scores
            (ignored), orig px; clipped to the image before use.
        pos_chips (Sequence[np.ndarray]): One ``(M, 4)`` array of positive
            chips (orig px) per scale, as returned by
            :func:`~mmsniper.chips.positive.generate_positive_chips`
            (:class:`~mmsniper.chips.positive.ScaleChips` also accepted).
        image_size (Sequence[float]): ``(height, width)``.
        scales (Sequence[float | Sequence[float]]): Scale specs, finest
            first.
        valid_ranges (Sequence[Sequence[float]]): One ``(lo, hi)`` per
            scale.
        chip_size (int): Chip side, scaled px. Defaults to 512.
        stride (int): Grid step, scaled px. Defaults to 32.
        min_proposals (int | Sequence[int]): Per scale, a chip is kept when
            it holds more proposals than this. An int applies to every
            scale; a sequence is per scale, finest first, its last value
            repeated for the remaining scales (extra values ignored).
            Defaults to ``(25, 10)``: 25 at the finest scale, 10 elsewhere.
        rng (np.random.Generator, optional): Breaks greedy ties at random.
        lower_bound_scales (str): ``'all'``: proposals below a scale's
            range never drive its negative chips (spec, paper).
            ``'coarsest'``: only the coarsest scale applies the lower bound
            (the authors' code). Defaults to ``'all'``.

    Returns:
        list[np.ndarray]: Per scale, ``(K, 4)`` float64 chips in orig px,
        greedy selection order; ``(0, 4)`` for a scale without any.
    """
    boxes = check_proposals(proposals)
    image_size = check_image_size(image_size)
    scale_factors = compute_scale_factors(scales, image_size).tolist()
    num_scales = len(scale_factors)
    valid_ranges = validity_ranges(
        normalize_valid_ranges(valid_ranges, num_scales),
        lower_bound_scales).tolist()
    if isinstance(pos_chips, np.ndarray) and pos_chips.ndim != 3:
        raise ValueError('pos_chips must be a list with one (M, 4) array per '
                         f'scale, got an array of shape {pos_chips.shape}')
    try:
        num_pos = len(pos_chips)
    except TypeError:
        raise ValueError('pos_chips must be a list with one (M, 4) array per '
                         f'scale, got {type(pos_chips).__name__}') from None
    if num_pos != num_scales:
        raise ValueError(f'got {num_pos} pos_chips entries for {num_scales} '
                         'scales: give one (M, 4) array per scale')
    pos_chips = [
        _check_scale_pos_chips(chips, f'pos_chips[{index}]')
        for index, chips in enumerate(pos_chips)
    ]
    chip_size, stride = check_chip_params(chip_size, stride)
    thresholds = per_scale_min_proposals(min_proposals, num_scales)
    check_rng(rng)
    boxes = clip_bboxes(boxes, image_size)
    return [
        _negative_chips_of_scale(boxes, chips, image_size, factor,
                                 tuple(valid_range), chip_size, stride,
                                 threshold, rng)
        for chips, factor, valid_range, threshold in zip(
            pos_chips, scale_factors, valid_ranges, thresholds)
    ]
