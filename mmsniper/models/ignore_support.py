# Copyright (c) mmsniper contributors. All rights reserved.
"""Which detectors honour SNIPER's ignored GT, how a config is made to, and
the build-time check.

:func:`sniperize_model_cfg` turns any mmdet model config into one whose
heads and assigners ignore the chip's invalid GT (:data:`HEAD_MAP`,
:data:`ASSIGNER_RULES`); :func:`check_ignore_support` looks at a built model
and lists each head that would still train ignored GT as background. The
tools run it when a training config uses ``SniperChipDataset``
(:class:`mmsniper.engine.hooks.SniperIgnoreCheckHook`), and stop.
"""
import copy
from typing import List, Tuple

from torch import nn

#: mmdet heads replaced by their ignore-aware versions.
HEAD_MAP = {
    'FCOSHead': 'SniperFCOSHead',
    'VFNetHead': 'SniperVFNetHead',
    'CenterNetUpdateHead': 'SniperCenterNetUpdateHead',
    'YOLOXHead': 'SniperYOLOXHead',
    'DETRHead': 'SniperDETRHead',
    'ConditionalDETRHead': 'SniperConditionalDETRHead',
    'DABDETRHead': 'SniperDABDETRHead',
    'DeformableDETRHead': 'SniperDeformableDETRHead',
    'DINOHead': 'SniperDINOHead',
    'SparseRoIHead': 'SniperSparseRoIHead',
    'StandardRoIHead': 'SniperRoIHead',
}

#: Heads whose label weights come from the assigner's ``gt_inds`` (0:
#: negative, > 0: positive, -1: weight 0): an ignore-aware assigner is all
#: they need. Read in mmdet 3.3.0's ``_get_targets_single`` of each.
ASSIGNER_HEADS = ('AnchorHead', 'RPNHead', 'RetinaHead', 'RetinaSepBNHead',
                  'ATSSHead', 'GFLHead', 'TOODHead', 'DDODHead', 'PAAHead',
                  'RTMDetHead', 'RTMDetSepBNHead', 'SniperVFNetHead')
#: RoI heads whose box assigners get ``gt_instances_ignore``.
ASSIGNER_ROI_HEADS = ('StandardRoIHead', 'SniperRoIHead', 'CascadeRoIHead',
                      'HybridTaskCascadeRoIHead')
#: Heads that apply the rule themselves.
SELF_IGNORING_HEADS = ('SniperFCOSHead', 'SniperCenterNetUpdateHead',
                       'SniperYOLOXHead', 'SniperDETRHead',
                       'SniperConditionalDETRHead', 'SniperDABDETRHead',
                       'SniperDeformableDETRHead', 'SniperDINOHead',
                       'SniperSparseRoIHead')
#: Heads with no object classification loss to ignore.
NO_CLS_LOSS_HEADS = ('EmbeddingRPNHead', 'FocusPixelHead')
#: Heads whose priors are points (``x, y, stride_w, stride_h``).
POINT_PRIOR_HEADS = ('RTMDetHead', 'RTMDetSepBNHead', 'RTMDetInsHead',
                     'RTMDetInsSepBNHead')
IGNORE_AWARE_ASSIGNERS = ('SniperMaxIoUAssigner', 'SniperIgnoreAssigner')
#: ``ignore_iou_thr`` of the converted anchor / proposal assigners: the
#: reference's 0.3 for anchors, 0.5 for the RoIs (the README's recipe).
ANCHOR_IGNORE_IOU = 0.3
ROI_IGNORE_IOU = 0.5

#: the config value that accepts a model the check refuses
ALLOW_KEY = 'sniper_ignore_check'
MODES = ('error', 'warn', 'off')


def config_type_name(cfg) -> str:
    """The ``type`` of a config dict as a name (a class given as ``type``
    gives its ``__name__``); ``''`` for anything else."""
    t = cfg.get('type', '') if isinstance(cfg, dict) else ''
    return t if isinstance(t, str) else getattr(t, '__name__', str(t))


def _convert_assigner(cfg: dict, kind: str, iou: float, path: str,
                      notes: List[str]) -> dict:
    name = config_type_name(cfg)
    if name in IGNORE_AWARE_ASSIGNERS or not name:
        return cfg
    if name == 'MaxIoUAssigner':
        new = dict(cfg, type='SniperMaxIoUAssigner', ignore_iou_thr=iou)
    else:
        new = dict(type='SniperIgnoreAssigner', assigner=dict(cfg),
                   kind=kind, ignore_iou_thr=iou)
    notes.append(f'{path}: {name} -> {new["type"]}'
                 + (f" (kind='{kind}')" if new['type'] ==
                    'SniperIgnoreAssigner' else ''))
    return new


