# Copyright (c) mmsniper contributors. All rights reserved.
import torch
from mmdet.models.roi_heads import SparseRoIHead
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_tensor

from ..dense_heads.sniper_ignore_heads import weighted_loss
from ..ignore import ignore_mask, ignored_bboxes_of, stash_ignored


class _MarkingAssigner:
    """Calls a stage's assigner and records, per image, the proposals that
    are not matched to a valid GT and lie on an ignored one."""

    def __init__(self, assigner, loss, iou_thr: float) -> None:
        self.assigner = assigner
        self.loss = loss
        self.iou_thr = iou_thr
        self.masks = []

    def assign(self, pred_instances, gt_instances, gt_instances_ignore=None,
               img_meta=None, **kwargs):
        result = self.assigner.assign(
            pred_instances=pred_instances,
            gt_instances=gt_instances,
            gt_instances_ignore=gt_instances_ignore,
            img_meta=img_meta,
            **kwargs)
        boxes = get_box_tensor(pred_instances.bboxes)
        mask = ignore_mask(boxes, ignored_bboxes_of(None, img_meta), 'pred',
                           self.iou_thr)
        self.masks.append(mask & (result.gt_inds.to(mask.device) <= 0))
        # DIIHead concatenates the images' proposals in this order
        self.loss.keep = (~torch.cat(self.masks)).float()
        return result


@MODELS.register_module()
class SniperSparseRoIHead(SparseRoIHead):
    """:class:`SparseRoIHead` (Sparse R-CNN, QueryInst) that ignores the
    proposals lying on ignored GT.

    mmdet's ``bbox_loss`` drops the ignored GT, and ``DIIHead`` needs every
    proposal to be a positive or a negative. So, at each stage, a proposal
    not matched to a valid GT (by the stage's ``HungarianAssigner``) whose
    box has IoU > ``ignore_iou_thr`` with an ignored box stays a negative
    for the sampler but gets zero weight in the stage's ``loss_cls``.

    Args:
        ignore_iou_thr (float): The IoU threshold. Defaults to 0.3.
        **kwargs: Arguments of :class:`SparseRoIHead`.
    """

    def __init__(self, *args, ignore_iou_thr: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ignore_iou_thr = ignore_iou_thr

    def loss(self, x, rpn_results_list, batch_data_samples):
        with stash_ignored(batch_data_samples):
            return super().loss(x, rpn_results_list, batch_data_samples)

    def bbox_loss(self, stage, *args, **kwargs):
        assigner = self.bbox_assigner[stage]
        with weighted_loss(self.bbox_head[stage], 'loss_cls') as loss:
            self.bbox_assigner[stage] = _MarkingAssigner(
                assigner, loss, self.ignore_iou_thr)
            try:
                return super().bbox_loss(stage, *args, **kwargs)
            finally:
                self.bbox_assigner[stage] = assigner
