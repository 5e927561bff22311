# Copyright (c) mmsniper contributors. All rights reserved.
"""Greedy set cover of boxes by chips, and box-to-chip assignment.

:func:`greedy_cover` works on any set of chips. :func:`grid_greedy_cover`
gives the same result on a candidate grid (see
:func:`~mmsniper.chips.geometry.candidate_chips`) without the ``K x N``
containment matrix: the chips that contain a box form a rectangle of grid
cells, so the per-chip counts are a sum of rectangle indicators, kept as a
``(rows, cols)`` count map restricted to the occupied part of the grid.
"""
import numpy as np

from .geometry import check_bboxes, containment_matrix

__all__ = [
    'greedy_cover', 'grid_greedy_cover', 'assign_boxes_to_chips',
    'check_rng', 'CORNER_COVER_MAX_BOXES'
]


def _pick_max(counts, rng=None) -> int:
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
    ties = np.flatnonzero(counts == counts.max())
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
        pick = _pick_max(counts, rng)
        if counts[pick] == 0:
            break
        newly_covered = contains[pick] & uncovered
        uncovered[newly_covered] = False
        counts -= contains[:, newly_covered].sum(axis=1)
        picks.append(pick)
    return np.array(picks, dtype=np.int64)


def _containing_index_range(starts, stops, origins, ends) -> tuple:
    """Per box, the index range of the grid chips that contain it (1-D).

    Args:
        starts (np.ndarray): ``(N,)`` box starts along the axis.
        stops (np.ndarray): ``(N,)`` box stops along the axis.
        origins (np.ndarray): Sorted chip origins along the axis.
        ends (np.ndarray): Sorted chip ends along the axis.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(first, last)`` int64 indices,
        inclusive; empty when ``first > last``.
    """
    first = np.searchsorted(ends, stops, side='left')
    last = np.searchsorted(origins, starts, side='right') - 1
    return first, last


#: Up to this many boxes (at most 64), the deterministic grid cover searches
#: the corner chips of the boxes instead of a count map of the grid.
CORNER_COVER_MAX_BOXES = 24


def grid_greedy_cover(boxes, x_origins, x_ends, y_origins, y_ends,
                      rng=None) -> tuple:
    """Greedy set cover of boxes by the chips of a grid.

    The grid holds the chips ``[x_origins[c], x_ends[c]] x
    [y_origins[r], y_ends[r]]``; chip ``(r, c)`` has raster index
    ``r * len(x_origins) + c``. Same picks as :func:`greedy_cover` on
    those chips in raster order, ties included (with the same ``rng``
    state, also the same random tie breaks).

    Args:
        boxes (np.ndarray): ``(N, 4)`` float64 boxes, xyxy, grid coordinates.
        x_origins (np.ndarray): Sorted chip origins along x.
        x_ends (np.ndarray): Sorted chip ends along x.
        y_origins (np.ndarray): Sorted chip origins along y.
        y_ends (np.ndarray): Sorted chip ends along y.
        rng (np.random.Generator, optional): Breaks ties at random.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: ``(rows, cols,
        covered_by)``: int64 grid rows and columns of the picked chips in
        selection order, and for each box the position in that order of
        the pick that covered it (-1 when no chip contains the box).
    """
    covered_by = np.full(len(boxes), -1, dtype=np.int64)
    col_first, col_last = _containing_index_range(boxes[:, 0], boxes[:, 2],
                                                  x_origins, x_ends)
    row_first, row_last = _containing_index_range(boxes[:, 1], boxes[:, 3],
                                                  y_origins, y_ends)
    coverable = (col_first <= col_last) & (row_first <= row_last)
    if not coverable.all():
        coverable = np.flatnonzero(coverable)
        col_first, col_last = col_first[coverable], col_last[coverable]
        row_first, row_last = row_first[coverable], row_last[coverable]
    if len(col_first) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, covered_by
    if rng is None and len(col_first) <= CORNER_COVER_MAX_BOXES:
        cover = _corner_cover
    else:
        cover = _count_map_cover
    rows, cols, covered_by[coverable] = cover(row_first, row_last,
                                              col_first, col_last, rng)
    return rows, cols, covered_by


def _popcount_fallback(values) -> np.ndarray:
    """Set bits per uint64 (numpy < 2 has no ``np.bitwise_count``)."""
    as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8)
    return np.unpackbits(as_bytes).reshape(len(values), 64).sum(axis=1)


_popcount = getattr(np, 'bitwise_count', _popcount_fallback)
#: ``_BOX_BITS[k] == 1 << k``: box ``k``'s bit in a chip's box set.
_BOX_BITS = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))


