# Copyright (c) mmsniper contributors. All rights reserved.
"""Greedy set cover of boxes by chips, and box-to-chip assignment.

:func:`greedy_cover` works on any set of chips with a ``K x N``
containment matrix; :mod:`.grid_cover` gives the same picks on a candidate
grid without it.
"""
import numpy as np

from .geometry import check_bboxes, containment_matrix

__all__ = [
    'greedy_cover', 'assign_boxes_to_chips', 'any_chip_contains', 'check_rng',
    'pick_max', 'DENSE_PAIRS_MAX'
]

#: Up to this many box-chip pairs, the overlap queries compare every pair;
#: above it, only the pairs that a bucket grid of the chips leaves.
DENSE_PAIRS_MAX = 1 << 16


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
    if len(boxes) * len(chips) <= DENSE_PAIRS_MAX:
        # (N, M) scores; argmax takes the lowest chip index of the best.
        scores = _overlap_scores(boxes[:, None], chips[None, :])
        best_chips = scores.argmax(axis=1)
        best_scores = scores[np.arange(len(boxes)), best_chips]
        return np.where(best_scores > 0, best_chips, -1).astype(np.int64)
    box_ids, chip_ids = _overlap_candidates(boxes, chips)
    scores = _overlap_scores(boxes[box_ids], chips[chip_ids])
    # Per box, the best score first, then the lowest chip index.
    order = np.lexsort((chip_ids, -scores, box_ids))
    box_ids, chip_ids, scores = box_ids[order], chip_ids[order], scores[order]
    first = np.ones(len(box_ids), dtype=bool)
    np.not_equal(box_ids[1:], box_ids[:-1], out=first[1:])
    first &= scores > 0
    assigned = np.full(len(boxes), -1, dtype=np.int64)
    assigned[box_ids[first]] = chip_ids[first]
    return assigned


def any_chip_contains(chips, boxes) -> np.ndarray:
    """Which boxes some chip contains entirely.

    ``containment_matrix(chips, boxes).any(axis=0)``, in time and memory
    that follow the pairs of nearby chips and boxes rather than all pairs.

    Args:
        chips (np.ndarray): ``(M, 4)`` chips, xyxy.
        boxes (np.ndarray): ``(N, 4)`` boxes, xyxy, same coordinates.

    Returns:
        np.ndarray: ``(N,)`` bool.
    """
    if len(boxes) * len(chips) <= DENSE_PAIRS_MAX:
        return containment_matrix(chips, boxes).any(axis=0)
    box_ids, chip_ids = _overlap_candidates(boxes, chips)
    pair_chips, pair_boxes = chips[chip_ids], boxes[box_ids]
    inside = ((pair_chips[:, 0] <= pair_boxes[:, 0])
              & (pair_chips[:, 1] <= pair_boxes[:, 1])
              & (pair_boxes[:, 2] <= pair_chips[:, 2])
              & (pair_boxes[:, 3] <= pair_chips[:, 3]))
    contained = np.zeros(len(boxes), dtype=bool)
    contained[box_ids[inside]] = True
    return contained


def _overlap_scores(boxes, chips) -> np.ndarray:
    """Intersection over box area, plus 2 where the chip contains the box.

    Args:
        boxes (np.ndarray): ``(..., 4)`` boxes, xyxy.
        chips (np.ndarray): ``(..., 4)`` chips, broadcast against
            ``boxes``.

    Returns:
        np.ndarray: The broadcast float64 scores; 0 where the chip neither
        contains the box nor meets it with a positive area.
    """
    inter_widths = np.maximum(
        np.minimum(boxes[..., 2], chips[..., 2]) -
        np.maximum(boxes[..., 0], chips[..., 0]), 0.0)
    inter_heights = np.maximum(
        np.minimum(boxes[..., 3], chips[..., 3]) -
        np.maximum(boxes[..., 1], chips[..., 1]), 0.0)
    box_areas = (
        np.maximum(boxes[..., 2] - boxes[..., 0], 0.0) *
        np.maximum(boxes[..., 3] - boxes[..., 1], 0.0))
    safe_areas = np.where(box_areas > 0, box_areas, 1.0)
    inter_over_box = np.where(box_areas > 0,
                              inter_widths * inter_heights / safe_areas, 0.0)
    # Containment decides exactly, whatever float rounding does to IoB.
    contained = ((chips[..., 0] <= boxes[..., 0])
                 & (chips[..., 1] <= boxes[..., 1])
                 & (boxes[..., 2] <= chips[..., 2])
                 & (boxes[..., 3] <= chips[..., 3]))
    return inter_over_box + 2.0 * contained


