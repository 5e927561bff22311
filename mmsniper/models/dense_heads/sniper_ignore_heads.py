# Copyright (c) mmsniper contributors. All rights reserved.
"""Ignore-aware versions of the mmdet heads whose classification losses do
not go through an assigner's ``gt_inds`` (or that weight an unassigned
prior anyway).

Each class is the mmdet head plus the SNIPER ignore rule
(:mod:`mmsniper.models.ignore`), nothing else: same arguments, same
weights, same predictions. The heads that *do* build their label weights
from the assigner (RetinaNet, ATSS, GFL, TOOD, DDOD, PAA, RTMDet) need no
subclass: wrap their assigner in :class:`SniperIgnoreAssigner`.

==================================  =====================================
head                                 what is ignored, and how
==================================  =====================================
``SniperFCOSHead``                   points inside an ignored box and not
                                     positive: zero weight in ``loss_cls``
``SniperVFNetHead``                  the ATSS assigner's ignored anchors
                                     (``SniperIgnoreAssigner``), or with
                                     ``use_atss=False`` FCOS' rule: zero
                                     weight in the varifocal ``loss_cls``,
                                     which mmdet calls without weights
``SniperCenterNetUpdateHead``        points inside an ignored box and not
                                     inside a valid GT's regression target:
                                     no term in the Gaussian focal loss
``SniperYOLOXHead``                  prior centres inside an ignored box
                                     and not foreground: zero weight in
                                     ``loss_obj`` (cls / IoU are positives
                                     only)
``SniperDETRHead`` and the           queries not matched to a valid GT
Conditional / DAB / Deformable       whose predicted box has IoU >
DETR and DINO versions               ``ignore_iou_thr`` with an ignored
                                     box: zero ``label_weights``, no
                                     negative; two-stage encoder proposals
                                     likewise
==================================  =====================================
"""
from contextlib import contextmanager
from typing import List, Optional

import torch
from mmdet.models.dense_heads import (CenterNetUpdateHead, ConditionalDETRHead,
                                      DABDETRHead, DeformableDETRHead,
                                      DETRHead, DINOHead, FCOSHead, VFNetHead,
                                      YOLOXHead)
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from ..ignore import ignore_mask, ignored_bboxes_of, stash_ignored

__all__ = [
    'SniperFCOSHead', 'SniperVFNetHead', 'SniperCenterNetUpdateHead',
    'SniperYOLOXHead', 'SniperDETRHead', 'SniperConditionalDETRHead',
    'SniperDABDETRHead', 'SniperDeformableDETRHead', 'SniperDINOHead',
    'IgnoreWeightedLoss'
]


class IgnoreWeightedLoss(nn.Module):
    """A loss module that zeroes the ignored predictions' terms.

    Wraps a head's loss for the duration of one ``loss_by_feat`` call
    (:func:`weighted_loss`). Two ways to mark the ignored predictions,
    whichever the head can give:

    - ``keep`` (Tensor (N,), set by the head's ``get_targets``): 0 for an
      ignored prediction, 1 otherwise;
    - a negative target (``sentinel=True``): class label -1 or objectness
      -1; it is replaced by the background target (``num_classes`` for
      labels, 0 for scores) and gets weight 0.

    The weight is multiplied into the head's own ``weight`` when it passes
    one, and broadcast over the classes for (N, C) targets.
    """

    def __init__(self, loss: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.loss = loss
        self.num_classes = num_classes
        self.keep: Optional[Tensor] = None

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules['loss'], name)

    def forward(self, pred: Tensor, target, weight=None, *args, **kwargs):
        keep = self.keep
        negative = isinstance(target, Tensor) and target.numel() and bool(
            (target < 0).any())
        if negative:
            ignored = target < 0
            if target.dim() > 1:
                ignored = ignored.reshape(target.shape[0], -1).any(dim=1)
            target = target.clone()
            if target.dtype in (torch.int64, torch.int32):
                target[target < 0] = self.num_classes
            else:
                target[target < 0] = 0
            sentinel_keep = (~ignored).to(pred.dtype)
            keep = sentinel_keep if keep is None else keep * sentinel_keep
        if keep is not None:
            keep = keep.to(pred.dtype)
            soft = isinstance(target, Tensor) and target.shape == pred.shape
            if weight is not None:
                keep = keep.reshape(-1, *([1] * (weight.dim() - 1)))
                weight = weight * keep
            elif soft and pred.dim() == 2:
                weight = keep[:, None].expand_as(pred)
            else:
                weight = keep
        return self.loss(pred, target, weight, *args, **kwargs)


