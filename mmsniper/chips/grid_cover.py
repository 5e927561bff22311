# Copyright (c) mmsniper contributors. All rights reserved.
"""Greedy set cover on a candidate chip grid, without a ``K x N`` matrix.

The grid holds the chips ``[x_origins[c], x_ends[c]] x [y_origins[r],
y_ends[r]]`` (see :func:`~mmsniper.chips.geometry.axis_origins_and_ends`).
The chips that contain a box form a rectangle of grid cells,
``[row_first, row_last] x [col_first, col_last]``, found by binary search.
Three strategies give the picks of :func:`~mmsniper.chips.cover.greedy_cover`
on the grid in raster order, ties included:

* few boxes, no ``rng``: pure Python over the *corner* chips (below);
* up to :data:`CORNER_COVER_MAX_BOXES` boxes, no ``rng``: the same search
  vectorised, each corner chip's boxes as the bits of a uint64;
* otherwise: a count map of the occupied part of the grid (a 2-D
  difference array), which also draws random ties uniformly.

Corner chips: the lowest-raster chip among those holding the most boxes
is always ``(row_first[i], col_first[j])`` for some boxes ``i, j``. The
chip whose row and column are the largest firsts of the boxes that a best
chip holds holds them too and comes no later in raster order.
"""
import bisect

import numpy as np

from .cover import pick_max

__all__ = [
    'grid_greedy_cover', 'SMALL_COVER_MAX_BOXES', 'CORNER_COVER_MAX_BOXES'
]

#: Up to this many boxes the deterministic cover runs in pure Python.
SMALL_COVER_MAX_BOXES = 8
#: Up to this many boxes (at most 64) the deterministic cover searches the
#: corner chips with numpy; above it, the count map.
CORNER_COVER_MAX_BOXES = 32


