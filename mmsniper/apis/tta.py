# Copyright (c) mmsniper contributors. All rights reserved.
"""The test-time augmentation config of ``tools/test.py --tta``.

One implementation for ``tools/test.py --tta``, ``tools/demo.py``, the
KIT AIS study and the GPU checks::

    from mmsniper.apis import sniper_tta_config
    tta_cfg = sniper_tta_config(cfg, tta_model=dict(focus=False))
    runner = Runner.from_cfg(tta_cfg)
"""
import copy
import time
import warnings
from typing import Optional

from mmengine.config import Config, ConfigDict

__all__ = ['enable_tta', 'sniper_tta_config', 'sniper_test_pipeline']

#: Steps that change the image size: a SNIPER test loads the original size.
RESIZING_STEPS = ('Resize', 'RandomResize', 'FixShapeResize', 'RandomFlip',
                  'Pad', 'RandomCrop', 'RandomChoiceResize')


def _type_name(cfg) -> str:
    return str(cfg.get('type', '')).split('.')[-1]


def sniper_test_pipeline(steps) -> list:
    """A test pipeline for a SNIPER or AutoFocus test from a plain one.

    The resizing steps (:data:`RESIZING_STEPS`) are dropped: the TTA model
    resizes per scale itself. ``LoadImageFromFile`` becomes
    ``LoadSniperChipFromFile`` with the same arguments, which loads the
    whole image in the same way and adds the project's checks: a pixel limit
    read from the file header before decoding, and decode errors that name
    the file.

    Args:
        steps (list[dict]): The test pipeline.

    Returns:
        list[dict]: New steps (copies).
    """
    out = []
    for step in steps:
        step = copy.deepcopy(dict(step))
        name = _type_name(step)
        if name in RESIZING_STEPS:
            continue
        if name == 'LoadImageFromFile':
            step['type'] = 'LoadSniperChipFromFile'
        out.append(step)
    return out


def _is_sniper_tta(tta_model) -> bool:
    return _type_name(tta_model) in ('SniperTTAModel', 'AutoFocusTTAModel')


def _innermost_dataset(cfg):
    data_cfg = cfg.test_dataloader.dataset
    while 'dataset' in data_cfg:
        data_cfg = data_cfg['dataset']
    return data_cfg


def enable_tta(cfg: Config, tta_model: Optional[dict] = None) -> Config:
    """Wrap ``cfg.model`` in ``cfg.tta_model`` and test with
    ``cfg.tta_pipeline``, in place, as mmdet's ``tools/test.py --tta``.

    Defaults as mmdet's: without ``tta_model``, ``DetTTAModel`` with
    horizontal-flip TTA. A SNIPER or AutoFocus ``tta_model`` without
    ``tta_pipeline`` gets the test pipeline without its resizing steps (the
    TTA model resizes per scale itself) and with the checked loader
    (:func:`sniper_test_pipeline`), and its ``SniperTTAStatsHook``,
    which logs the pixels and time per image next to the metric.

    Args:
        cfg (Config): The config, changed in place.
        tta_model (dict, optional): Overrides merged into ``tta_model``
            (e.g. ``dict(focus=False)`` for an AutoFocus config).

    Returns:
        Config: ``cfg``.
    """
    if 'tta_model' not in cfg:
        warnings.warn('Cannot find ``tta_model`` in config, '
                      'we will set it as default.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if tta_model:
        cfg.tta_model = ConfigDict({**cfg.tta_model, **tta_model})
    sniper = _is_sniper_tta(cfg.tta_model)
    if 'tta_pipeline' not in cfg and sniper:
        warnings.warn('Cannot find ``tta_pipeline`` in config: using the '
                      'test pipeline without its resizing steps.')
        cfg.tta_pipeline = sniper_test_pipeline(
            _innermost_dataset(cfg).pipeline)
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, '
                      'we will set it as default.')
        cfg.tta_pipeline = copy.deepcopy(_innermost_dataset(cfg).pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ],
                [
                    dict(
                        type='PackDetInputs',
                        meta_keys=('img_id', 'img_path', 'ori_shape',
                                   'img_shape', 'scale_factor', 'flip',
                                   'flip_direction'))
                ],
            ])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    if sniper:
        hooks = list(cfg.get('custom_hooks', None) or [])
        if not any(_type_name(h) == 'SniperTTAStatsHook' for h in hooks):
            hooks.append(dict(type='SniperTTAStatsHook'))
        cfg.custom_hooks = hooks
    return cfg


def sniper_tta_config(cfg: Config,
                      tta_model: Optional[dict] = None,
                      load_from: Optional[str] = None) -> Config:
    """A copy of ``cfg`` that tests as ``tools/test.py CFG CKPT --tta``.

    For testing a model trained in the same process: ``load_from`` is None
    by default (load the weights with ``runner.model.module
    .load_state_dict(...)``), and the run gets its own experiment name, so
    its logs do not mix with the training run's.

    Args:
        cfg (Config): The detector's config (not changed).
        tta_model (dict, optional): Overrides merged into ``tta_model``.
        load_from (str, optional): Checkpoint for the runner to load.

    Returns:
        Config: The test config.
    """
    tta = enable_tta(copy.deepcopy(cfg), tta_model)
    tta.load_from = load_from
    tta.experiment_name = 'sniper_tta_' + time.strftime('%Y%m%d_%H%M%S')
    return tta
