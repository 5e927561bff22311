# Copyright (c) mmsniper contributors. All rights reserved.
"""What a chip dataset computes per image: the GT that drives chips, and
its positive and negative chip tables (picklable worker functions of
:class:`SniperChipDataset`; numpy and :mod:`mmsniper.chips` only)."""
from typing import List, Tuple

import numpy as np

from mmsniper.chips import (chip_driving_mask, clip_bboxes,
                            compute_scale_factors, containment_matrix,
                            generate_multiscale_chips,
                            generate_negative_chips, normalize_valid_ranges,
                            validity_ranges)
from .chip_table import ChipTable


def image_gt(data_info: dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes of an image's instances as mmdet's LoadAnnotations sees them.

    Args:
        data_info (dict): One ``data_list`` entry of an mmdet dataset.

    Returns:
        tuple: (N, 4) float64 boxes, (N,) bool ignore flags, and (N,) bool
        degenerate flags (non-finite or without positive width and height).
    """
    instances = data_info.get('instances', [])
    boxes = np.array([inst['bbox'] for inst in instances],
                     dtype=np.float64).reshape(-1, 4)
    ignored = np.array(
        [bool(inst.get('ignore_flag', 0)) for inst in instances], dtype=bool)
    finite = np.isfinite(boxes).all(axis=1)
    degenerate = ~finite | (boxes[:, 2] <= boxes[:, 0]) | (
        boxes[:, 3] <= boxes[:, 1])
    return boxes, ignored, degenerate


def _image_chip_tables(job: tuple) -> List[ChipTable]:
    """Chips of one image at every scale (a picklable worker function)."""
    (img_idx, boxes, gt_ids, image_size, scales, valid_ranges, chip_size,
     stride, seed, lower_bound_scales) = job
    rng = None if seed is None else np.random.default_rng([seed, img_idx])
    tables = []
    per_scale = generate_multiscale_chips(
        boxes, image_size, scales, valid_ranges, chip_size=chip_size,
        stride=stride, rng=rng, lower_bound_scales=lower_bound_scales)
    for scale_idx, result in enumerate(per_scale):
        if len(result.chips):
            tables.append(
                ChipTable.from_image_chips(img_idx, scale_idx, result.chips,
                                           result.gt_chip, gt_ids))
    return tables


def _image_negative_tables(job: tuple) -> List[ChipTable]:
    """Negative chips of one image at every scale (picklable worker).

    A GT is valid in a negative chip when it is valid at the chip's scale
    (:func:`~mmsniper.chips.validity_ranges`: the scale's range, its lower
    bound dropped at the non-coarsest scales with
    ``lower_bound_scales='coarsest'``) and lies entirely inside it; every
    other GT there is ignored.
    """
    (img_idx, boxes, gt_ids, image_size, proposals, pos_chips, scales,
     valid_ranges, chip_size, stride, min_proposals,
     lower_bound_scales) = job
    neg_chips = generate_negative_chips(
        proposals, pos_chips, image_size, scales, valid_ranges,
        chip_size=chip_size, stride=stride, min_proposals=min_proposals,
        lower_bound_scales=lower_bound_scales)
    factors = compute_scale_factors(scales, image_size)
    ranges = validity_ranges(
        normalize_valid_ranges(valid_ranges, len(scales)),
        lower_bound_scales).tolist()
    tables = []
    for scale_idx, chips in enumerate(neg_chips):
        if not len(chips):
            continue
        valid = chip_driving_mask(boxes, factors[scale_idx],
                                  ranges[scale_idx], chip_size, stride,
                                  image_size=image_size)
        grown = chips + np.array([-1e-3, -1e-3, 1e-3, 1e-3])
        member = containment_matrix(grown, clip_bboxes(boxes, image_size))
        member &= valid[None]
        tables.append(
            ChipTable.from_membership(img_idx, scale_idx, chips, member,
                                      gt_ids, is_negative=True))
    return tables


def _chunk_chip_tables(jobs: List[tuple]) -> ChipTable:
    return ChipTable.concatenate(
        [t for job in jobs for t in _image_chip_tables(job)])


def _chunk_negative_tables(jobs: List[tuple]) -> ChipTable:
    return ChipTable.concatenate(
        [t for job in jobs for t in _image_negative_tables(job)])
