# Copyright (c) mmsniper contributors. All rights reserved.
"""TimeBudgetHook: training stops on wall time, with a time-based lr."""
import os.path as osp
import time

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmdet.registry import HOOKS
from mmsniper.engine.hooks import TimeBudgetHook


class _Data(Dataset):

    def __len__(self):
        return 10_000

    def __getitem__(self, idx):
        return dict(inputs=torch.ones(2))


class _SlowModel(BaseModel):
    """Each training step takes ``delay`` seconds and records the lr."""

    def __init__(self, delay=0.05):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.delay = delay

    def forward(self, inputs, data_samples=None, mode='tensor'):
        time.sleep(self.delay)
        return dict(loss=self.linear(inputs).sum() * 0)


def _runner(tmp_path, hook, lr=0.1):
    return Runner(
        model=_SlowModel(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=_Data(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=1,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=lr)),
        train_cfg=dict(by_epoch=False, max_iters=10_000, val_interval=10**6),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1000),
            checkpoint=dict(type='CheckpointHook', interval=10**6,
                            by_epoch=False)),
        custom_hooks=[hook],
        default_scope='mmdet',
        experiment_name=f'budget_{time.time_ns()}')


class _LrRecorder:
    """Records (elapsed fraction, lr) before each optimizer step."""

    def __init__(self, hook):
        self.hook, self.rows = hook, []

    def __call__(self, runner):
        frac = (time.perf_counter() - self.hook._start) / self.hook.budget_s
        lr = runner.optim_wrapper.optimizer.param_groups[0]['lr']
        self.rows.append((frac, lr))


def test_stops_on_the_budget_and_saves_the_weights(tmp_path):
    hook = TimeBudgetHook(budget_s=1.0)
    runner = _runner(tmp_path, hook)
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    # 0.05 s per step: about 20 iterations, not the 10,000 of max_iters
    assert hook.stopped_at_iter is not None
    assert 5 <= hook.stopped_at_iter <= 21
    assert runner.iter == hook.stopped_at_iter
    assert 1.0 <= hook.elapsed_s < 1.0 + 0.5
    assert wall < 30
    ckpt = osp.join(str(tmp_path), f'iter_{hook.stopped_at_iter}.pth')
    assert osp.isfile(ckpt)
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert 'linear.weight' in state['state_dict']
    assert runner.message_hub.get_info('time_budget_iters') == \
        hook.stopped_at_iter


def test_lr_follows_the_elapsed_time(tmp_path):
    hook = TimeBudgetHook(
        budget_s=1.0, warmup_ratio=0.2, warmup_start=0.1, eta_min_ratio=0.0)
    runner = _runner(tmp_path, hook, lr=0.1)
    rec = _LrRecorder(hook)
    orig = hook.before_train_iter

    def before_train_iter(runner, batch_idx, data_batch=None):
        orig(runner, batch_idx, data_batch)
        rec(runner)

    hook.before_train_iter = before_train_iter
    runner.train()
    fracs = [f for f, _ in rec.rows]
    lrs = [lr for _, lr in rec.rows]
    # warm-up: rising from 0.1 x lr; then cosine: falling towards 0
    assert lrs[0] == pytest.approx(0.01, abs=0.01)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert 0.1 <= fracs[peak] <= 0.35 and lrs[peak] > 0.08
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] < 0.02
    for frac, lr in rec.rows:  # each lr is the factor at that moment
        assert lr == pytest.approx(0.1 * hook.lr_factor(frac), abs=0.01)


def test_lr_factor_shape_and_settings():
    hook = TimeBudgetHook(budget_s=10, warmup_ratio=0.1, warmup_start=0.01,
                          eta_min_ratio=0.05)
    assert hook.lr_factor(0) == pytest.approx(0.01)
    assert hook.lr_factor(0.05) == pytest.approx(0.505)
    assert hook.lr_factor(0.1) == pytest.approx(1.0)
    assert hook.lr_factor(0.55) == pytest.approx(0.525)
    assert hook.lr_factor(1.0) == pytest.approx(0.05)
    assert hook.lr_factor(2.0) == pytest.approx(0.05)
    built = HOOKS.build(dict(type='TimeBudgetHook', budget_s=5,
                             lr_schedule=None))
    assert repr(built) == (
        "TimeBudgetHook(budget_s=5.0, lr_schedule=None, warmup_ratio=0.05, "
        'warmup_start=0.01, eta_min_ratio=0.05, save_checkpoint=True)')
    with pytest.raises(ValueError, match='budget_s'):
        TimeBudgetHook(budget_s=0)
    with pytest.raises(ValueError, match='lr_schedule'):
        TimeBudgetHook(budget_s=1, lr_schedule='step')
    with pytest.raises(ValueError, match='warmup_ratio'):
        TimeBudgetHook(budget_s=1, warmup_ratio=1)


def test_without_lr_schedule_the_lr_is_left_alone(tmp_path):
    hook = TimeBudgetHook(budget_s=0.3, lr_schedule=None,
                          save_checkpoint=False)
    runner = _runner(tmp_path, hook, lr=0.1)
    runner.train()
    assert runner.optim_wrapper.optimizer.param_groups[0]['lr'] == 0.1
    assert not any(
        n.startswith('iter_') for n in __import__('os').listdir(tmp_path))
