# Copyright (c) mmsniper contributors. All rights reserved.
"""Where a chip dataset's per-epoch work runs: process pools, rank shards
and a background thread that prepares the next epoch.

:class:`SniperChipDataset` generates every image's positive chips and mines
its negative chips once, or every epoch with ``stride_jitter``. This module
holds the machinery around that work, apart from what it computes:

- :func:`shard_bounds` splits the images into one contiguous block per rank,
  balanced by an estimate of the work (boxes and proposals per image); each
  rank computes its block and the blocks are gathered in rank order, so the
  gathered table is row for row the single-process table;
- :func:`run_chunks` runs a picklable chunk function over job chunks, in a
  process pool when asked (``fork`` from the main thread, as before;
  ``forkserver`` from any other thread, so that a training process whose
  main thread holds locks is never forked);
- :class:`BackgroundChipWork` runs one job at a time in a daemon thread, so
  the next epoch's chips are computed while the current epoch trains.

Collective calls (the gather) are made by the dataset only in the main
thread of the training process, never here and never in a dataloader
worker.
"""
import multiprocessing
import queue
import threading
from concurrent.futures import Future
from typing import Callable, List, Optional, Sequence

import numpy as np

from mmsniper.utils.progress import DelayedProgressBar
from .chip_table import ChipTable

#: modules the forkserver imports once, so that each pool worker forked
#: from it starts without importing mmdet again
_FORKSERVER_PRELOAD = ['mmsniper.datasets.chip_jobs']


def shard_bounds(costs: Sequence[float], num_shards: int) -> np.ndarray:
    """Contiguous blocks of items with about equal total cost.

    Args:
        costs (Sequence[float]): (N,) non-negative work estimate per item.
        num_shards (int): Number of blocks (ranks).

    Returns:
        np.ndarray: (num_shards + 1,) int64 bounds: block ``r`` is
        ``[bounds[r], bounds[r + 1])``; ``bounds[0] == 0`` and
        ``bounds[-1] == N``; blocks may be empty.
    """
    if num_shards < 1:
        raise ValueError(f'num_shards must be >= 1, got {num_shards}')
    costs = np.asarray(costs, dtype=np.float64).reshape(-1)
    if (costs < 0).any() or not np.isfinite(costs).all():
        raise ValueError('costs must be finite and non-negative')
    cum = np.concatenate([[0.0], np.cumsum(costs)])
    targets = cum[-1] * np.arange(num_shards + 1) / num_shards
    bounds = np.searchsorted(cum, targets, side='left').astype(np.int64)
    bounds[0], bounds[-1] = 0, len(costs)
    return np.maximum.accumulate(bounds)


def start_forkserver() -> None:
    """Start the forkserver (it imports :data:`_FORKSERVER_PRELOAD` in its
    own process) so that the first background pool does not wait for it.
    Returns at once."""
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload(_FORKSERVER_PRELOAD)
    from multiprocessing import forkserver
    forkserver.ensure_running()


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def run_chunks(chunk_fn: Callable[[List[tuple]], ChipTable],
               jobs: List[tuple],
               num_proc: int,
               title: str,
               progress: bool = True) -> ChipTable:
    """Run ``chunk_fn`` over chunks of ``jobs`` and join the tables in job
    order.

    Args:
        chunk_fn (Callable): A module-level (picklable) function of a list
            of jobs, returning a :class:`ChipTable`.
        jobs (list[tuple]): The jobs, in output order.
        num_proc (int): Processes; 1 runs in this thread.
        title (str): The progress bar's title.
        progress (bool): Show a progress bar for long runs. Defaults to
            True.

    Returns:
        ChipTable: The joined tables.
    """
    chunk = max(1, min(1000, len(jobs) // max(1, num_proc * 4)))
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    bar = DelayedProgressBar(len(chunks), title) if progress else None
    parts = []
    if num_proc > 1 and len(chunks) > 1:
        if in_main_thread():
            ctx = multiprocessing.get_context('fork')
        else:
            ctx = multiprocessing.get_context('forkserver')
            ctx.set_forkserver_preload(_FORKSERVER_PRELOAD)
        with ctx.Pool(min(num_proc, len(chunks))) as pool:
            for part in pool.imap(chunk_fn, chunks):
                parts.append(part)
                bar and bar.update()
    else:
        for jobs_chunk in chunks:
            parts.append(chunk_fn(jobs_chunk))
            bar and bar.update()
    bar and bar.close()
    return ChipTable.concatenate(parts)


class BackgroundChipWork:
    """One daemon thread that runs submitted functions one at a time, in
    submission order.

    A daemon thread never keeps the process alive: work still running when
    training ends is abandoned (it is only the chips of an epoch that will
    not run). The thread starts on the first :meth:`submit`.
    """

    def __init__(self, name: str = 'sniper-chip-work') -> None:
        self.name = name
        self._queue: 'queue.Queue' = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def submit(self, fn: Callable, *args, **kwargs) -> Future:
        """Queue ``fn(*args, **kwargs)``; returns its :class:`Future`."""
        future: Future = Future()
        self._queue.put((future, fn, args, kwargs))
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name=self.name, daemon=True)
            self._thread.start()
        return future

    def _loop(self) -> None:
        while True:
            future, fn, args, kwargs = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to whoever waits
                future.set_exception(exc)

    def __getstate__(self):
        # a copy (a spawned dataloader worker) starts without the thread
        return dict(name=self.name)

    def __setstate__(self, state):
        self.__init__(state['name'])
