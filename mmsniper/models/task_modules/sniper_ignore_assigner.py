# Copyright (c) mmsniper contributors. All rights reserved.
import inspect
from typing import Optional

from mmdet.models.task_modules.assigners import AssignResult
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import get_box_tensor

from ..ignore import KINDS, ignore_mask, ignored_bboxes_of


@TASK_UTILS.register_module()
class SniperIgnoreAssigner:
    """Any mmdet assigner, plus the SNIPER ignore rule.

    The wrapped ``assigner`` assigns the priors to the chip's valid GT as it
    always does (so no prior becomes a positive of an ignored GT); then the
    priors lying on an ignored GT (see :func:`mmsniper.models.ignore.
    ignore_mask`) get ``gt_inds`` -1 (``labels`` -1): mmdet's samplers then
    put them in neither ``pos_inds`` nor ``neg_inds``, and the heads that
    build label weights from those (``AnchorHead``, ATSS, GFL, TOOD, DDOD,
    PAA, RTMDet, Sparse R-CNN's ``DIIHead`` and every RoI head) give them
    zero classification weight.

    Any positional or keyword signature of the wrapped assigner's
    ``assign`` is accepted (``ATSSAssigner`` takes ``num_level_priors``,
    ``TaskAlignedAssigner`` ``alpha`` and ``beta``); the ignored GT come
    from ``gt_instances_ignore`` or, where the caller passes none (Sparse
    R-CNN), from ``img_meta`` (:func:`mmsniper.models.ignore.
    stash_ignored`).

    Args:
        assigner (dict): Config of the wrapped assigner.
        kind (str): How a prior lies on an ignored box: ``'box'`` (anchors
            and proposals, IoU), ``'point'`` (point priors ``x, y, ...``,
            inside the box) or ``'pred'`` (``pred_instances.bboxes``, IoU).
            Defaults to ``'box'``.
        ignore_iou_thr (float): IoU threshold of ``'box'`` and ``'pred'``.
            Defaults to 0.3 (the reference's RPN value).
        override_positives (bool, optional): Whether a positive of a valid
            GT lying on an ignored GT is ignored too. The reference does so
            for anchors (its ``labels[max_overlapsn > 0.3] = -1`` comes
            last); for points (a valid object inside a large ignored one)
            and matched queries it would remove the valid GT's positives.
            Defaults to None: True for ``'box'``, False otherwise.
    """

    def __init__(self,
                 assigner: dict,
                 kind: str = 'box',
                 ignore_iou_thr: float = 0.3,
                 override_positives: Optional[bool] = None) -> None:
        if kind not in KINDS:
            raise ValueError(f'SniperIgnoreAssigner: kind must be one of '
                             f'{KINDS}, got {kind!r}')
        if isinstance(assigner, dict) and assigner.get('type') in (
                'SniperIgnoreAssigner', SniperIgnoreAssigner):
            raise ValueError('SniperIgnoreAssigner: the wrapped assigner is '
                             'itself a SniperIgnoreAssigner')
        self.assigner = TASK_UTILS.build(assigner)
        self.kind = kind
        self.ignore_iou_thr = ignore_iou_thr
        self.override_positives = (kind == 'box' if override_positives is None
                                   else override_positives)
        self._signature = inspect.signature(self.assigner.assign)

    def __getattr__(self, name):
        # heads read attributes of their assigner (e.g. ``iou_calculator``)
        if name == 'assigner':
            raise AttributeError(name)
        return getattr(self.assigner, name)

    def assign(self, *args, **kwargs) -> AssignResult:
        """Assign with the wrapped assigner, then ignore priors on ignored
        GT. Takes the wrapped assigner's arguments."""
        result = self.assigner.assign(*args, **kwargs)
        bound = self._signature.bind_partial(*args, **kwargs).arguments
        extra = bound.get('kwargs', {})
        img_meta = bound.get('img_meta', extra.get('img_meta'))
        ignored = ignored_bboxes_of(
            bound.get('gt_instances_ignore',
                      extra.get('gt_instances_ignore')), img_meta)
        if ignored is None:
            return result
        pred_instances = bound.get('pred_instances', extra.get(
            'pred_instances'))
        if self.kind == 'pred':
            locations = get_box_tensor(pred_instances.bboxes)
        else:
            locations = get_box_tensor(pred_instances.priors)
        mask = ignore_mask(locations, ignored, self.kind,
                           self.ignore_iou_thr).to(result.gt_inds.device)
        if not self.override_positives:
            mask &= result.gt_inds <= 0
        result.gt_inds[mask] = -1
        if result.labels is not None:
            result.labels[mask] = -1
        return result

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(assigner={self.assigner!r}, '
                f'kind={self.kind!r}, ignore_iou_thr={self.ignore_iou_thr}, '
                f'override_positives={self.override_positives})')
