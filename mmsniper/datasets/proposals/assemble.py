# Copyright (c) mmsniper contributors. All rights reserved.
"""Cleaning proposals and assembling the CSR arrays."""
from typing import Callable, List, Optional

import numpy as np

from .common import _CHUNK, _Stats, ProposalFileError


class _Assembler:
    """Appends the proposals of rows (in increasing order) to the CSR output.

    Rows are staged, cast to float32, in a chunk buffer; each full chunk is
    validated, filtered and clipped with vectorised numpy and appended to
    the output, so the per-row Python work is one copy.
    """

    def __init__(self, cap: int, num_images: int, stats: _Stats,
                 on_bad_box: str, min_score: Optional[float],
                 max_per_image: Optional[int], describe: Callable):
        self.out_b = np.empty((cap, 4), dtype=np.float32)
        self.out_s = np.empty(cap, dtype=np.float32)
        self.counts = np.zeros(num_images, dtype=np.int64)
        self.pos = 0
        self.stats = stats
        self.on_bad_box = on_bad_box
        self.min_score = min_score
        self.max_per_image = max_per_image
        self.describe = describe  # (row, k) -> names file, image, record
        size = min(_CHUNK, max(cap, 1))
        self.stage_b = np.empty((size, 4), dtype=np.float32)
        self.stage_s = np.empty(size, dtype=np.float32)
        self._reset()

    def _reset(self):
        self.n = 0
        self.rows: List[int] = []
        self.sizes: List[int] = []
        self.widths: List[float] = []
        self.heights: List[float] = []

    def add(self, row: int, b: np.ndarray, s: np.ndarray, width: float,
            height: float) -> None:
        n = len(b)
        if self.n + n > len(self.stage_s):
            self.flush()
            if n > len(self.stage_s):
                self.stage_b = np.empty((n, 4), dtype=np.float32)
                self.stage_s = np.empty(n, dtype=np.float32)
        # (float64 -> float32 overflow gives inf: counted as such; the
        # caller holds np.errstate(over='ignore'))
        self.stage_b[self.n:self.n + n] = b
        self.stage_s[self.n:self.n + n] = s
        self.n += n
        self.rows.append(row)
        self.sizes.append(n)
        self.widths.append(width)
        self.heights.append(height)

    def _bad(self, kind, k, b, s, width, height, local, starts) -> str:
        r = int(local[k])
        return (f'{self.describe(self.rows[r], k - int(starts[r]))}: box '
                f'{b[k].tolist()} score {float(s[k])!r} is {kind} (image '
                f'{float(width[k]):g}x{float(height[k]):g})')

    def flush(self) -> None:
        n = self.n
        if not n:
            return
        counts = self.stats.counts
        sizes = np.asarray(self.sizes, dtype=np.int64)
        num_rows = len(sizes)
        starts = np.zeros(num_rows, dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        local = np.repeat(np.arange(num_rows, dtype=np.int32), sizes)
        width = np.repeat(np.asarray(self.widths, np.float32), sizes)
        height = np.repeat(np.asarray(self.heights, np.float32), sizes)
        b, s = self.stage_b[:n], self.stage_s[:n]
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        with np.errstate(invalid='ignore'):
            finite = np.isfinite(b).all(axis=1)
            finite &= np.isfinite(s)
            inverted = finite & ((x2 <= x1) | (y2 <= y1))
            keep = finite & ~inverted
            outside = keep & ((x2 <= 0) | (y2 <= 0) | (x1 >= width) |
                              (y1 >= height))
            keep &= ~outside
        n_keep = int(keep.sum())
        if n_keep < n:
            n_nan = n - int(finite.sum())
            n_inv = int(inverted.sum())
            n_out = n - n_keep - n_nan - n_inv
            if self.on_bad_box == 'error':
                k = int(np.argmin(keep))
                kind = ('NaN/inf' if not finite[k] else 'inverted/zero-size'
                        if inverted[k] else 'outside the image')
                raise ProposalFileError(
                    self._bad(kind, k, b, s, width, height, local, starts))
            for kind, mask, cnt in (('NaN/inf', ~finite, n_nan),
                                    ('inverted/zero-size', inverted, n_inv),
                                    ('outside the image', outside, n_out)):
                if cnt:
                    k = int(np.argmax(mask))
                    self.stats.example(
                        f'dropped {kind}',
                        self._bad(kind, k, b, s, width, height, local, starts))
            counts['dropped_nan'] += n_nan
            counts['dropped_inverted'] += n_inv
            counts['dropped_outside'] += n_out
        if self.min_score is not None:
            low = keep & (s < self.min_score)
            n_low = int(low.sum())
            if n_low:
                keep &= ~low
                counts['dropped_low_score'] += n_low
        top = self.max_per_image
        if top is not None:
            per_row = np.bincount(local[keep], minlength=num_rows)
            if (per_row > top).any():
                idx = np.flatnonzero(keep)
                rows_k = local[idx]
                # by row, then score descending; lexsort is stable
                order = np.lexsort((-s[idx], rows_k))
                first = np.zeros(num_rows, dtype=np.int64)
                np.cumsum(per_row[:-1], out=first[1:])
                rank = np.arange(len(idx)) - first[rows_k[order]]
                over = idx[order[rank >= top]]
                keep[over] = False
                counts['dropped_over_max'] += len(over)
        kept_rows = local[keep]
        m = len(kept_rows)
        self.counts[self.rows] = np.bincount(kept_rows, minlength=num_rows)
        dst_b = self.out_b[self.pos:self.pos + m]
        np.compress(keep, b, axis=0, out=dst_b)
        np.compress(keep, s, out=self.out_s[self.pos:self.pos + m])
        width, height = width[keep], height[keep]
        partly = ((dst_b[:, 0] < 0) | (dst_b[:, 1] < 0) | (dst_b[:, 2] > width)
                  | (dst_b[:, 3] > height))
        n_clip = int(partly.sum())
        if n_clip:
            counts['clipped'] += n_clip
            # kept boxes overlap the image: x1 < w, y1 < h, x2 > 0, y2 > 0
            np.maximum(dst_b[:, :2], 0, out=dst_b[:, :2])
            np.minimum(dst_b[:, 2], width, out=dst_b[:, 2])
            np.minimum(dst_b[:, 3], height, out=dst_b[:, 3])
        self.pos += m
        self._reset()


def _image_size(info: dict, i: int):
    w, h = info.get('width', None), info.get('height', None)
    try:
        w, h = float(w), float(h)
    except (TypeError, ValueError):
        w = h = 0.0
    if not (w > 0 and h > 0):
        raise ValueError(
            f'data_infos[{i}] ({info.get("img_path", None)}) has no valid '
            f'width/height ({info.get("width", None)!r}, '
            f'{info.get("height", None)!r}): proposals cannot be clipped')
    return w, h
