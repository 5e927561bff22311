# Copyright (c) mmsniper contributors. All rights reserved.
"""Any mmdet config -> a SNIPER config (``tools/misc/make_sniper_config.py``).

::

    from mmsniper.apis import make_sniper_config
    text, notes = make_sniper_config(
        'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
        scales=[3.0, 1.667, (-1, 512)],
        valid_ranges=[(-1, 80), (32, 150), (120, -1)])
    open('rtmdet_tiny_sniper.py', 'w').write(text)

The written config inherits the source (``_base_``) and overrides only what
SNIPER needs: the chip dataset around the source's training dataset, the
chip sampler, the chip training pipeline (image-level resizes, crops and
multi-image mixing replaced by :class:`SniperChipCrop`, photometric steps
kept), the ignore-aware heads and assigners
(:func:`mmsniper.models.sniperize_model_cfg`), the batch pad to the chip
size, the pipeline-switch hooks mapped, the ignore check hook, a
``SniperTTAModel`` for ``--tta`` and ``custom_imports``.
"""
import copy
import json
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from mmengine.config import Config

from mmsniper.models.ignore_support import (config_type_name,
                                            sniperize_model_cfg)

__all__ = [
    'make_sniper_config', 'convert_train_pipeline', 'resolve_config_path',
    'REFERENCE_SCALES', 'REFERENCE_VALID_RANGES'
]

#: the reference COCO training scales and valid ranges (SNIPER_SPEC.md)
REFERENCE_SCALES = [3.0, 1.667, (-1, 512)]
REFERENCE_VALID_RANGES = [(-1, 80), (32, 150), (120, -1)]

#: the reference COCO test scales and test valid ranges (the same as
#: configs/_base_/sniper_tta.py): used for ``--tta`` when the training
#: scales are the reference ones
REFERENCE_TEST_SCALES = [(1400, 2000), (800, 1280), (480, 512)]
REFERENCE_TEST_VALID_RANGES = [(-1, 90), (32, 180), (75, -1)]

#: training steps replaced by the chip crop: the chip generator picks the
#: scale and the region of every training sample
GEOMETRIC_STEPS = {
    'Resize', 'RandomResize', 'RandomChoiceResize', 'FixShapeResize',
    'RandomCrop', 'RandomCenterCropPad', 'MinIoURandomCrop', 'Expand',
    'RandomAffine', 'RandomShift', 'Pad', 'RandomChoice', 'RandomApply',
    'ResizeShortestEdge', 'CropBoxes'
}
#: multi-image steps: a chip is one image region
MIXING_STEPS = {
    'Mosaic', 'MixUp', 'CachedMosaic', 'CachedMixUp', 'CopyPaste'
}
#: datasets unwrapped to reach the one the chips are cut from
WRAPPERS = ('MultiImageMixDataset', 'RepeatDataset', 'ClassBalancedDataset')
#: hooks whose pipeline is mapped like the training pipeline
PIPELINE_HOOKS = ('PipelineSwitchHook', )

SNIPER_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'flip', 'flip_direction', 'chip_offset',
                    'chip_scale', 'chip_valid_range', 'chip_scale_idx',
                    'chip_is_negative')


def _brief(step: dict) -> str:
    args = ', '.join(f'{k}={v!r}' for k, v in step.items() if k != 'type')
    text = f'{config_type_name(step)}({args})'
    return text if len(text) <= 60 else text[:57] + '...'


def resolve_config_path(source: str) -> str:
    """The file of ``pkg::rel/path.py`` (mmdet, mmsniper, ...) or a path."""
    if '::' in source:
        from mmengine.utils import get_installed_path
        package, rel = source.split('::', 1)
        if package == 'mmsniper':
            import mmsniper  # noqa: F401  (installs the editable lookup)
        path = osp.join(get_installed_path(package), '.mim', 'configs', rel)
    else:
        path = source
    if not osp.isfile(path):
        raise FileNotFoundError(f'make_sniper_config: no config at {source!r}'
                                + (f' ({path})' if path != source else ''))
    return path


