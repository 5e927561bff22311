from typing import Optional

from mmdet.models.task_modules.assigners import AssignResult, MaxIoUAssigner
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData


@TASK_UTILS.register_module()
class SniperMaxIoUAssigner(MaxIoUAssigner):
    """MaxIoUAssigner that ignores priors overlapping ignored GT in IoU mode.

    In a SNIPER chip the GT that are not valid for the chip (out of the
    chip scale's range, or assigned to another chip) are ignored instances.
    As in the reference ``anchor_worker`` (SNIPER
    ``lib/data_utils/data_workers.py``), a prior whose max IoU with any
    ignored box is greater than ``ignore_iou_thr`` is ignored (``gt_inds``
    -1, neither positive nor negative).

    The ignore rule is applied last and overrides positives: the reference
    first labels negatives, then the best prior of each GT, then the priors
    above the positive threshold, and only then sets
    ``labels[max_overlapsn > 0.3] = -1``. So an ignored prior can not be a
    positive of a valid GT, even its best match, and the low-quality match of
    a valid GT is searched among all priors (ignored ones included), as in
    the reference. With no valid GT, every prior is negative except the
    ignored ones.

    mmdet's ``ignore_iof_thr`` (intersection over foreground) still works on
    top of this if set.

    Args:
        ignore_iou_thr (float): IoU threshold with ignored boxes above which
            a prior is ignored. Values <= 0 disable the rule.
            Defaults to 0.3.
        **kwargs: Arguments of :class:`MaxIoUAssigner` (``pos_iou_thr``,
            ``neg_iou_thr``, ``gpu_assign_thr``, ...).
    """

    def __init__(self, *args, ignore_iou_thr: float = 0.3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ignore_iou_thr = ignore_iou_thr

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign GT to priors, then ignore priors near ignored GT.

        Args:
            pred_instances (:obj:`InstanceData`): Has ``priors`` (n, 4).
            gt_instances (:obj:`InstanceData`): Valid GT with ``bboxes`` and
                ``labels``.
            gt_instances_ignore (:obj:`InstanceData`, optional): Ignored
                (invalid) GT with ``bboxes``. Defaults to None.

        Returns:
            :obj:`AssignResult`: The assign result; ignored priors have
            ``gt_inds`` -1 and ``labels`` -1.
        """
        assign_result = super().assign(pred_instances, gt_instances,
                                       gt_instances_ignore, **kwargs)
        if self.ignore_iou_thr <= 0 or gt_instances_ignore is None:
            return assign_result
        ignore_bboxes = get_box_tensor(gt_instances_ignore.bboxes)
        priors = get_box_tensor(pred_instances.priors)
        if ignore_bboxes.shape[0] == 0 or priors.shape[0] == 0:
            return assign_result

        # like MaxIoUAssigner, compute overlaps on CPU when there are many
        num_boxes = max(gt_instances.bboxes.shape[0], ignore_bboxes.shape[0])
        if 0 < self.gpu_assign_thr < num_boxes:
            priors, ignore_bboxes = priors.cpu(), ignore_bboxes.cpu()
        ignore_overlaps = self.iou_calculator(
            priors, ignore_bboxes.to(priors.device), mode='iou')
        ignored = ignore_overlaps.max(dim=1).values > self.ignore_iou_thr
        ignored = ignored.to(assign_result.gt_inds.device)
        assign_result.gt_inds[ignored] = -1
        if assign_result.labels is not None:
            assign_result.labels[ignored] = -1
        return assign_result
