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
* otherwise, on a small grid region (up to :data:`DENSE_COVER_MAX_CELLS`
  cells, or many boxes in it): a count map of the occupied part of the
  grid (a 2-D difference array), which also draws random ties uniformly;
* otherwise: counts of uncovered boxes kept only on the grid cells that
  some box's rectangle holds, updated on the cells of the boxes each pick
  covers, with the cells of the largest count in raster order for the
  maximum and its ties (random ties drawn uniformly, as
  :func:`~mmsniper.chips.cover.pick_max` draws them on the whole grid).
  Its cost follows the boxes (the sum of their rectangles' areas), not
  the grid: a 50,000 px image at scale 3 has 22 million candidate chips.

Corner chips: the lowest-raster chip among those holding the most boxes
is always ``(row_first[i], col_first[j])`` for some boxes ``i, j``. The
chip whose row and column are the largest firsts of the boxes that a best
chip holds holds them too and comes no later in raster order.
"""
import bisect
import math

import numpy as np

from .cover import pick_max

__all__ = [
    'grid_greedy_cover', 'SMALL_COVER_MAX_BOXES', 'CORNER_COVER_MAX_BOXES',
    'DENSE_COVER_MAX_CELLS'
]

#: Up to this many boxes the deterministic cover runs in pure Python.
SMALL_COVER_MAX_BOXES = 8
#: Up to this many boxes (at most 64) the deterministic cover searches the
#: corner chips with numpy; above it, the counts.
CORNER_COVER_MAX_BOXES = 32
#: Up to this many grid cells in the boxes' bounding region, the counts are
#: a dense map of that region; above it, sparse counts on the boxes' cells
#: (unless :data:`SPARSE_COVER_MAX_DENSITY` says otherwise).
DENSE_COVER_MAX_CELLS = 1 << 16
#: The sparse counts hold one entry per (box, containing chip) pair: they
#: are used only while there are at most this many pairs per cell of the
#: bounding region (else the dense map is smaller), e.g. not for a small
#: image with many boxes on a fine stride.
SPARSE_COVER_MAX_DENSITY = 1.0


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
        num_cells = ((int(row_last.max()) - int(row_first.min()) + 1) *
                     (int(col_last.max()) - int(col_first.min()) + 1))
        num_pairs = int(((row_last - row_first + 1) *
                         (col_last - col_first + 1)).sum())
        sparse = (num_cells > DENSE_COVER_MAX_CELLS
                  and num_pairs <= SPARSE_COVER_MAX_DENSITY * num_cells)
        cover = _sparse_count_cover if sparse else _count_map_cover
        rows, cols, covered_by[coverable] = cover(row_first, row_last,
                                                  col_first, col_last, rng)
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


def _rectangle_cells(row_first, row_last, col_first, col_last, num_cols):
    """Every grid cell of every rectangle, rectangle by rectangle.

    Args:
        row_first (np.ndarray): ``(N,)`` first row of each rectangle.
        row_last (np.ndarray): ``(N,)`` last row (inclusive).
        col_first (np.ndarray): ``(N,)`` first column.
        col_last (np.ndarray): ``(N,)`` last column (inclusive).
        num_cols (int): Columns of the grid (raster index ``r * num_cols +
            c``).

    Returns:
        tuple[np.ndarray, np.ndarray, np.ndarray]: ``(cells, owners,
        starts)``: int64 raster indices of the cells, rectangle by rectangle
        and in raster order within one, the rectangle of each, and where
        each rectangle's cells start (``N + 1`` entries).
    """
    widths = col_last - col_first + 1
    areas = (row_last - row_first + 1) * widths
    starts = np.zeros(len(areas) + 1, dtype=np.int64)
    np.cumsum(areas, out=starts[1:])
    owners = np.repeat(np.arange(len(areas)), areas)
    rows, cols = np.divmod(
        np.arange(starts[-1], dtype=np.int64) - starts[owners],
        widths[owners])
    rows += row_first[owners]
    cols += col_first[owners]
    return rows * num_cols + cols, owners, starts


class _TieSet:
    """Cells of equal count in raster order, each live until removed.

    Gives the number of live cells and the ``n``-th of them in raster order
    in ``O(sqrt(size))`` numpy work, through a live count per block of
    cells.

    Args:
        cells (np.ndarray): Sorted cell ids.
    """

    def __init__(self, cells):
        self.cells = cells
        self.size = len(cells)
        self.live = np.ones(self.size, dtype=bool)
        # A block scan is cheaper than a prefix sum over blocks: blocks of
        # about 4 sqrt(size) cells balance the two.
        self.block_size = max(256, 4 * math.isqrt(self.size))
        num_blocks = -(-self.size // self.block_size)
        self.block_live = np.full(num_blocks, self.block_size)
        self.block_live[-1] = self.size - self.block_size * (num_blocks - 1)

    def nth(self, nth) -> int:
        """Position in ``cells`` of the ``nth`` live cell (from 0)."""
        block_ends = self.block_live.cumsum()
        block = int(block_ends.searchsorted(nth, side='right'))
        nth -= int(block_ends[block]) - int(self.block_live[block])
        start = block * self.block_size
        in_block = self.live[start:start + self.block_size].nonzero()[0]
        return start + int(in_block[nth])

    def remove(self, positions):
        """Mark live cells dead, by their distinct positions in ``cells``."""
        self.live[positions] = False
        self.size -= len(positions)
        self.block_live -= np.bincount(
            positions // self.block_size, minlength=len(self.block_live))


def _sparse_count_cover(row_first, row_last, col_first, col_last, rng=None):
    """Greedy cover with counts kept only on the cells boxes reach.

    The cost follows the boxes, not the grid: the counts live on the
    distinct cells of the boxes' rectangles (``U`` of them, at most the sum
    of the rectangles' areas) and a pick lowers only the cells of the boxes
    it covers. The cells whose count is the current maximum form a
    :class:`_TieSet`, which gives the number of ties and the ``k``-th tie
    in raster order, as :func:`~mmsniper.chips.cover.pick_max` draws on the
    whole grid. While that maximum holds, cells only leave the set (counts
    never grow); when it empties, the cells of the next largest count are
    gathered, one ``O(U)`` pass per distinct maximum. Once the maximum is
    1, the remaining boxes' rectangles are disjoint and each pick covers
    exactly one box: :func:`_cover_disjoint` finishes.

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
    row_offset, col_offset = row_first.min(), col_first.min()
    num_cols = int(col_last.max() - col_offset) + 1
    incidences, owners, box_starts = _rectangle_cells(
        row_first - row_offset, row_last - row_offset,
        col_first - col_offset, col_last - col_offset, num_cols)
    # Distinct cells in raster order (cell ids); cell_of[e]: the cell of
    # incidence e; the boxes of cell u: cell_boxes[cell_starts[u]:...].
    order = incidences.argsort()
    sorted_cells = incidences[order]
    new_cell = np.empty(len(order), dtype=bool)
    new_cell[0] = True
    np.not_equal(sorted_cells[1:], sorted_cells[:-1], out=new_cell[1:])
    cell_starts = np.append(new_cell.nonzero()[0], len(order))
    raster = sorted_cells[cell_starts[:-1]]
    cell_of = np.empty(len(order), dtype=np.int64)
    cell_of[order] = new_cell.cumsum() - 1
    cell_boxes = owners[order]
    del incidences, owners, sorted_cells, new_cell
    counts = np.diff(cell_starts)
    uncovered = np.ones(len(row_first), dtype=bool)
    covered_by = np.full(len(row_first), -1, dtype=np.int64)
    picks = []
    while True:
        top = counts.max()
        if top <= 1:
            break
        ties = _TieSet((counts == top).nonzero()[0])
        tie_position = np.full(len(counts), -1, dtype=np.int64)
        tie_position[ties.cells] = np.arange(ties.size)
        while ties.size:
            nth = 0 if rng is None else int(rng.integers(ties.size))
            cell = ties.cells[ties.nth(nth)]
            boxes = cell_boxes[cell_starts[cell]:cell_starts[cell + 1]]
            boxes = boxes[uncovered[boxes]]
            covered_by[boxes] = len(picks)
            uncovered[boxes] = False
            picks.append(raster[cell])
            if len(boxes) == 1:
                box = int(boxes[0])
                touched = cell_of[box_starts[box]:box_starts[box + 1]]
                counts[touched] -= 1
                positions = tie_position[touched]
                positions = positions[positions >= 0]
            else:
                sizes = box_starts[boxes + 1] - box_starts[boxes]
                touched = cell_of[np.repeat(
                    box_starts[boxes] - (sizes.cumsum() - sizes), sizes) +
                                  np.arange(sizes.sum())]
                np.subtract.at(counts, touched, 1)
                positions = tie_position[touched]
                positions = np.unique(positions[positions >= 0])
            ties.remove(positions[ties.live[positions]])
    picks = np.array(picks, dtype=np.int64)
    left = uncovered.nonzero()[0]
    if len(left):
        covered, cells = _cover_disjoint(cell_of, box_starts, left,
                                         order[uncovered[cell_boxes]], rng)
        covered_by[covered] = len(picks) + np.arange(len(left))
        picks = np.append(picks, raster[cells])
    rows, cols = np.divmod(picks, num_cols)
    return rows + row_offset, cols + col_offset, covered_by


def _cover_disjoint(cell_of, box_starts, boxes, by_cell, rng=None):
    """The greedy picks once no cell holds two uncovered boxes.

    Every cell of the boxes' rectangles then has count 1 and the rectangles
    are disjoint: each pick covers the one box whose rectangle holds the
    picked cell. Without ``rng`` the boxes go in the raster order of their
    first cell, which is the pick; with it, each pick is the ``k``-th cell
    of the remaining rectangles in raster order, ``k`` drawn as
    :func:`~mmsniper.chips.cover.pick_max` draws it.

    Args:
        cell_of (np.ndarray): Cell id (raster order) of each incidence.
        box_starts (np.ndarray): Where each box's incidences start in
            ``cell_of`` (one more entry than boxes); a box's cells are in
            raster order.
        boxes (np.ndarray): The uncovered boxes, ascending.
        by_cell (np.ndarray): Their incidences, in raster order.
        rng (np.random.Generator, optional): Breaks ties at random.

    Returns:
        tuple[np.ndarray, np.ndarray]: The boxes in the order they are
        covered, and the cell id picked for each.
    """
    if rng is None:
        first_cells = cell_of[box_starts[boxes]]
        order = first_cells.argsort()
        return boxes[order], first_cells[order]
    ties = _TieSet(cell_of[by_cell])
    # Each box's cells: their positions in ties (position[box_starts[box]:
    # box_starts[box + 1]]) and, as runs within one block each, the blocks
    # and lengths run_blocks[run_starts[box]:run_starts[box + 1]].
    position = np.zeros(len(cell_of), dtype=np.int64)
    position[by_cell] = np.arange(len(by_cell))
    blocks = position // ties.block_size
    new_run = np.ones(len(cell_of), dtype=bool)
    np.not_equal(blocks[1:], blocks[:-1], out=new_run[1:])
    new_run[box_starts[:-1]] = True
    run_firsts = new_run.nonzero()[0]
    run_blocks = blocks[run_firsts]
    run_lengths = np.diff(np.append(run_firsts, len(cell_of)))
    run_starts = run_firsts.searchsorted(box_starts).tolist()
    tie_owner = np.searchsorted(box_starts, by_cell, side='right') - 1
    box_starts = box_starts.tolist()
    live, block_live = ties.live, ties.block_live
    order, picked = [], []
    for _ in range(len(boxes)):
        tie = ties.nth(int(rng.integers(ties.size)))
        box = int(tie_owner[tie])
        order.append(box)
        picked.append(tie)
        start, stop = box_starts[box], box_starts[box + 1]
        live[position[start:stop]] = False
        ties.size -= stop - start
        runs = slice(run_starts[box], run_starts[box + 1])
        block_live[run_blocks[runs]] -= run_lengths[runs]
    return (np.array(order, dtype=np.int64),
            ties.cells[np.array(picked, dtype=np.int64)])