def _corner_cover(row_first, row_last, col_first, col_last, rng=None):
    """Deterministic greedy cover over the corner chips of the boxes.

    Each box ``k`` is contained in the grid chips ``[row_first[k],
    row_last[k]] x [col_first[k], col_last[k]]``. The lowest-raster chip
    among those holding the most boxes is always some ``(row_first[i],
    col_first[j])``: the chip whose row and column are the largest firsts
    of the boxes it holds holds them too and comes no later. So only those
    ``N x N`` corner chips are searched, in raster order, each with its set
    of boxes as the bits of a uint64.

    Args:
        row_first (np.ndarray): ``(N,)`` first containing grid row per box.
        row_last (np.ndarray): ``(N,)`` last containing grid row per box.
        col_first (np.ndarray): ``(N,)`` first containing column per box.
        col_last (np.ndarray): ``(N,)`` last containing column per box.
        rng (None): Unused; ties go to the lowest raster index.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: Picked rows, picked
        columns, and per box the pick that covered it.
    """
    num_boxes = len(row_first)
    if num_boxes == 1:
        return row_first, col_first, np.zeros(1, dtype=np.int64)
    rows = np.sort(row_first)
    cols = np.sort(col_first)
    in_rows = (row_first[:, None] <= rows) & (rows <= row_last[:, None])
    in_cols = (col_first[:, None] <= cols) & (cols <= col_last[:, None])
    # box_sets[i * N + j]: bits of the boxes inside chip (rows[i], cols[j]).
    box_sets = _BOX_BITS[:num_boxes] @ (in_rows[:, :, None]
                                        & in_cols[:, None, :]).reshape(
                                            num_boxes, -1)
    uncovered = (1 << num_boxes) - 1
    covered_by = [0] * num_boxes
    picks = []
    while uncovered:
        pick = int(_popcount(box_sets & uncovered).argmax())
        newly_covered = int(box_sets[pick]) & uncovered
        uncovered ^= newly_covered
        while newly_covered:
            lowest_bit = newly_covered & -newly_covered
            covered_by[lowest_bit.bit_length() - 1] = len(picks)
            newly_covered ^= lowest_bit
        picks.append(pick)
    row_ids, col_ids = np.divmod(picks, num_boxes)
    return rows[row_ids], cols[col_ids], np.array(covered_by, np.int64)


def _count_map_cover(row_first, row_last, col_first, col_last, rng=None):
    """Greedy cover with a count map over the occupied part of the grid.

    Args:
        row_first (np.ndarray): ``(N,)`` first containing grid row per box.
        row_last (np.ndarray): ``(N,)`` last containing grid row per box.
        col_first (np.ndarray): ``(N,)`` first containing column per box.
        col_last (np.ndarray): ``(N,)`` last containing column per box.
        rng (np.random.Generator, optional): Breaks ties at random; without
            it the lowest raster index wins.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: Picked rows, picked
        columns, and per box the pick that covered it.
    """
    # Only the bounding region of the boxes' rectangles can hold a count.
    col_offset, row_offset = col_first.min(), row_first.min()
    cols = np.arange(col_offset, col_last.max() + 1)
    rows = np.arange(row_offset, row_last.max() + 1)
    in_cols = (col_first[:, None] <= cols) & (cols <= col_last[:, None])
    in_rows = (row_first[:, None] <= rows) & (rows <= row_last[:, None])
    in_cols_float = in_cols.astype(np.float32)
    in_rows_float = in_rows.astype(np.float32)
    # counts[r, c]: number of uncovered boxes inside chip (r, c); exact
    # integers in float32 (far below 2**24 boxes).
    counts = in_rows_float.T @ in_cols_float
    uncovered = np.ones(len(row_first), dtype=bool)
    covered_by = np.empty(len(row_first), dtype=np.int64)
    pick_rows, pick_cols = [], []
    num_cols = len(cols)
    while True:
        row, col = divmod(_pick_max(counts, rng), num_cols)
        newly_covered = uncovered & in_rows[:, row] & in_cols[:, col]
        covered_by[newly_covered] = len(pick_rows)
        pick_rows.append(row)
        pick_cols.append(col)
        uncovered[newly_covered] = False
        if not uncovered.any():
            break
        counts -= (in_rows_float[newly_covered].T
                   @ in_cols_float[newly_covered])
    return (np.array(pick_rows, dtype=np.int64) + row_offset,
            np.array(pick_cols, dtype=np.int64) + col_offset, covered_by)


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
    box_areas = (np.maximum(boxes[:, 2] - boxes[:, 0], 0.0) *
                 np.maximum(boxes[:, 3] - boxes[:, 1], 0.0))
    safe_areas = np.where(box_areas > 0, box_areas, 1.0)[:, None]
    inter_over_box = np.where(box_areas[:, None] > 0,
                              inter_widths * inter_heights / safe_areas, 0.0)
    # Containment decides exactly, whatever float rounding does to IoB.
    scores = inter_over_box + 2.0 * containment_matrix(chips, boxes).T
    best_chips = scores.argmax(axis=1)
    best_scores = scores[np.arange(len(boxes)), best_chips]
    return np.where(best_scores > 0, best_chips, -1).astype(np.int64)
