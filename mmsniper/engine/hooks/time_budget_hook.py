# Copyright (c) mmsniper contributors. All rights reserved.
"""Train for a wall-clock budget instead of a number of iterations."""
import math
import os.path as osp
import time
from typing import Optional

from mmengine.hooks import Hook

from mmdet.registry import HOOKS


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """Stop training after ``budget_s`` seconds of wall-clock time, with an
    optional learning-rate schedule over that time.

    Comparing training recipes that cost different time per iteration
    (chips vs whole images, one scale vs several) at equal cost needs the
    same wall-clock budget, not the same number of iterations. The clock
    starts at ``before_train`` (after the dataset and model are built) and
    includes data loading. Meant for ``IterBasedTrainLoop`` (an
    epoch-based loop checks the stop flag only between epochs, so it would
    finish the epoch). After the iteration during which the budget
    runs out, the hook saves ``iter_{N}.pth`` in the work dir (unless the
    checkpoint hook just saved it) and sets the loop's ``stop_training``
    flag, so the run ends normally (``after_train`` hooks run).

    With ``lr_schedule='cosine'`` the hook owns the learning rate: a linear
    warm-up over the first ``warmup_ratio`` of the budget from
    ``warmup_start`` x the optimizer's lr, then a cosine decay to
    ``eta_min_ratio`` x lr at the end of the budget, both as functions of
    the elapsed time. Use it with ``param_scheduler = []``. With
    ``lr_schedule=None`` the config's schedulers keep the lr.

    Args:
        budget_s (float): Training time in seconds, > 0.
        lr_schedule (str, optional): ``'cosine'`` or None.
            Defaults to 'cosine'.
        warmup_ratio (float): Share of the budget for the warm-up.
            Defaults to 0.05.
        warmup_start (float): lr factor at the start of the warm-up.
            Defaults to 0.01.
        eta_min_ratio (float): lr factor at the end. Defaults to 0.05.
        save_checkpoint (bool): Save the weights when the budget ends.
            Defaults to True.
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 budget_s: float,
                 lr_schedule: Optional[str] = 'cosine',
                 warmup_ratio: float = 0.05,
                 warmup_start: float = 0.01,
                 eta_min_ratio: float = 0.05,
                 save_checkpoint: bool = True) -> None:
        if not budget_s > 0:
            raise ValueError(f'TimeBudgetHook: budget_s must be > 0, got '
                             f'{budget_s!r}')
        if lr_schedule not in ('cosine', None):
            raise ValueError(f"TimeBudgetHook: lr_schedule must be 'cosine' "
                             f'or None, got {lr_schedule!r}')
        if not 0 <= warmup_ratio < 1:
            raise ValueError('TimeBudgetHook: warmup_ratio must be in [0, 1)'
                             f', got {warmup_ratio!r}')
        self.budget_s = float(budget_s)
        self.lr_schedule = lr_schedule
        self.warmup_ratio = warmup_ratio
        self.warmup_start = warmup_start
        self.eta_min_ratio = eta_min_ratio
        self.save_checkpoint = save_checkpoint
        self._start: Optional[float] = None
        self._base_lrs = None
        self.stopped_at_iter: Optional[int] = None
        self.elapsed_s: Optional[float] = None

    def lr_factor(self, fraction: float) -> float:
        """The lr factor after ``fraction`` of the budget (0 to 1)."""
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction < self.warmup_ratio:
            return self.warmup_start + (1 - self.warmup_start) * (
                fraction / self.warmup_ratio)
        rest = (fraction - self.warmup_ratio) / (1 - self.warmup_ratio)
        return self.eta_min_ratio + (1 - self.eta_min_ratio) * 0.5 * (
            1 + math.cos(math.pi * rest))

    def _elapsed(self) -> float:
        return time.perf_counter() - self._start

    def before_train(self, runner) -> None:
        self._start = time.perf_counter()
        self.stopped_at_iter = None
        if self.lr_schedule is not None:
            optimizer = runner.optim_wrapper.optimizer
            self._base_lrs = [g['lr'] for g in optimizer.param_groups]
        runner.logger.info(
            f'TimeBudgetHook: training for {self.budget_s:.0f} s of wall '
            f'time (lr schedule: {self.lr_schedule})')

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self._base_lrs is None:
            return
        factor = self.lr_factor(self._elapsed() / self.budget_s)
        groups = runner.optim_wrapper.optimizer.param_groups
        for group, base in zip(groups, self._base_lrs):
            group['lr'] = base * factor

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        elapsed = self._elapsed()
        if elapsed < self.budget_s or self.stopped_at_iter is not None:
            return
        self.stopped_at_iter = runner.iter + 1
        self.elapsed_s = elapsed
        runner.logger.info(
            f'TimeBudgetHook: budget of {self.budget_s:.0f} s reached after '
            f'{self.stopped_at_iter} iterations ({elapsed:.1f} s, '
            f'{elapsed / self.stopped_at_iter:.3f} s/iter); stopping')
        runner.message_hub.update_info('time_budget_iters',
                                       self.stopped_at_iter)
        runner.message_hub.update_info('time_budget_elapsed_s', elapsed)
        if self.save_checkpoint:
            name = f'iter_{self.stopped_at_iter}.pth'
            if not osp.exists(osp.join(runner.work_dir, name)):
                runner.save_checkpoint(
                    runner.work_dir, name, save_optimizer=False,
                    save_param_scheduler=False, by_epoch=False)
        runner.train_loop.stop_training = True

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(budget_s={self.budget_s}, '
                f'lr_schedule={self.lr_schedule!r}, '
                f'warmup_ratio={self.warmup_ratio}, '
                f'warmup_start={self.warmup_start}, '
                f'eta_min_ratio={self.eta_min_ratio}, '
                f'save_checkpoint={self.save_checkpoint})')