def convert_train_pipeline(pipeline: Sequence[dict],
                           notes: List[str],
                           where: str = 'train_pipeline') -> Tuple[list, list]:
    """The chip version of a training pipeline.

    Returns:
        tuple[list, list]: The new steps and one comment per step
        (``''`` when it is unchanged).
    """
    steps, comments, removed = [], [], []
    for step in pipeline:
        step = copy.deepcopy(dict(step))
        name = config_type_name(step)
        if name == 'LoadImageFromFile':
            steps.append(dict(step, type='LoadSniperChipFromFile'))
            comments.append('was LoadImageFromFile: reads only the chip')
            notes.append(f'{where}: LoadImageFromFile -> '
                         'LoadSniperChipFromFile')
        elif name in GEOMETRIC_STEPS or name in MIXING_STEPS:
            removed.append(_brief(step))
            why = ('multi-image mixing' if name in MIXING_STEPS else
                   'the chip sets scale and region')
            notes.append(f'{where}: removed {_brief(step)} ({why})')
        elif name == 'PackDetInputs':
            meta = tuple(step.get('meta_keys', ()))
            keys = meta + tuple(k for k in SNIPER_META_KEYS if k not in meta)
            steps.append(dict(step, meta_keys=keys))
            comments.append('with the chip meta keys')
        else:
            steps.append(step)
            comments.append('')
    # the chip is cut in the coordinates of the unflipped image: right
    # after the annotations are loaded, before any flip or colour step
    at = next((i + 1 for i, s in enumerate(steps)
               if config_type_name(s) == 'LoadAnnotations'), 1)
    steps.insert(at, dict(type='SniperChipCrop'))
    comments.insert(at, 'replaces: ' + '\n          '.join(removed)
                    if removed else 'cuts the chip')
    if not any(config_type_name(s) == 'LoadSniperChipFromFile' for s in steps):
        raise ValueError(
            f'make_sniper_config: {where} has no LoadImageFromFile to '
            'replace with LoadSniperChipFromFile; edit it by hand')
    return steps, comments


def _unwrap(dataset: dict, notes: List[str]) -> Tuple[dict, list]:
    """The dataset the chips are cut from and the steps of its wrappers."""
    extra = []
    while config_type_name(dataset) in WRAPPERS:
        name = config_type_name(dataset)
        if name == 'MultiImageMixDataset':
            extra = list(dataset.get('pipeline', [])) + extra
        notes.append(f'train_dataloader.dataset: {name} unwrapped (a chip '
                     'dataset samples chips, not images)')
        dataset = dataset['dataset']
    return copy.deepcopy(dict(dataset)), extra


def _diff(old, new):
    """The override that merges ``new`` over ``old`` in an mmengine
    config."""
    if isinstance(old, dict) and isinstance(new, dict):
        renamed = config_type_name(old) != config_type_name(new)
        if renamed and not set(old) <= set(new):
            return dict(_delete_=True, **new)  # e.g. a wrapped assigner
        out = {}
        for key, value in new.items():
            if key not in old:
                out[key] = value
            elif old[key] != value:
                out[key] = _diff(old[key], value)
        return out
    return new


def _fmt(value, indent: int = 0) -> str:
    """Python source of a config value, mmdet style (``dict(...)``)."""
    pad = ' ' * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return 'dict()'
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            items = [f'{k}={_fmt(v, indent + 4)}' for k, v in value.items()]
            one = f'dict({", ".join(items)})'
            if len(one) + indent <= 70 and '\n' not in one:
                return one
            return 'dict(\n' + ',\n'.join(pad + i for i in items) + ')'
        items = [f'{k!r}: {_fmt(v, indent + 4)}' for k, v in value.items()]
        return '{\n' + ',\n'.join(pad + i for i in items) + '}'
    if isinstance(value, (list, tuple)):
        open_, close = ('[', ']') if isinstance(value, list) else ('(', ')')
        items = [_fmt(v, indent + 4) for v in value]
        tail = ',' if isinstance(value, tuple) and len(value) == 1 else ''
        one = open_ + ', '.join(items) + tail + close
        if len(one) + indent <= 70 and '\n' not in one:
            return one
        return open_ + '\n' + ',\n'.join(pad + i for i in items) + tail + \
            close
    return repr(value)