@contextmanager
def weighted_loss(head: nn.Module, attr: str = 'loss_cls'):
    """Let ``head.<attr>`` zero the ignored terms while the block runs."""
    original = getattr(head, attr)
    wrapper = IgnoreWeightedLoss(original, getattr(head, 'num_classes', 0))
    setattr(head, attr, wrapper)
    try:
        yield wrapper
    finally:
        setattr(head, attr, original)


@contextmanager
def ignored_batch(head: nn.Module, batch_gt_instances_ignore):
    """Keep the batch's ignored GT on the head for ``get_targets``."""
    head._sniper_ignore = batch_gt_instances_ignore
    try:
        yield
    finally:
        head._sniper_ignore = None


def _level_major_mask(head, points: List[Tensor]) -> Optional[Tensor]:
    """Point-in-ignored-box mask in the level, image, point order of the
    flattened FCOS-style targets; None when nothing is ignored."""
    ignores = getattr(head, '_sniper_ignore', None) or []
    boxes = [ignored_bboxes_of(ign) for ign in ignores]
    if all(b is None for b in boxes):
        return None
    return torch.cat([
        ignore_mask(lvl_points, b, 'point') for lvl_points in points
        for b in boxes
    ])


@MODELS.register_module()
class SniperFCOSHead(FCOSHead):
    """:class:`FCOSHead` that ignores the points lying in ignored GT.

    A point inside an ignored box that is not a positive of a valid GT gets
    zero weight in ``loss_cls`` (centerness and box losses are positives
    only). Arguments: those of :class:`FCOSHead`.
    """

    def loss_by_feat(self, cls_scores, bbox_preds, centernesses,
                     batch_gt_instances, batch_img_metas,
                     batch_gt_instances_ignore=None):
        with ignored_batch(self, batch_gt_instances_ignore), \
                weighted_loss(self, 'loss_cls'):
            return super().loss_by_feat(cls_scores, bbox_preds, centernesses,
                                        batch_gt_instances, batch_img_metas,
                                        batch_gt_instances_ignore)

    def get_targets(self, points, batch_gt_instances):
        labels, bbox_targets = super().get_targets(points, batch_gt_instances)
        mask = _level_major_mask(self, points)
        if mask is not None:
            flat = torch.cat(labels)
            mask &= flat == self.num_classes  # positives stay positive
            sizes = [len(lbl) for lbl in labels]
            labels = [
                torch.where(m, lbl.new_tensor(-1), lbl)
                for lbl, m in zip(labels, mask.split(sizes))
            ]
        return labels, bbox_targets


