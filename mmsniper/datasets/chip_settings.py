# Copyright (c) mmsniper contributors. All rights reserved.
"""Checks and summaries of a :class:`SniperChipDataset`'s settings.

Called from the dataset: :func:`check_chip_dataset_args` at the top of
``__init__`` (misplaced keys, bad scales / ranges / chip size),
:func:`report_gt_validity` once the chips exist (the box accounting line
and the warning when more than 1% of the GT are valid at no scale), and
:func:`warn_plain_index` when a sample is asked for by an integer index in
training (the sampler is not :class:`SniperChipSampler`).
"""
import inspect
import logging
from typing import Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.dist import is_main_process

from mmsniper.chips import (check_chip_settings, gt_scale_validity,
                            image_scale_factors)
from mmsniper.utils.progress import log_on_main, warn_once

__all__ = [
    'check_chip_dataset_args', 'report_gt_validity', 'warn_plain_index',
    'INVALID_GT_WARN_SHARE'
]

#: Warn when more than this share of the GT boxes is valid at no scale.
INVALID_GT_WARN_SHARE = 0.01


def _dataset_keys() -> set:
    """Arguments of mmengine's / mmdet's dataset classes."""
    keys = set()
    try:
        from mmdet.datasets import BaseDetDataset
        classes = (BaseDataset, BaseDetDataset)
    except ImportError:  # pragma: no cover
        classes = (BaseDataset, )
    for cls in classes:
        keys |= set(inspect.signature(cls.__init__).parameters)
    return keys - {'self', 'args', 'kwargs'}


def _nesting_example(found: dict, has_dataset: bool) -> str:
    kind = '...' if has_dataset else repr('CocoDataset')
    inner = ', '.join(f'{k}={v!r}' if len(repr(v)) < 40 else f'{k}=...'
                      for k, v in found.items())
    return ('\n    train_dataloader = dict(\n'
            "        sampler=dict(type='SniperChipSampler', shuffle=True),\n"
            '        dataset=dict(\n'
            "            type='SniperChipDataset',\n"
            '            scales=..., valid_ranges=..., chip_size=512,\n'
            '            dataset=dict(        # the wrapped dataset\n'
            f'                type={kind}, {inner})))')


def check_chip_dataset_args(dataset, extra: dict, scales: Sequence,
                            valid_ranges: Sequence, chip_size: int,
                            stride: int,
                            stride_jitter: Optional[Sequence[int]],
                            accepted: Sequence[str] = ()) -> None:
    """Check the arguments of :class:`SniperChipDataset` before any work.

    Args:
        dataset: The ``dataset`` argument (None when missing).
        extra (dict): Keyword arguments the dataset does not take.
        scales, valid_ranges, chip_size, stride, stride_jitter: As given.
        accepted (Sequence[str]): The arguments the dataset takes, named in
            the message about unknown ones (passed in by the dataset, so
            that this module does not import it).

    Raises:
        TypeError: ``dataset`` missing, or unknown keys (the message shows
            where keys of the wrapped dataset belong).
        ValueError: Bad chip settings (see
            :func:`~mmsniper.chips.check_chip_settings`).
    """
    dataset_keys = _dataset_keys()
    misplaced = {k: v for k, v in extra.items() if k in dataset_keys}
    unknown = sorted(set(extra) - set(misplaced))
    if dataset is None or misplaced:
        what = (f'got {", ".join(sorted(misplaced))}, which '
                'belong to the wrapped dataset' if misplaced else
                'needs the dataset it wraps')
        raise TypeError(
            f'SniperChipDataset {what}: SniperChipDataset wraps your dataset, '
            'so the dataset settings (type, data_root, ann_file, '
            'data_prefix, filter_cfg, ...) go one level deeper, in its '
            '`dataset` argument; only the chip settings (scales, '
            'valid_ranges, chip_size, stride, neg_proposals, ...) and an '
            'optional pipeline stay at its level:' +
            _nesting_example(misplaced, dataset is not None))
    if unknown:
        raise TypeError(
            f'SniperChipDataset got unexpected argument(s) {unknown}; it '
            f'takes {list(accepted)} (dataset settings go in `dataset`)')
    check_chip_settings(scales, valid_ranges, chip_size, stride,
                        stride_jitter)


