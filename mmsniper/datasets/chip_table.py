# Copyright (c) mmsniper contributors. All rights reserved.
"""Memory-lean storage of the chips of a whole dataset (numpy only)."""
from typing import NamedTuple, Sequence, Tuple

import numpy as np


class ChipIndex(NamedTuple):
    """What a sampler yields for one chip; the dataset turns it into a sample.

    It carries everything a dataloader worker needs, so chips can change per
    epoch (stride jitter, negative draws) even with persistent workers.
    """
    img_idx: int
    scale_idx: int
    box: Tuple[float, float, float, float]
    is_negative: bool
    valid_gt: Tuple[int, ...]


class ChipTable:
    """The chips of every image, as flat arrays.

    Args:
        img_idx (np.ndarray): (M,) index of each chip's image in the wrapped
            dataset.
        scale_idx (np.ndarray): (M,) index of each chip's training scale.
        boxes (np.ndarray): (M, 4) chip regions, xyxy in original image px.
        is_negative (np.ndarray): (M,) whether the chip is a negative chip.
        gt_ptr (np.ndarray): (M + 1,) CSR offsets into ``gt_index``.
        gt_index (np.ndarray): indices of the instances valid in each chip.
    """

    def __init__(self, img_idx, scale_idx, boxes, is_negative, gt_ptr,
                 gt_index):
        self.img_idx = np.asarray(img_idx, dtype=np.int32)
        self.scale_idx = np.asarray(scale_idx, dtype=np.int8)
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.is_negative = np.asarray(is_negative, dtype=bool)
        self.gt_ptr = np.asarray(gt_ptr, dtype=np.int64)
        self.gt_index = np.asarray(gt_index, dtype=np.int32)
        num = len(self.img_idx)
        if not (len(self.scale_idx) == len(self.boxes) ==
                len(self.is_negative) == num and len(self.gt_ptr) == num + 1):
            raise ValueError('ChipTable arrays have inconsistent lengths')

    def __len__(self) -> int:
        return len(self.img_idx)

    def valid_gt(self, row: int) -> np.ndarray:
        """Indices of the instances valid in chip ``row``."""
        return self.gt_index[self.gt_ptr[row]:self.gt_ptr[row + 1]]

    def index(self, row: int) -> ChipIndex:
        """The :class:`ChipIndex` of chip ``row``."""
        row = int(row)
        return ChipIndex(
            img_idx=int(self.img_idx[row]),
            scale_idx=int(self.scale_idx[row]),
            box=tuple(float(v) for v in self.boxes[row]),
            is_negative=bool(self.is_negative[row]),
            valid_gt=tuple(int(v) for v in self.valid_gt(row)))

    def take(self, rows: np.ndarray) -> 'ChipTable':
        """A new table holding ``rows`` of this one, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.gt_ptr[rows]
        counts = self.gt_ptr[rows + 1] - starts
        gt_ptr = np.concatenate([[0], np.cumsum(counts)])
        within = np.arange(gt_ptr[-1]) - np.repeat(gt_ptr[:-1], counts)
        gt_index = self.gt_index[np.repeat(starts, counts) + within]
        return ChipTable(self.img_idx[rows], self.scale_idx[rows],
                         self.boxes[rows], self.is_negative[rows], gt_ptr,
                         gt_index)

    @classmethod
    def concatenate(cls, parts: Sequence['ChipTable']) -> 'ChipTable':
        """Join tables, keeping the CSR offsets right."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        offsets = np.cumsum([0] + [len(p.gt_index) for p in parts[:-1]])
        gt_ptr = np.concatenate([[0]] + [
            p.gt_ptr[1:] + off for p, off in zip(parts, offsets)
        ])
        return cls(
            np.concatenate([p.img_idx for p in parts]),
            np.concatenate([p.scale_idx for p in parts]),
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.is_negative for p in parts]), gt_ptr,
            np.concatenate([p.gt_index for p in parts]))

    @classmethod
    def empty(cls) -> 'ChipTable':
        return cls(
            np.zeros(0), np.zeros(0), np.zeros((0, 4)), np.zeros(0, bool),
            np.zeros(1), np.zeros(0))

    @classmethod
    def from_membership(cls, img_idx: int, scale_idx: int, chips: np.ndarray,
                        member: np.ndarray, gt_ids: np.ndarray,
                        is_negative: bool) -> 'ChipTable':
        """Build the table of one image at one scale from a membership
        matrix (a GT may be valid in several chips).

        Args:
            img_idx (int): Image index in the wrapped dataset.
            scale_idx (int): Scale index.
            chips (np.ndarray): (M, 4) chips in original px.
            member (np.ndarray): (M, N) bool, GT n is valid in chip m.
            gt_ids (np.ndarray): (N,) instance index of each GT.
            is_negative (bool): Whether these are negative chips.

        Returns:
            ChipTable: M rows.
        """
        num = len(chips)
        member = np.asarray(member, dtype=bool).reshape(num, len(gt_ids))
        chip_of, gt_of = np.nonzero(member)
        counts = np.bincount(chip_of, minlength=num)
        gt_ptr = np.concatenate([[0], np.cumsum(counts)])
        return cls(
            np.full(num, img_idx), np.full(num, scale_idx), chips,
            np.full(num, is_negative), gt_ptr, np.asarray(gt_ids)[gt_of])

    @classmethod
    def from_image_chips(cls, img_idx: int, scale_idx: int,
                         chips: np.ndarray, chip_of_gt: np.ndarray,
                         gt_ids: np.ndarray,
                         is_negative: bool = False) -> 'ChipTable':
        """Build the table of one image at one scale.

        Args:
            img_idx (int): Image index in the wrapped dataset.
            scale_idx (int): Scale index.
            chips (np.ndarray): (M, 4) chips in original px.
            chip_of_gt (np.ndarray): (N,) chip each GT is valid in, -1 for
                none.
            gt_ids (np.ndarray): (N,) instance index of each GT.
            is_negative (bool): Whether these are negative chips.

        Returns:
            ChipTable: M rows.
        """
        member = np.arange(len(chips))[:, None] == chip_of_gt[None, :]
        return cls.from_membership(img_idx, scale_idx, chips, member, gt_ids,
                                   is_negative)