@MODELS.register_module()
class SniperVFNetHead(VFNetHead):
    """:class:`VFNetHead` that ignores the priors lying in ignored GT.

    With ``use_atss=True`` (mmdet's configs), the ATSS assigner decides:
    wrap it in :class:`SniperIgnoreAssigner` and its ignored anchors (label
    weight 0) get zero weight in the varifocal ``loss_cls`` too, which
    mmdet computes without label weights. With ``use_atss=False``, FCOS'
    rule (points inside an ignored box, not positive). Arguments: those of
    :class:`VFNetHead`.
    """

    def loss_by_feat(self, cls_scores, bbox_preds, bbox_preds_refine,
                     batch_gt_instances, batch_img_metas,
                     batch_gt_instances_ignore=None):
        with ignored_batch(self, batch_gt_instances_ignore), \
                weighted_loss(self, 'loss_cls'):
            return super().loss_by_feat(cls_scores, bbox_preds,
                                        bbox_preds_refine, batch_gt_instances,
                                        batch_img_metas,
                                        batch_gt_instances_ignore)

    def get_targets(self, cls_scores, mlvl_points, batch_gt_instances,
                    batch_img_metas, batch_gt_instances_ignore=None):
        labels, label_weights, bbox_targets, bbox_weights = \
            super().get_targets(cls_scores, mlvl_points, batch_gt_instances,
                                batch_img_metas, batch_gt_instances_ignore)
        if isinstance(self.loss_cls, IgnoreWeightedLoss):
            if label_weights is not None:
                keep = (label_weights > 0).float()
            else:
                mask = _level_major_mask(self, mlvl_points)
                keep = None
                if mask is not None:
                    mask &= torch.cat(labels) == self.num_classes
                    keep = (~mask).float()
            self.loss_cls.keep = keep
        return labels, label_weights, bbox_targets, bbox_weights


@MODELS.register_module()
class SniperCenterNetUpdateHead(CenterNetUpdateHead):
    """:class:`CenterNetUpdateHead` that ignores points in ignored GT.

    A point inside an ignored box that is not inside a valid GT's
    regression target has no term in the Gaussian focal loss: its heatmap
    target is set to 1 for every class, which zeroes the negative term
    (``(1 - target) ** gamma``), and it is not among the positives, which
    are passed by index. Arguments: those of :class:`CenterNetUpdateHead`.
    """

    def loss_by_feat(self, cls_scores, bbox_preds, batch_gt_instances,
                     batch_img_metas, batch_gt_instances_ignore=None):
        with ignored_batch(self, batch_gt_instances_ignore):
            return super().loss_by_feat(cls_scores, bbox_preds,
                                        batch_gt_instances, batch_img_metas,
                                        batch_gt_instances_ignore)

    def get_targets(self, points, batch_gt_instances):
        cls_targets, bbox_targets = super().get_targets(
            points, batch_gt_instances)
        mask = _level_major_mask(self, points)
        if mask is not None:
            mask &= bbox_targets.max(dim=1).values < 0
            cls_targets = cls_targets.clone()
            cls_targets[mask] = 1.0
        return cls_targets, bbox_targets


@MODELS.register_module()
class SniperYOLOXHead(YOLOXHead):
    """:class:`YOLOXHead` that ignores the priors lying in ignored GT.

    A prior whose centre is inside an ignored box and that is not
    foreground gets zero weight in ``loss_obj``; the classification and IoU
    targets are the positives' only. Arguments: those of :class:`YOLOXHead`.
    """

    def loss_by_feat(self, *args, **kwargs):
        with weighted_loss(self, 'loss_obj'):
            return super().loss_by_feat(*args, **kwargs)

    def _get_targets_single(self, priors, cls_preds, decoded_bboxes,
                            objectness, gt_instances, img_meta,
                            gt_instances_ignore=None):
        targets = super()._get_targets_single(priors, cls_preds,
                                              decoded_bboxes, objectness,
                                              gt_instances, img_meta,
                                              gt_instances_ignore)
        ignored = ignored_bboxes_of(gt_instances_ignore, img_meta)
        if ignored is None:
            return targets
        foreground, cls_t, obj_target, *rest = targets
        centres = priors[:, :2] + priors[:, 2:] * 0.5
        mask = ignore_mask(centres, ignored, 'point') & ~foreground
        obj_target = obj_target.clone()
        obj_target[mask] = -1  # IgnoreWeightedLoss: weight 0, target 0
        return (foreground, cls_t, obj_target, *rest)


