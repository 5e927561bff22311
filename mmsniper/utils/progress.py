# Copyright (c) mmsniper contributors. All rights reserved.
"""Rank-0 progress bars that appear only for slow steps, and once-only
warnings.

A step that finishes within ``delay`` seconds prints nothing; a slower one
gets mmengine's :class:`~mmengine.utils.ProgressBar` (on rank 0 only),
started as if it had been there from the beginning, so its rate and ETA
are right.
"""
import sys
import time
from typing import Iterable, Iterator, Optional

from mmengine.dist import is_main_process
from mmengine.logging import MMLogger, print_log
from mmengine.utils import ProgressBar

__all__ = ['DelayedProgressBar', 'track', 'warn_once', 'log_on_main']

#: Seconds a step may take before its progress bar appears.
PROGRESS_DELAY = 2.0

_WARNED = set()


class DelayedProgressBar:
    """A progress bar shown on rank 0 once the work has taken ``delay`` s.

    ``update()`` is cheap until then (one clock read). Always truthy, so
    ``bar and bar.update()`` call sites keep working.

    Args:
        total (int): Number of steps; 0 for an unknown total.
        task (str): Printed on the line before the bar when it appears.
        delay (float, optional): Seconds before the bar appears. Defaults
            to :data:`PROGRESS_DELAY`.
        file: Output stream. Defaults to ``sys.stdout``.
        enabled (bool, optional): Force on/off; defaults to rank 0 only.
    """

    def __init__(self,
                 total: int,
                 task: str = '',
                 delay: Optional[float] = None,
                 file=None,
                 enabled: Optional[bool] = None) -> None:
        self.total = int(total)
        self.task = task
        self.delay = PROGRESS_DELAY if delay is None else float(delay)
        self.file = file if file is not None else sys.stdout
        self.enabled = is_main_process() if enabled is None else enabled
        self.completed = 0
        self.start = time.perf_counter()
        self.bar: Optional[ProgressBar] = None

    def __bool__(self) -> bool:
        return True

    @property
    def shown(self) -> bool:
        """Whether the bar has appeared."""
        return self.bar is not None

    def update(self, num: int = 1) -> None:
        """Count ``num`` finished steps; show the bar once it is due."""
        self.completed += num
        if self.bar is not None:
            self.bar.update(num)
        elif self.enabled and (time.perf_counter() - self.start
                               >= self.delay):
            if self.task:
                self.file.write(f'{self.task}\n')
            self.bar = ProgressBar(self.total, file=self.file)
            # Count the time and steps before the bar appeared.
            self.bar.timer._t_start -= time.perf_counter() - self.start
            self.bar.update(self.completed)

    def close(self) -> None:
        """End the bar's line, if it appeared."""
        if self.bar is not None:
            self.file.write('\n')
            self.file.flush()
            self.bar = None
            self.enabled = False


def track(iterable: Iterable,
          total: Optional[int] = None,
          task: str = '',
          delay: Optional[float] = None) -> Iterator:
    """Iterate, with a :class:`DelayedProgressBar` updated per item."""
    if total is None:
        total = len(iterable) if hasattr(iterable, '__len__') else 0
    bar = DelayedProgressBar(total, task=task, delay=delay)
    try:
        for item in iterable:
            yield item
            bar.update()
    finally:
        bar.close()


def log_on_main(msg: str, level: int = 20) -> None:
    """``print_log`` to the current logger, on rank 0 only."""
    if is_main_process():
        print_log(msg, logger=MMLogger.get_current_instance(), level=level)


def warn_once(key: str, msg: str) -> bool:
    """Log ``msg`` as a warning the first time ``key`` is seen in this
    process; return whether it was logged."""
    if key in _WARNED:
        return False
    _WARNED.add(key)
    print_log(msg, logger=MMLogger.get_current_instance(), level=30)
    return True