def grid_greedy_cover(boxes,
                      x_origins,
                      x_ends,
                      y_origins,
                      y_ends,
                      rng=None) -> tuple:
    """Greedy set cover of boxes by the chips of a grid.

    Chip ``(r, c)`` has raster index ``r * len(x_origins) + c``. Same picks
    as :func:`~mmsniper.chips.cover.greedy_cover` on the chips in raster
    order, ties included (with the same ``rng`` state, also the same random
    tie breaks).

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
    if rng is None and len(boxes) <= SMALL_COVER_MAX_BOXES:
        return _small_corner_cover(boxes.tolist(), x_origins.tolist(),
                                   x_ends.tolist(), y_origins.tolist(),
                                   y_ends.tolist())
    covered_by = np.full(len(boxes), -1, dtype=np.int64)
    col_first, col_last = _containing_index_range(boxes[:, 0], boxes[:, 2],
                                                  x_origins, x_ends)
    row_first, row_last = _containing_index_range(boxes[:, 1], boxes[:, 3],
                                                  y_origins, y_ends)
    coverable = (col_first <= col_last) & (row_first <= row_last)
    if not coverable.all():
        coverable = coverable.nonzero()[0]
        col_first, col_last = col_first[coverable], col_last[coverable]
        row_first, row_last = row_first[coverable], row_last[coverable]
    if len(col_first) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, covered_by
    if rng is None and len(col_first) <= CORNER_COVER_MAX_BOXES:
        rows, cols, covered_by[coverable] = _corner_cover(
            row_first, row_last, col_first, col_last)
    else:
        rows, cols, covered_by[coverable] = _count_map_cover(
            row_first, row_last, col_first, col_last, rng)
    return rows, cols, covered_by


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
    first = ends.searchsorted(stops, side='left')
    last = origins.searchsorted(starts, side='right') - 1
    return first, last


def _count_bits_fallback(value) -> int:
    """Set bits of a non-negative int (``int.bit_count`` is Python 3.10+)."""
    return bin(value).count('1')


_count_bits = getattr(int, 'bit_count', _count_bits_fallback)


def _bits(value) -> list:
    """Positions of the set bits of a non-negative int."""
    positions = []
    while value:
        lowest_bit = value & -value
        positions.append(lowest_bit.bit_length() - 1)
        value ^= lowest_bit
    return positions


def _small_corner_cover(boxes, x_origins, x_ends, y_origins, y_ends):
    """Deterministic greedy cover over the corner chips, in pure Python.

    Args:
        boxes (list[list[float]]): ``N`` xyxy boxes, grid coordinates.
        x_origins (list[float]): Sorted chip origins along x.
        x_ends (list[float]): Sorted chip ends along x.
        y_origins (list[float]): Sorted chip origins along y.
        y_ends (list[float]): Sorted chip ends along y.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: As
        :func:`grid_greedy_cover`.
    """
    # (box bit, row_first, row_last, col_first, col_last) per coverable box
    cells = []
    for box_id, (x1, y1, x2, y2) in enumerate(boxes):
        row_first = bisect.bisect_left(y_ends, y2)
        row_last = bisect.bisect_right(y_origins, y1) - 1
        col_first = bisect.bisect_left(x_ends, x2)
        col_last = bisect.bisect_right(x_origins, x1) - 1
        if row_first <= row_last and col_first <= col_last:
            cells.append(
                (1 << box_id, row_first, row_last, col_first, col_last))
    # (row, col, bits of the boxes inside) per corner chip, raster order
    corner_chips = []
    for row in sorted({cell[1] for cell in cells}):
        for col in sorted({cell[3] for cell in cells}):
            box_set = 0
            for bit, row_first, row_last, col_first, col_last in cells:
                if (row_first <= row <= row_last
                        and col_first <= col <= col_last):
                    box_set |= bit
            if box_set:
                corner_chips.append((row, col, box_set))
    uncovered = sum(cell[0] for cell in cells)
    covered_by = [-1] * len(boxes)
    rows, cols = [], []
    while uncovered:
        # max() keeps the first of equal keys: the lowest raster index.
        row, col, box_set = max(
            corner_chips, key=lambda chip: _count_bits(chip[2] & uncovered))
        for box_id in _bits(box_set & uncovered):
            covered_by[box_id] = len(rows)
        uncovered &= ~box_set
        rows.append(row)
        cols.append(col)
    return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
            np.array(covered_by, dtype=np.int64))


def _popcount_fallback(values) -> np.ndarray:
    """Set bits per uint64 (numpy < 2 has no ``np.bitwise_count``)."""
    as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8)
    return np.unpackbits(as_bytes).reshape(len(values), 64).sum(axis=1)


_popcount = getattr(np, 'bitwise_count', _popcount_fallback)
#: ``_BOX_BITS[k] == 1 << k``: box ``k``'s bit in a chip's box set.
_BOX_BITS = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))


def _corner_cover(row_first, row_last, col_first, col_last):
    """Deterministic greedy cover over the corner chips, vectorised.

    Args:
        row_first (np.ndarray): ``(N,)`` first containing grid row per box.
        row_last (np.ndarray): ``(N,)`` last containing grid row per box.
        col_first (np.ndarray): ``(N,)`` first containing column per box.
        col_last (np.ndarray): ``(N,)`` last containing column per box.

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: Picked rows, picked
        columns, and per box the pick that covered it.
    """
    num_boxes = len(row_first)
    rows = np.sort(row_first)
    cols = np.sort(col_first)
    in_rows = (row_first[:, None] <= rows) & (rows <= row_last[:, None])
    in_cols = (col_first[:, None] <= cols) & (cols <= col_last[:, None])
    # box_sets[i * N + j]: bits of the boxes inside chip (rows[i], cols[j]).
    box_sets = _BOX_BITS[:num_boxes] @ (in_rows[:, :, None]
                                        & in_cols[:, None, :]).reshape(
                                            num_boxes, -1)
    uncovered = (1 << num_boxes) - 1
    covered_by = [-1] * num_boxes
    picks = []
    while uncovered:
        pick = int(_popcount(box_sets & uncovered).argmax())
        newly_covered = int(box_sets[pick]) & uncovered
        for box_id in _bits(newly_covered):
            covered_by[box_id] = len(picks)
        uncovered ^= newly_covered
        picks.append(pick)
    row_ids, col_ids = np.divmod(picks, num_boxes)
    return rows[row_ids], cols[col_ids], np.array(covered_by, np.int64)


def _rectangle_counts(row_first, row_last, col_first, col_last,
                      shape) -> np.ndarray:
    """Number of rectangles covering each cell of a grid.

    Args:
        row_first (np.ndarray): ``(N,)`` first row of each rectangle.
        row_last (np.ndarray): ``(N,)`` last row (inclusive).
        col_first (np.ndarray): ``(N,)`` first column.
        col_last (np.ndarray): ``(N,)`` last column (inclusive).
        shape (tuple[int, int]): ``(rows, cols)`` of the grid.

    Returns:
        np.ndarray: ``shape`` float64 counts (exact integers).
    """
    num_rows, num_cols = shape
    # 2-D difference array: +1 at each top-left corner, -1 past the right
    # and bottom edges, +1 past the bottom-right corner; then prefix sums.
    corner_rows = np.concatenate(
        [row_first, row_first, row_last + 1, row_last + 1])
    corner_cols = np.concatenate(
        [col_first, col_last + 1, col_first, col_last + 1])
    signs = np.repeat([1.0, -1.0, -1.0, 1.0], len(row_first))
    diff = np.bincount(corner_rows * (num_cols + 1) + corner_cols, signs,
                       (num_rows + 1) * (num_cols + 1))
    diff = diff.reshape(num_rows + 1, num_cols + 1)
    return diff.cumsum(axis=0).cumsum(axis=1)[:num_rows, :num_cols]


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
    row_offset, col_offset = row_first.min(), col_first.min()
    row_first, row_last = row_first - row_offset, row_last - row_offset
    col_first, col_last = col_first - col_offset, col_last - col_offset
    num_cols = int(col_last.max()) + 1
    # counts[r, c]: number of uncovered boxes inside chip (r, c).
    counts = _rectangle_counts(row_first, row_last, col_first, col_last,
                               (int(row_last.max()) + 1, num_cols))
    uncovered = np.ones(len(row_first), dtype=bool)
    covered_by = np.full(len(row_first), -1, dtype=np.int64)
    pick_rows, pick_cols = [], []
    while True:
        row, col = divmod(pick_max(counts, rng), num_cols)
        newly_covered = (uncovered & (row_first <= row) & (row <= row_last)
                         & (col_first <= col) & (col <= col_last)).nonzero()[0]
        covered_by[newly_covered] = len(pick_rows)
        pick_rows.append(row)
        pick_cols.append(col)
        uncovered[newly_covered] = False
        if not uncovered.any():
            break
        for box in newly_covered.tolist():
            counts[row_first[box]:row_last[box] + 1,
                   col_first[box]:col_last[box] + 1] -= 1
    return (np.array(pick_rows, dtype=np.int64) + row_offset,
            np.array(pick_cols, dtype=np.int64) + col_offset, covered_by)
