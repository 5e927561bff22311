# Copyright (c) mmsniper contributors. All rights reserved.
"""Stop a chip training whose detector would train ignored GT as
background."""
from typing import Optional

from mmengine.hooks import Hook

from mmdet.registry import HOOKS


def uses_chip_dataset(dataset_cfg) -> bool:
    """Whether a dataset config is, or wraps, a ``SniperChipDataset``."""
    from mmsniper.models.ignore_support import config_type_name
    if isinstance(dataset_cfg, dict):
        if config_type_name(dataset_cfg) == 'SniperChipDataset':
            return True
        return any(
            uses_chip_dataset(dataset_cfg.get(k))
            for k in ('dataset', 'datasets'))
    if isinstance(dataset_cfg, (list, tuple)):
        return any(uses_chip_dataset(d) for d in dataset_cfg)
    return False


def check_runner(runner, mode: Optional[str] = None) -> None:
    """Run the ignore check on ``runner.model`` when its training config uses
    ``SniperChipDataset``; ``mode`` defaults to the config's
    ``sniper_ignore_check`` ('error')."""
    from mmsniper.models.ignore_support import (ALLOW_KEY,
                                                enforce_ignore_support)
    cfg = runner.cfg
    loader = cfg.get('train_dataloader') or {}
    if not uses_chip_dataset(loader.get('dataset')):
        return
    model = runner.model
    if getattr(model, '_sniper_ignore_checked', False):
        return
    enforce_ignore_support(
        model, mode or cfg.get(ALLOW_KEY, 'error'), logger=runner.logger)
    model._sniper_ignore_checked = True


@HOOKS.register_module()
class SniperIgnoreCheckHook(Hook):
    """Refuse to train on chips with a detector that ignores nothing.

    When the training dataset is (or wraps) a ``SniperChipDataset``, checks
    at ``before_train`` that every head of the model honours the chips'
    ignored GT (:func:`mmsniper.models.ignore_support.check_ignore_support`)
    and raises a ``RuntimeError`` naming each head that does not and the
    config key to change. mmsniper's ``tools/train.py`` runs the same check
    right after building the runner, with or without this hook; the hook
    brings it to mmdet's ``tools/train.py``.

    Args:
        mode (str, optional): ``'error'``, ``'warn'`` or ``'off'``. Defaults
            to the config's top-level ``sniper_ignore_check``, else
            ``'error'``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, mode: Optional[str] = None) -> None:
        from mmsniper.models.ignore_support import MODES
        if mode is not None and mode not in MODES:
            raise ValueError(
                f'SniperIgnoreCheckHook: mode must be one of {MODES}, got '
                f'{mode!r}')
        self.mode = mode

    def before_train(self, runner) -> None:
        check_runner(runner, self.mode)