def _convert_train_cfg(cfg, kind: str, iou: float, path: str,
                       notes: List[str], skip=()):
    """Convert every ``*assigner`` in a (nested) train_cfg."""
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(
            _convert_train_cfg(c, kind, iou, f'{path}[{i}]', notes, skip)
            for i, c in enumerate(cfg))
    if not isinstance(cfg, dict):
        return cfg
    out = dict(cfg)
    for key, value in cfg.items():
        sub = f'{path}.{key}'
        if key.endswith('assigner') and isinstance(value, dict):
            if config_type_name(value) not in skip:
                out[key] = _convert_assigner(value, kind, iou, sub, notes)
        elif isinstance(value, (dict, list, tuple)):
            out[key] = _convert_train_cfg(value, kind, iou, sub, notes, skip)
    return out


def sniperize_model_cfg(model: dict) -> Tuple[dict, List[str]]:
    """Make a model config honour SNIPER's ignored GT.

    Heads of :data:`HEAD_MAP` become their ignore-aware versions; every
    assigner of the train configs becomes ignore-aware
    (``MaxIoUAssigner`` -> :class:`SniperMaxIoUAssigner`, any other one
    wrapped in :class:`SniperIgnoreAssigner`, ``kind`` from the head), except
    where the head applies the rule itself (DETR-style, YOLOX). Idempotent.

    Args:
        model (dict): The ``model`` config (``type`` and all).

    Returns:
        tuple[dict, list[str]]: The new config (the input is not changed)
        and one line per change.
    """
    from mmengine.config import ConfigDict
    as_config = isinstance(model, ConfigDict)
    model = copy.deepcopy(
        model.to_dict() if as_config else dict(model))
    notes: List[str] = []
    if config_type_name(model) == 'AutoFocusDetector':
        inner, inner_notes = sniperize_model_cfg(model['detector'])
        model['detector'] = inner
        return (ConfigDict(model) if as_config else model), [
            n.replace('model.', 'model.detector.', 1) for n in inner_notes]
    kind, skip = 'box', ()
    for key in ('rpn_head', 'bbox_head', 'roi_head'):
        head = model.get(key)
        if not isinstance(head, dict):
            continue
        name = config_type_name(head)
        if name in HEAD_MAP:
            model[key] = dict(head, type=HEAD_MAP[name])
            notes.append(f'model.{key}: {name} -> {HEAD_MAP[name]}')
        if name in POINT_PRIOR_HEADS:
            kind = 'point'
        if name in ('YOLOXHead', 'SniperYOLOXHead'):
            skip = ('SimOTAAssigner', )  # the head ignores by itself
    train_cfg = model.get('train_cfg')
    if isinstance(train_cfg, dict):
        new = dict(train_cfg)
        for key, value in train_cfg.items():
            path = f'model.train_cfg.{key}'
            if key == 'rcnn':
                if config_type_name(model.get('roi_head', {})) in (
                        'SparseRoIHead', 'SniperSparseRoIHead'):
                    continue  # the RoI head ignores by itself
                new[key] = _convert_train_cfg(value, 'box', ROI_IGNORE_IOU,
                                              path, notes)
            elif key == 'rpn' or key.endswith('assigner'):
                wrapped = {key: value}
                value_kind = 'box' if key == 'rpn' else kind
                new[key] = _convert_train_cfg(wrapped, value_kind,
                                              ANCHOR_IGNORE_IOU,
                                              'model.train_cfg', notes,
                                              skip)[key]
        if _is_query_model(model):
            new = train_cfg  # DETR-style heads apply the rule themselves
            notes = [n for n in notes if 'train_cfg' not in n]
        model['train_cfg'] = new
    return (ConfigDict(model) if as_config else model), notes


def _is_query_model(model: dict) -> bool:
    head = config_type_name(model.get('bbox_head', {}))
    return head.endswith('DETRHead') or head.endswith('DINOHead')


