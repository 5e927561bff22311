# Copyright (c) mmsniper contributors. All rights reserved.
"""Per-epoch chip sampling, sharded across ranks."""
import math
import time
from typing import Iterator, Optional, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from torch.utils.data import Sampler

from mmdet.registry import DATA_SAMPLERS
from ..chip_table import ChipIndex


_HOW = {'background': 'in the background'}


@DATA_SAMPLERS.register_module()
class SniperChipSampler(Sampler):
    """Yield the chips of each epoch of a :class:`SniperChipDataset`.

    Each epoch it asks the dataset for that epoch's chips (new strides when
    the dataset jitters them), shuffles them with ``seed + epoch``, and gives
    each rank a disjoint slice. Every rank asks at the same point, so the
    dataset shares the chip work across ranks (``shard_chip_work``); as soon
    as an epoch starts the sampler asks the dataset to prepare the next
    epoch's chips in the background (``prefetch_next_epoch``). How long each
    epoch waited for its chips is kept in :attr:`chip_wait_s` and logged
    when the chips change per epoch. It yields :class:`ChipIndex` tuples,
    which carry the chip itself, so dataloader workers (persistent ones
    included) never hold a stale chip list. The order depends only on seed
    and epoch.

    Resuming: mmengine builds the dataloader (and this sampler, with the
    runner's seed) before ``--resume`` restores the checkpoint's seed. When
    the seed given is the one the runner has seeded torch with (the runner
    passes ``seed=runner.seed`` and calls ``torch.manual_seed(runner.seed)``)
    the sampler follows ``torch.initial_seed()`` until its first iteration,
    so it takes up the restored seed and a resumed run draws the same chips
    in the same order as the uninterrupted one, whether or not the config
    sets ``randomness.seed``. A seed set in the sampler config that differs
    from the runner's stays fixed. With ``randomness.diff_rank_seed=True``
    mmengine gives samplers no seed; then set ``seed`` in the sampler config
    to make resumed runs replay the order.

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
        if seed is None:
            self._seed = sync_random_seed()
            self._follow_torch_seed = False
        else:
            self._seed = int(seed)
            self._follow_torch_seed = self._seed == torch.initial_seed()
        self.round_up = round_up
        self.epoch = 0
        #: seconds the first draw of each epoch waited for its chip table
        self.chip_wait_s = {}

    @property
    def seed(self) -> int:
        """The shuffle seed (see the class notes on resuming)."""
        if self._follow_torch_seed:
            current = torch.initial_seed()
            if current != self._seed:
                print_log(
                    f'SniperChipSampler: the runner was re-seeded (resumed '
                    f'run): using its seed {current} instead of {self._seed}',
                    logger='current')
                self._seed = current
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = int(value)
        self._follow_torch_seed = False

    def _table(self, seed: int):
        return self.dataset.chip_table(self.epoch, seed, collective=True)

    def _epoch_rows(self):
        seed = self.seed
        start = time.perf_counter()
        table = self._table(seed)
        if self.epoch not in self.chip_wait_s:
            self.chip_wait_s[self.epoch] = time.perf_counter() - start
            work = getattr(self.dataset, 'chip_work_log', {}).get(
                (self.epoch, seed))
            if work is not None:
                how = _HOW.get(work['how'], work['how'])
                print_log(
                    f'SniperChipSampler: epoch {self.epoch}: {len(table)} '
                    f'chips; waited {self.chip_wait_s[self.epoch]:.2f} s '
                    f'for them (computed {how}, '
                    f'{work["work_s"]:.1f} s of chip work on this rank for '
                    f'{work["images"]} images)', logger='current')
        if hasattr(self.dataset, 'prefetch'):
            self.dataset.prefetch(self.epoch + 1, seed)
        if not len(table):
            raise RuntimeError(
                f'SniperChipSampler: epoch {self.epoch} has no chips (seed '
                f'{seed}); check the chip dataset\'s stride_jitter, scales '
                'and valid_ranges')
        rows = np.arange(len(table))
        if self.shuffle:
            rng = np.random.default_rng(seed + self.epoch)
            rows = rng.permutation(rows)
        if self.round_up and len(rows):
            total = math.ceil(len(rows) / self.world_size) * self.world_size
            rows = np.resize(rows, total)
        return table, rows[self.rank::self.world_size]

    def __iter__(self) -> Iterator[ChipIndex]:
        table, rows = self._epoch_rows()
        # From the first draw on the seed is fixed.
        self._follow_torch_seed = False
        for row in rows:
            yield table.index(row)

    def __len__(self) -> int:
        num = len(self._table(self.seed))
        if self.round_up:
            return math.ceil(num / self.world_size)
        return len(range(self.rank, num, self.world_size))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose chips the next iteration yields."""
        self.epoch = epoch