def _axis_buckets(starts, extent, num_max=4096) -> tuple:
    """Bucket width and origin for chip starts along one axis."""
    origin = starts.min()
    width = max(extent, (starts.max() - origin) / num_max)
    return origin, width if width > 0 else 1.0


def _overlap_candidates(boxes, chips) -> tuple:
    """Box-chip pairs that may overlap, from a bucket grid of the chips.

    A chip that contains a box or meets it with a positive area starts
    (``x1``) at most at the box's larger x and ends (``x2``) at least at
    its smaller x, so its start lies within the widest chip's width before
    the box; the same along y. Chips are bucketed by their start, in
    buckets at least that wide, and each box is paired with the chips of
    the buckets that range can reach (one bucket of slack on each side
    absorbs rounding). Every such pair is returned, and others near it.

    Args:
        boxes (np.ndarray): ``(N, 4)`` boxes, xyxy.
        chips (np.ndarray): ``(M, 4)`` chips, xyxy.

    Returns:
        tuple[np.ndarray, np.ndarray]: int64 ``(box_ids, chip_ids)``,
        grouped by box in ascending order.
    """
    x_origin, x_width = _axis_buckets(
        chips[:, 0], max((chips[:, 2] - chips[:, 0]).max(), 0.0))
    y_origin, y_width = _axis_buckets(
        chips[:, 1], max((chips[:, 3] - chips[:, 1]).max(), 0.0))
    chip_cols = ((chips[:, 0] - x_origin) // x_width).astype(np.int64)
    chip_rows = ((chips[:, 1] - y_origin) // y_width).astype(np.int64)
    num_cols, num_rows = int(chip_cols.max()) + 1, int(chip_rows.max()) + 1
    keys = chip_rows * num_cols + chip_cols
    chip_order = keys.argsort(kind='stable')
    keys = keys[chip_order]

    def bucket_range(low, high, origin, width, count):
        first = np.floor((low - origin) / width) - 1
        last = np.floor((high - origin) / width) + 1
        return (np.clip(first, 0, count).astype(np.int64),
                np.clip(last, -1, count - 1).astype(np.int64))

    col_first, col_last = bucket_range(
        np.minimum(boxes[:, 0], boxes[:, 2]) - x_width,
        np.maximum(boxes[:, 0], boxes[:, 2]), x_origin, x_width, num_cols)
    row_first, row_last = bucket_range(
        np.minimum(boxes[:, 1], boxes[:, 3]) - y_width,
        np.maximum(boxes[:, 1], boxes[:, 3]), y_origin, y_width, num_rows)
    # One run of sorted chips per (box, bucket row).
    num_runs = np.where(col_first <= col_last,
                        np.maximum(row_last - row_first + 1, 0), 0)
    run_boxes = np.repeat(np.arange(len(boxes)), num_runs)
    run_rows = np.arange(num_runs.sum()) - np.repeat(
        num_runs.cumsum() - num_runs, num_runs) + row_first[run_boxes]
    run_starts = keys.searchsorted(
        run_rows * num_cols + col_first[run_boxes], side='left')
    run_sizes = keys.searchsorted(
        run_rows * num_cols + col_last[run_boxes], side='right') - run_starts
    positions = np.arange(run_sizes.sum()) + np.repeat(
        run_starts - (run_sizes.cumsum() - run_sizes), run_sizes)
    return np.repeat(run_boxes, run_sizes), chip_order[positions]