def _assigners_of(module: nn.Module):
    """(attribute, assigner) pairs of a head or RoI head."""
    for name in ('assigner', 'initial_assigner', 'alignment_assigner',
                 'cls_assigner', 'reg_assigner', 'bbox_assigner'):
        value = getattr(module, name, None)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for i, v in enumerate(values):
            label = name if len(values) == 1 and not isinstance(
                value, (list, tuple)) else f'{name}[{i}]'
            yield label, v


def _cfg_key(head_path: str) -> str:
    return {
        'rpn_head': 'model.train_cfg.rpn.assigner',
        'roi_head': 'model.train_cfg.rcnn.assigner',
    }.get(head_path.split('.')[-1], 'model.train_cfg.assigner')


def check_ignore_support(model: nn.Module) -> List[str]:
    """The heads of a built model that would train ignored GT as background.

    Args:
        model (nn.Module): A detector (an AutoFocus detector, a model
            wrapper or an EMA copy included).

    Returns:
        list[str]: One message per head that does not honour ignored GT,
        naming the head, the module and the config key to change; empty
        when every head does.
    """
    from mmdet.models.dense_heads import DETRHead
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mmdet.models.roi_heads.base_roi_head import BaseRoIHead
    problems = []
    for path, module in model.named_modules():
        if not isinstance(module, (BaseDenseHead, BaseRoIHead, DETRHead)):
            continue
        if path.startswith('module.'):  # a model wrapper (DDP)
            path = path[len('module.'):]
        name = type(module).__name__
        if name in NO_CLS_LOSS_HEADS or name in SELF_IGNORING_HEADS:
            continue
        base = path or 'model'
        if name in HEAD_MAP:
            if name == 'StandardRoIHead' and all(
                    type(a).__name__ in IGNORE_AWARE_ASSIGNERS
                    for _, a in _assigners_of(module)):
                continue  # ignore-aware assigner, no valid-range filter
            problems.append(
                f'{base} is mmdet\'s {name}, which trains the ignored GT of '
                f'a chip as background: set model.{path}.type='
                f"'{HEAD_MAP[name]}' (and make its assigner ignore-aware), "
                'or convert the config with tools/misc/make_sniper_config.py')
            continue
        if name in ASSIGNER_HEADS or name in ASSIGNER_ROI_HEADS:
            if not getattr(module, 'train_cfg', None):
                continue  # a test-only head builds no assigner
            bad = [(attr, type(a).__name__)
                   for attr, a in _assigners_of(module)
                   if type(a).__name__ not in IGNORE_AWARE_ASSIGNERS]
            for attr, aname in bad:
                fix = ("type='SniperMaxIoUAssigner'" if aname ==
                       'MaxIoUAssigner' else
                       "type='SniperIgnoreAssigner', "
                       f"assigner=dict(type='{aname}', ...)")
                problems.append(
                    f'{base} ({name}) assigns with {aname} ({attr}), which '
                    'trains the ignored GT of a chip as background: set '
                    f'{_cfg_key(path)} to {fix}')
            continue
        problems.append(
            f'{base} ({name}) is not known to honour ignored GT: mmsniper '
            'has not verified it (see docs/en/user_guides/train_on_chips.md'
            ', "Detector families on chips"); its ignored GT may be trained '
            'as background')
    return problems


def enforce_ignore_support(model: nn.Module, mode: str = 'error',
                           logger=None) -> List[str]:
    """Run :func:`check_ignore_support` and act on ``mode``.

    Args:
        model (nn.Module): The detector.
        mode (str): ``'error'`` raises a ``RuntimeError`` listing the
            problems, ``'warn'`` logs them, ``'off'`` skips the check.
        logger: mmengine logger for ``'warn'``; the current one by default.

    Returns:
        list[str]: The problems found.
    """
    if mode not in MODES:
        raise ValueError(f'{ALLOW_KEY} must be one of {MODES}, got {mode!r}')
    if mode == 'off':
        return []
    problems = check_ignore_support(model)
    if not problems:
        return problems
    text = ('This config trains on SNIPER chips (SniperChipDataset), but '
            'its detector would train the ignored GT (out of the chip '
            "scale's valid range, or cut by the chip) as background:\n  - "
            + '\n  - '.join(problems) + f"\nSet {ALLOW_KEY}='warn' (or "
            "'off') in the config to train it so knowingly.")
    if mode == 'error':
        raise RuntimeError(text)
    from mmengine.logging import print_log
    import logging
    print_log(text, logger=logger or 'current', level=logging.WARNING)
    return problems