class _IgnoreQueriesMixin:
    """The ignore rule for DETR-style heads (see the module docstring).

    Their ``loss`` keeps only the valid GT, so the ignored boxes travel in
    the img metas (:func:`stash_ignored`) to ``_get_targets_single``.
    """

    def __init__(self, *args, ignore_iou_thr: float = 0.3, **kwargs) -> None:
        bg_cls_weight = None
        if DETRHead in type(self).__bases__:
            # DETRHead turns ``class_weight`` / ``bg_cls_weight`` into a
            # per-class weight only when ``self.__class__ is DETRHead``
            kwargs['loss_cls'], bg_cls_weight = _detr_class_weight(
                kwargs.get('loss_cls'), kwargs.get('num_classes', args[0]
                                                   if args else None))
        super().__init__(*args, **kwargs)
        if bg_cls_weight is not None:
            self.bg_cls_weight = bg_cls_weight
        self.ignore_iou_thr = ignore_iou_thr

    def loss(self, *args, **kwargs):
        samples = kwargs.get('batch_data_samples', None)
        if samples is None:
            import inspect
            samples = inspect.signature(super().loss).bind(
                *args, **kwargs).arguments['batch_data_samples']
        with stash_ignored(samples):
            return super().loss(*args, **kwargs)

    def _get_targets_single(self, cls_score, bbox_pred, gt_instances,
                            img_meta):
        targets = super()._get_targets_single(cls_score, bbox_pred,
                                              gt_instances, img_meta)
        ignored = ignored_bboxes_of(None, img_meta)
        if ignored is None:
            return targets
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, \
            neg_inds = targets
        img_h, img_w = img_meta['img_shape']
        factor = bbox_pred.new_tensor([img_w, img_h, img_w, img_h])
        boxes = bbox_cxcywh_to_xyxy(bbox_pred.detach()) * factor
        mask = ignore_mask(boxes, ignored, 'pred', self.ignore_iou_thr)
        mask[pos_inds] = False  # matched to a valid GT: stays positive
        label_weights = label_weights.clone()
        label_weights[mask] = 0
        neg_inds = neg_inds[~mask[neg_inds]]
        return (labels, label_weights, bbox_targets, bbox_weights, pos_inds,
                neg_inds)


def _detr_class_weight(loss_cls, num_classes):
    """DETRHead's ``class_weight`` / ``bg_cls_weight`` handling of its
    ``loss_cls`` config (mmdet 3.3.0 ``DETRHead.__init__``), for the
    subclass, which mmdet skips."""
    if loss_cls is None or loss_cls.get('class_weight') is None:
        return loss_cls, None
    loss_cls = dict(loss_cls)
    class_weight = loss_cls['class_weight']
    if not isinstance(class_weight, float):
        return loss_cls, None  # already a per-class weight
    bg_cls_weight = loss_cls.pop('bg_cls_weight', class_weight)
    weight = torch.ones(num_classes + 1) * class_weight
    weight[num_classes] = bg_cls_weight  # the no-object class is last
    loss_cls['class_weight'] = weight
    return loss_cls, bg_cls_weight


def _query_head(base):
    cls = type(
        f'Sniper{base.__name__}', (_IgnoreQueriesMixin, base), {
            '__doc__':
            f""":class:`{base.__name__}` that ignores the queries lying on
    ignored GT: a query not matched to a valid GT whose predicted box has
    IoU > ``ignore_iou_thr`` (default 0.3) with an ignored box gets zero
    classification weight and is no negative.

    Args:
        ignore_iou_thr (float): The IoU threshold. Defaults to 0.3.
        **kwargs: Arguments of :class:`{base.__name__}`.
    """,
            '__module__': __name__
        })
    return MODELS.register_module(module=cls)


SniperDETRHead = _query_head(DETRHead)
SniperConditionalDETRHead = _query_head(ConditionalDETRHead)
SniperDABDETRHead = _query_head(DABDETRHead)
SniperDeformableDETRHead = _query_head(DeformableDETRHead)
SniperDINOHead = _query_head(DINOHead)