def _steps_text(steps: list, comments: list) -> str:
    lines = ['[']
    for step, comment in zip(steps, comments):
        body = _fmt(step, 4)
        for line in comment.splitlines():
            lines.append(f'    # {line}')
        lines.append(f'    {body},')
    lines.append(']')
    return '\n'.join(lines)


def _base_ref(source: str, out: Optional[str]) -> str:
    if '::' in source:
        return source
    path = osp.abspath(source)
    if out:
        rel = osp.relpath(path, osp.dirname(osp.abspath(out)))
        if not rel.startswith('..' + os.sep * 3):
            return rel
    return path


def _scales_from_advice(path: str) -> Tuple[list, list]:
    with open(path) as f:
        advice = json.load(f)
    try:
        proposal = advice['proposal']
        return ([tuple(s) if isinstance(s, list) else s
                 for s in proposal['scales']],
                [tuple(r) for r in proposal['valid_ranges']])
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f'make_sniper_config: {path} has no proposal.scales / '
            'proposal.valid_ranges (write it with tools/analysis_tools/'
            f'analyze_scales.py --out-dir): {exc!r}') from None


def _same(a, b) -> bool:
    norm = [tuple(x) if isinstance(x, (list, tuple)) else float(x)
            for x in a]
    return norm == [
        tuple(x) if isinstance(x, (list, tuple)) else float(x) for x in b
    ]


def _test_pipeline(cfg: Config) -> Optional[list]:
    """The source's test pipeline without its resizing steps, loading with
    the checked loader (:func:`~mmsniper.apis.tta.sniper_test_pipeline`)."""
    from .tta import sniper_test_pipeline
    loader = cfg.get('test_dataloader') or {}
    dataset = loader.get('dataset') or {}
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    steps = dataset.get('pipeline')
    if not steps:
        return None
    return sniper_test_pipeline(steps)