def report_gt_validity(image_gt: Sequence[tuple], scales: Sequence,
                       valid_ranges: Sequence, chip_size: int, stride: int,
                       num_ignored: Optional[int] = None,
                       num_degenerate: int = 0) -> dict:
    """Log, on rank 0, where the GT boxes went, and warn when more than
    :data:`INVALID_GT_WARN_SHARE` of them are valid at no scale.

    Args:
        image_gt (Sequence[tuple]): Per image ``(boxes, gt_ids, (h, w))``
            of the boxes that drive chips (the dataset's records).
        scales, valid_ranges, chip_size, stride: The chip settings.
        num_ignored (int, optional): Boxes flagged ignore (crowd) in the
            annotations; they never drive chips.
        num_degenerate (int): Boxes skipped as degenerate.

    Returns:
        dict: The counts (``boxes``, ``valid``, ``invalid``, the reasons,
        ``valid_per_scale``), on every rank.
    """
    boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4)
             for b, _, _ in image_gt]
    sizes = np.array([size for _, _, size in image_gt],
                     dtype=np.float64).reshape(-1, 2)
    counts = [len(b) for b in boxes]
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    factors = image_scale_factors(scales, sizes)
    validity = gt_scale_validity(all_boxes, np.repeat(sizes, counts, axis=0),
                                 np.repeat(factors, counts, axis=0),
                                 valid_ranges, chip_size, stride)
    stats = validity.counts()
    stats['valid_per_scale'] = validity.valid.sum(axis=0).tolist()
    # a factor and a resolution pair compare only per image
    unordered = (np.diff(factors, axis=1) >= 0).any(axis=1) \
        if len(factors) else np.zeros(0, dtype=bool)
    stats['images_scales_unordered'] = int(unordered.sum())
    if not is_main_process():
        return stats
    if unordered.sum() > INVALID_GT_WARN_SHARE * len(unordered):
        i = int(np.flatnonzero(unordered)[0])
        log_on_main(
            f'SniperChipDataset: on {int(unordered.sum())} of {len(factors)} '
            f'images the scales {list(scales)} are not finest first (e.g. '
            f'an image of {int(sizes[i][1])}x{int(sizes[i][0])} px gets the '
            f'factors {np.round(factors[i], 3).tolist()}): a resolution '
            'scale upsamples small images more than the plain factor before '
            'it; fix: order the scales for your image sizes, or use plain '
            'factors only', level=logging.WARNING)
    total = stats['boxes']
    share = stats['invalid'] / max(total, 1)
    ignored = '' if num_ignored is None else (
        f', {num_ignored} ignored (crowd / ignore_flag; never drive chips)')
    log_on_main(
        f'SniperChipDataset: GT boxes: {stats["valid"]} valid at some scale '
        f'(per scale {stats["valid_per_scale"]}){ignored}, '
        f'{num_degenerate} skipped as degenerate, {stats["invalid"]} '
        f'skipped as valid at no scale ({stats["too_small"]} with a side '
        f'under 2 px, {stats["out_of_ranges"]} in no valid range, '
        f'{stats["too_large_for_chip"]} too long for a chip of '
        f'{chip_size} px at every scale whose range holds them)')
    if total and share > INVALID_GT_WARN_SHARE:
        log_on_main(
            f'SniperChipDataset: {stats["invalid"]} of {total} GT boxes '
            f'({share:.1%}) are valid at no scale and train only as ignored '
            f'regions: {stats["out_of_ranges"]} fall in no valid range '
            f'(check the gaps and ends of valid_ranges={list(valid_ranges)}'
            f'), {stats["too_large_for_chip"]} are too long for a chip '
            f'(widen the coarsest range or add a coarser scale), '
            f'{stats["too_small"]} have a side under 2 px. Run '
            'tools/analysis_tools/analyze_scales.py on your annotations for '
            'settings that fit your object sizes.',
            level=logging.WARNING)
    return stats


def warn_plain_index(idx) -> None:
    """Warn once when a training sample is asked for by integer index: the
    sampler is not :class:`SniperChipSampler`."""
    if isinstance(idx, (int, np.integer)):
        warn_once(
            'SniperChipDataset.plain_index',
            'SniperChipDataset got an integer index in training: the '
            'sampler is not SniperChipSampler (mmengine\'s DefaultSampler?), '
            'so every epoch trains the chips of epoch 0 (no stride_jitter, '
            'no new negative chip draws). Set train_dataloader.sampler='
            "dict(type='SniperChipSampler', shuffle=True) (with _delete_="
            'True when the base config has another sampler).')


def warn_missing_chip(results: dict) -> None:
    """Warn once when :class:`SniperChipCrop` gets a sample without a
    ``sniper_chip``: the whole image passes through uncropped."""
    warn_once(
        'SniperChipCrop.no_chip',
        f'SniperChipCrop got a sample without a chip '
        f'({results.get("img_path", "?")}): it passes the whole image '
        'through, uncropped and unresized. In training this means the '
        'dataset is not a SniperChipDataset (or is in test mode): wrap it, '
        "train_dataloader.dataset=dict(type='SniperChipDataset', scales=..., "
        'valid_ranges=..., dataset=dict(<your dataset>)). In a test '
        "pipeline, use Resize instead of SniperChipCrop.")
