# Copyright (c) mmsniper contributors. All rights reserved.
"""Per-epoch chip sampling, sharded across ranks."""
import math
from typing import Iterator, Optional, Sized

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmdet.registry import DATA_SAMPLERS
from ..chip_table import ChipIndex


@DATA_SAMPLERS.register_module()
class SniperChipSampler(Sampler):
    """Yield the chips of each epoch of a :class:`SniperChipDataset`.

    Each epoch it asks the dataset for that epoch's chips (new strides when
    the dataset jitters them), shuffles them with ``seed + epoch``, and gives
    each rank a disjoint slice. It yields :class:`ChipIndex` tuples, which
    carry the chip itself, so dataloader workers (persistent ones included)
    never hold a stale chip list. The order depends only on seed and epoch,
    so a resumed run sees the same sequence.

    Args:
        dataset (SniperChipDataset): The chip dataset.
        shuffle (bool): Shuffle the chips. Defaults to True.
        seed (int, optional): Shuffle seed, shared by all ranks. Defaults to
            None (a random seed synchronised across ranks).
        round_up (bool): Repeat a few chips so that every rank gets the same
            number (needed by distributed training). With False each chip is
            seen exactly once per epoch and ranks may differ by one.
            Defaults to True.
    """

    def __init__(self,
                 dataset: Sized,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        if not hasattr(dataset, 'chip_table'):
            raise TypeError(
                'SniperChipSampler needs a SniperChipDataset (a dataset with '
                f'chip_table()), got {type(dataset).__name__}')
        rank, world_size = get_dist_info()
        self.rank = rank
        self.world_size = world_size
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else seed
        self.round_up = round_up
        self.epoch = 0

    def _epoch_rows(self):
        table = self.dataset.chip_table(self.epoch, self.seed)
        rows = np.arange(len(table))
        if self.shuffle:
            rng = np.random.default_rng(self.seed + self.epoch)
            rows = rng.permutation(rows)
        if self.round_up and len(rows):
            total = math.ceil(len(rows) / self.world_size) * self.world_size
            rows = np.resize(rows, total)
        return table, rows[self.rank::self.world_size]

    def __iter__(self) -> Iterator[ChipIndex]:
        table, rows = self._epoch_rows()
        for row in rows:
            yield table.index(row)

    def __len__(self) -> int:
        num = len(self.dataset.chip_table(self.epoch, self.seed))
        if self.round_up:
            return math.ceil(num / self.world_size)
        return len(range(self.rank, num, self.world_size))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose chips the next iteration yields."""
        self.epoch = epoch
