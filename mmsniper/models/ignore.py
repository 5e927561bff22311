# Copyright (c) mmsniper contributors. All rights reserved.
"""The SNIPER ignore rule, shared by every ignore-aware component.

In a chip, the GT outside the chip scale's valid range (or cut by the chip)
are *ignored* instances (``data_sample.ignored_instances``). A prior,
proposal or query lying on one is neither positive nor negative: it gets
zero weight in every classification-type loss. What "lying on" means
depends on what the head predicts from (``kind``):

- ``'box'``: anchors and proposals, ``(x1, y1, x2, y2)``: IoU with an
  ignored box above the threshold (the reference's 0.3 for RPN anchors,
  SNIPER ``lib/data_utils/data_workers.py``);
- ``'point'``: point priors, ``(x, y[, stride_w, stride_h])``: the point
  inside an ignored box (FCOS, RTMDet, YOLOX, CenterNet);
- ``'pred'``: queries, the predicted box ``pred_instances.bboxes`` in image
  px: IoU with an ignored box above the threshold (DETR-style, Sparse
  R-CNN), after matching to the valid GT.

Heads whose loss does not go through an assigner's ``gt_inds`` get the
ignored boxes through the data samples' metainfo (:func:`stash_ignored`).
"""
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor

#: metainfo key under which :func:`stash_ignored` puts each image's
#: ignored boxes (Tensor (k, 4), image px) for heads that do not pass
#: ``batch_gt_instances_ignore`` down to their targets.
IGNORED_BBOXES_KEY = 'sniper_ignored_bboxes'

KINDS = ('box', 'point', 'pred')


def ignored_bboxes_of(gt_instances_ignore=None,
                      img_meta: Optional[dict] = None) -> Optional[Tensor]:
    """The ignored boxes of one image as a (k, 4) tensor, or None.

    From ``gt_instances_ignore`` when given, else from ``img_meta``'s
    :data:`IGNORED_BBOXES_KEY` (see :func:`stash_ignored`).
    """
    if gt_instances_ignore is not None and 'bboxes' in gt_instances_ignore:
        from mmdet.structures.bbox import get_box_tensor
        boxes = get_box_tensor(gt_instances_ignore.bboxes)
    elif img_meta is not None and IGNORED_BBOXES_KEY in img_meta:
        boxes = img_meta[IGNORED_BBOXES_KEY]
    else:
        return None
    if boxes is None or boxes.numel() == 0:
        return None
    return boxes.reshape(-1, 4)


def ignore_mask(locations: Tensor,
                ignored_bboxes: Optional[Tensor],
                kind: str = 'box',
                iou_thr: float = 0.3) -> Tensor:
    """Which priors / proposals / queries lie on an ignored box.

    Args:
        locations (Tensor): (n, >=2) points (``kind='point'``; columns
            beyond the first two, e.g. strides, are not used) or (n, 4)
            ``x1, y1, x2, y2`` boxes (``'box'``, ``'pred'``), image px.
        ignored_bboxes (Tensor, optional): (k, 4) ignored boxes; None or
            empty ignores nothing.
        kind (str): ``'box'``, ``'point'`` or ``'pred'``.
        iou_thr (float): IoU above which a box lies on an ignored box
            (``'box'``, ``'pred'``); <= 0 turns the rule off for those kinds.

    Returns:
        Tensor: (n,) bool on ``locations``' device.
    """
    if kind not in KINDS:
        raise ValueError(f'ignore kind must be one of {KINDS}, got {kind!r}')
    n = locations.shape[0]
    if (ignored_bboxes is None or ignored_bboxes.numel() == 0 or n == 0
            or (kind != 'point' and iou_thr <= 0)):
        return torch.zeros(n, dtype=torch.bool, device=locations.device)
    ign = ignored_bboxes.reshape(-1, 4).to(locations)
    if kind == 'point':
        x, y = locations[:, 0:1], locations[:, 1:2]
        inside = ((x >= ign[:, 0]) & (x <= ign[:, 2]) & (y >= ign[:, 1])
                  & (y <= ign[:, 3]))
        return inside.any(dim=1)
    from mmdet.structures.bbox import bbox_overlaps
    ious = bbox_overlaps(locations[:, :4].detach().float(), ign.float())
    return ious.max(dim=1).values > iou_thr


@contextmanager
def stash_ignored(batch_data_samples: Sequence) -> Iterator[None]:
    """Put each sample's ignored boxes into its metainfo for the duration.

    For heads whose ``loss`` drops ``batch_gt_instances_ignore`` before the
    targets are computed (DETR-style heads, Sparse R-CNN's RoI head): their
    ``img_meta`` then carries :data:`IGNORED_BBOXES_KEY`. The key is
    removed again on exit.
    """
    from mmdet.structures.bbox import get_box_tensor
    stashed = []
    for sample in batch_data_samples:
        ignored = sample.get('ignored_instances', None)
        if ignored is None or 'bboxes' not in ignored:
            continue
        sample.set_metainfo(
            {IGNORED_BBOXES_KEY: get_box_tensor(ignored.bboxes)})
        stashed.append(sample)
    try:
        yield
    finally:
        for sample in stashed:
            if IGNORED_BBOXES_KEY in sample.metainfo_keys():
                delattr(sample, IGNORED_BBOXES_KEY)
