"""Pure-torch helpers for SNIPER valid ranges (sqrt-area ranges)."""
from typing import Optional, Sequence

import torch
from torch import Tensor


def _bound(value) -> Optional[float]:
    """Convert one side of a valid range; ``None`` or negative means open."""
    if value is None:
        return None
    value = float(value)
    return value if value >= 0 else None


def in_valid_range(bboxes: Tensor, valid_range: Optional[Sequence]) -> Tensor:
    """Flag the boxes whose sqrt-area lies inside a valid range.

    The range is half-open, ``lo <= sqrt(w * h) < hi``, compared in area
    space as the reference does for proposals. A side that is ``None`` or
    negative (-1) is unbounded; ``valid_range=None`` keeps every box.

    Args:
        bboxes (Tensor): Boxes of shape (n, 4) in <x1, y1, x2, y2> format.
        valid_range (Sequence, optional): ``(lo, hi)`` in the boxes' pixels.

    Returns:
        Tensor: Bool mask of shape (n, ) on the boxes' device.
    """
    keep = bboxes.new_ones((bboxes.shape[0], ), dtype=torch.bool)
    if valid_range is None:
        return keep
    lo, hi = (_bound(v) for v in valid_range)
    wh = (bboxes[:, 2:4] - bboxes[:, 0:2]).clamp(min=0)
    areas = wh[:, 0] * wh[:, 1]
    if lo is not None:
        keep &= areas >= lo * lo
    if hi is not None:
        keep &= areas < hi * hi
    return keep
