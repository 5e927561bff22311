# Copyright (c) mmsniper contributors. All rights reserved.
"""Greedy set cover of boxes by chips, and box-to-chip assignment.

:func:`greedy_cover` works on any set of chips with a ``K x N``
containment matrix; :mod:`.grid_cover` gives the same picks on a candidate
grid without it.
"""
import numpy as np

from .geometry import check_bboxes, containment_matrix

__all__ = ['greedy_cover', 'assign_boxes_to_chips', 'check_rng', 'pick_max']


def pick_max(counts, rng=None) -> int:
    """Flat index of the largest count.

    Args:
        counts (np.ndarray): Counts, any shape.
        rng (np.random.Generator, optional): Breaks ties at random; without
            it the lowest flat index wins.

    Returns:
        int: The flat index picked.
    """
    if rng is None:
        return int(counts.argmax())
    ties = (counts == counts.max()).ravel().nonzero()[0]
    return int(ties[rng.integers(len(ties))])


def check_rng(rng):
    """Reject anything but ``None`` or a ``np.random.Generator``."""
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValueError('rng must be None or a np.random.Generator, got '
                         f'{type(rng).__name__}')


def greedy_cover(chips, boxes, rng=None) -> np.ndarray:
    """Greedy set cover of boxes by chips.

    Repeatedly picks the chip that contains (entirely) the most boxes not
    covered yet, until no chip contains an uncovered box.

    Args:
        chips (np.ndarray): ``(K, 4)`` chips, xyxy.
        boxes (np.ndarray): ``(N, 4)`` boxes, xyxy, same coordinates.
        rng (np.random.Generator, optional): Breaks ties between equally
            good chips at random (the reference shuffles the chips); without
            it the lowest chip index wins.

    Returns:
        np.ndarray: int64 indices into ``chips``, in selection order.
    """
    chips = check_bboxes(chips, 'chips')
    boxes = check_bboxes(boxes, 'boxes')
    check_rng(rng)
    if len(chips) == 0 or len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    contains = containment_matrix(chips, boxes)
    counts = contains.sum(axis=1)
    uncovered = np.ones(len(boxes), dtype=bool)
    picks = []
    while True:
        pick = pick_max(counts, rng)
        if counts[pick] == 0:
            break
        newly_covered = contains[pick] & uncovered
        uncovered[newly_covered] = False
        counts -= contains[:, newly_covered].sum(axis=1)
        picks.append(pick)
    return np.array(picks, dtype=np.int64)


def assign_boxes_to_chips(boxes, chips) -> np.ndarray:
    """Assign each box to the chip holding the largest part of it.

    The score is intersection over box area. A chip that contains the box
    entirely always wins (its score is 1); ties go to the lowest chip index.

    Args:
        boxes (np.ndarray): ``(N, 4)`` boxes, xyxy.
        chips (np.ndarray): ``(M, 4)`` chips, xyxy, same coordinates.

    Returns:
        np.ndarray: ``(N,)`` int64 chip index per box; -1 when no chip
        intersects the box with a positive area nor contains it, or when
        there is no chip.
    """
    boxes = check_bboxes(boxes, 'boxes')
    chips = check_bboxes(chips, 'chips')
    if len(chips) == 0 or len(boxes) == 0:
        return np.full(len(boxes), -1, dtype=np.int64)
    inter_widths = np.maximum(
        np.minimum(boxes[:, None, 2], chips[None, :, 2]) -
        np.maximum(boxes[:, None, 0], chips[None, :, 0]), 0.0)
    inter_heights = np.maximum(
        np.minimum(boxes[:, None, 3], chips[None, :, 3]) -
        np.maximum(boxes[:, None, 1], chips[None, :, 1]), 0.0)
    box_areas = (
        np.maximum(boxes[:, 2] - boxes[:, 0], 0.0) *
        np.maximum(boxes[:, 3] - boxes[:, 1], 0.0))
    safe_areas = np.where(box_areas > 0, box_areas, 1.0)[:, None]
    inter_over_box = np.where(box_areas[:, None] > 0,
                              inter_widths * inter_heights / safe_areas, 0.0)
    # Containment decides exactly, whatever float rounding does to IoB.
    scores = inter_over_box + 2.0 * containment_matrix(chips, boxes).T
    best_chips = scores.argmax(axis=1)
    best_scores = scores[np.arange(len(boxes)), best_chips]
    return np.where(best_scores > 0, best_chips, -1).astype(np.int64)