def make_sniper_config(source: str,
                       out: Optional[str] = None,
                       scales: Optional[Sequence] = None,
                       valid_ranges: Optional[Sequence] = None,
                       advice: Optional[str] = None,
                       chip_size: int = 512,
                       stride: int = 32,
                       test_scales: Optional[Sequence] = None,
                       test_valid_ranges: Optional[Sequence] = None
                       ) -> Tuple[str, List[str]]:
    """Write the SNIPER version of a detector config.

    Args:
        source (str): ``mmdet::path/in/model/zoo.py``, ``mmsniper::...`` or
            a config file.
        out (str, optional): Where the text will be written (for a relative
            ``_base_`` to a file source). Nothing is written here.
        scales, valid_ranges (list, optional): Training scales (finest
            first) and sqrt-area ranges; default: ``advice``'s proposal,
            else the reference COCO ones.
        advice (str, optional): ``scale_advice.json`` of
            ``tools/analysis_tools/analyze_scales.py``.
        chip_size (int): Chip side. Defaults to 512.
        stride (int): Chip stride. Defaults to 32.
        test_scales, test_valid_ranges (list, optional): The ``--tta``
            scales and ranges; default: the reference COCO test ones with
            the reference training scales, else the training ones.

    Returns:
        tuple[str, list[str]]: The config text and one line per change.
    """
    if advice and (scales or valid_ranges):
        raise ValueError('make_sniper_config: give --advice or '
                         '--scales/--valid-ranges, not both')
    if advice:
        scales, valid_ranges = _scales_from_advice(advice)
    if (scales is None) != (valid_ranges is None):
        raise ValueError('make_sniper_config: give both scales and '
                         'valid_ranges (one range per scale)')
    scales = list(scales if scales is not None else REFERENCE_SCALES)
    valid_ranges = list(
        valid_ranges if valid_ranges is not None else REFERENCE_VALID_RANGES)
    if len(scales) != len(valid_ranges):
        raise ValueError(f'make_sniper_config: {len(scales)} scales but '
                         f'{len(valid_ranges)} valid ranges')
    if (test_scales is None) != (test_valid_ranges is None):
        raise ValueError('make_sniper_config: give both test_scales and '
                         'test_valid_ranges')
    if test_scales is None:
        reference = (_same(scales, REFERENCE_SCALES)
                     and _same(valid_ranges, REFERENCE_VALID_RANGES))
        test_scales = REFERENCE_TEST_SCALES if reference else scales
        test_valid_ranges = (REFERENCE_TEST_VALID_RANGES
                             if reference else valid_ranges)
    test_scales, test_valid_ranges = list(test_scales), list(
        test_valid_ranges)
    if len(test_scales) != len(test_valid_ranges):
        raise ValueError(f'make_sniper_config: {len(test_scales)} test '
                         f'scales but {len(test_valid_ranges)} test ranges')
    if int(chip_size) <= 0 or int(stride) <= 0 or stride >= chip_size:
        raise ValueError('make_sniper_config: need 0 < stride < chip_size, '
                         f'got chip_size={chip_size}, stride={stride}')
    cfg = Config.fromfile(resolve_config_path(source))
    notes: List[str] = []
    if 'model' not in cfg or 'train_dataloader' not in cfg:
        raise ValueError(f'make_sniper_config: {source} has no model or no '
                         'train_dataloader: not a training config')
    model_old = cfg.model.to_dict()
    model_new, model_notes = sniperize_model_cfg(model_old)
    notes += model_notes
    model_override = _diff(model_old, model_new)
    pre = model_old.get('data_preprocessor') or {}
    old_aug = pre.get('batch_augments') or []
    for aug in old_aug:
        notes.append(f'model.data_preprocessor: removed {_brief(aug)} '
                     '(chips are padded to the chip size)')
    model_override.setdefault('data_preprocessor', {})['batch_augments'] = \
        'SNIPER_BATCH_AUGMENTS'

    loader = cfg.train_dataloader.to_dict()
    dataset = loader['dataset']
    already = config_type_name(dataset) == 'SniperChipDataset'
    if already:
        inner = copy.deepcopy(dataset['dataset'])
        steps = dataset.get('pipeline') or inner.get('pipeline') or []
        pipeline, comments = list(steps), [''] * len(steps)
        notes.append('train_dataloader.dataset: already a SniperChipDataset '
                     '(scales, ranges and chip size set here)')
    else:
        inner, wrapper_steps = _unwrap(dataset, notes)
        steps = list(inner.get('pipeline', [])) + wrapper_steps
        if not steps:
            raise ValueError(
                f'make_sniper_config: the training dataset of {source} has '
                'no pipeline to convert')
        pipeline, comments = convert_train_pipeline(steps, notes)
    inner['pipeline'] = 'TRAIN_PIPELINE'

    hooks = [copy.deepcopy(h) for h in (cfg.get('custom_hooks') or [])]
    for hook in hooks:
        if (config_type_name(hook) in PIPELINE_HOOKS
                and 'switch_pipeline' in hook):
            hook['switch_pipeline'], _ = convert_train_pipeline(
                hook['switch_pipeline'], notes,
                f'custom_hooks.{config_type_name(hook)}.switch_pipeline')
    for name in ('SniperIgnoreCheckHook', 'SniperTTAStatsHook'):
        if not any(config_type_name(h) == name for h in hooks):
            hooks.append(dict(type=name))

    lines = [
        f'# SNIPER training of {source}',
        '# made by tools/misc/make_sniper_config.py: the source',
        '# is inherited; below is what SNIPER changes. See the README,',
        '# "Add SNIPER to your config".',
        f'_base_ = {_base_ref(source, out)!r}',
        "custom_imports = dict(imports=['mmsniper'], "
        'allow_failed_imports=False)',
        '',
        f'chip_size = {int(chip_size)}',
        '# training scales, finest first: factors, or (short, long cap) / '
        '(-1, long)',
        f'sniper_scales = {_fmt(scales)}',
        '# sqrt-area ranges in original px per scale, -1 = open',
        f'sniper_valid_ranges = {_fmt(valid_ranges)}',
        '# chips are not padded by the pipeline: each batch is padded to the',
        '# chip size with the pixel mean by the model\'s data preprocessor',
        'sniper_batch_augments = [',
        '    dict(type=\'BatchFixedSizePad\', size=(chip_size, chip_size))',
        ']',
        '',
        f'train_pipeline = {_steps_text(pipeline, comments)}',
    ]
    chip_dataset = dict(
        _delete_=True,
        type='SniperChipDataset',
        scales='SNIPER_SCALES',
        valid_ranges='SNIPER_VALID_RANGES',
        chip_size='CHIP_SIZE',
        stride=int(stride),
        dataset=inner)
    if already:
        for key in ('neg_proposals', 'num_neg_chips_per_image',
                    'stride_jitter', 'neg_min_proposals'):
            if key in dataset:
                chip_dataset[key] = dataset[key]
    sampler = dict(type='SniperChipSampler', shuffle=True)
    if 'sampler' in loader:
        sampler = dict(_delete_=True, **sampler)
    loader_override = dict(sampler=sampler, dataset=chip_dataset)
    if config_type_name(loader.get('batch_sampler') or {}) not in (
            '', 'AspectRatioBatchSampler'):
        notes.append('train_dataloader.batch_sampler: kept '
                     f'{config_type_name(loader["batch_sampler"])}')
    lines += ['', f'train_dataloader = {_fmt(loader_override)}']
    lines += ['', f'model = {_fmt(model_override)}']
    lines += [
        '', '# SniperIgnoreCheckHook: training stops at once if a head would '
        'train', '# the ignored GT of a chip as background; '
        'SniperTTAStatsHook logs the', '# pixels and time per image of '
        '--tta (a no-op otherwise)', f'custom_hooks = {_fmt(hooks)}'
    ]
    lines += [
        '', '# tools/test.py --tta: SNIPER multi-scale test, finest first; '
        'test ranges', '# are lo < sqrt(area) <= hi in original px',
        f'sniper_test_scales = {_fmt(test_scales)}',
        f'sniper_test_valid_ranges = {_fmt(test_valid_ranges)}',
        'tta_model = dict(',
    ] + (['    _delete_=True,  # not the source\'s DetTTAModel']
         if 'tta_model' in cfg else []) + [
        "    type='SniperTTAModel',",
        '    scales=sniper_test_scales,',
        '    valid_ranges=sniper_test_valid_ranges,',
        '    merge_cfg=dict(',
        "        nms=dict(type='soft_nms', iou_threshold=0.3, sigma=0.55,",
        "                 min_score=0.001, method='gaussian'),",
        '        max_per_img=200))', ''
    ]
    test_steps = _test_pipeline(cfg)
    if test_steps is not None:
        lines += [
            '# the SNIPER test resizes (and tiles) per scale itself: the '
            'image is', '# loaded at its original size, by '
            'LoadSniperChipFromFile: a pixel limit', '# read from the '
            'header before decoding, decode errors naming the file',
            f'tta_pipeline = {_fmt(test_steps)}', ''
        ]
    text = '\n'.join(lines)
    for key, name in (("'SNIPER_BATCH_AUGMENTS'", 'sniper_batch_augments'),
                      ("'TRAIN_PIPELINE'", 'train_pipeline'),
                      ("'SNIPER_SCALES'", 'sniper_scales'),
                      ("'SNIPER_VALID_RANGES'", 'sniper_valid_ranges'),
                      ("'CHIP_SIZE'", 'chip_size')):
        text = text.replace(key, name)
    from yapf.yapflib.yapf_api import FormatCode
    text, _ = FormatCode(text, style_config='pep8')  # as mmengine formats
    return text, notes
