from typing import List, Optional, Tuple

import torch
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.models.utils import unpack_gt_instances
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import InstanceList
from mmengine.structures import InstanceData
from torch import Tensor

from mmsniper.utils.progress import warn_once
from ..valid_range import in_valid_range


@MODELS.register_module()
class SniperRoIHead(StandardRoIHead):
    """StandardRoIHead that drops proposals outside the chip's valid range.

    In training, before assignment and sampling, the proposals of each image
    whose sqrt-area (chip px) is outside ``metainfo['chip_valid_range']``
    (``(lo, hi)``, -1 for an open side, ``lo <= sqrt(w * h) < hi``) are
    dropped, as the reference proposal-target op does. Without the key
    (warned once), or
    with ``filter_proposals_by_valid_range=False``, no proposal is dropped.
    :meth:`predict` is :class:`StandardRoIHead`'s: every proposal is kept.

    Two labellings of the remaining RoIs:

    - ``label_invalid_gt=False`` (default, the spec's rule): RoIs are
      labelled from the chip's valid GT (``gt_instances``); the invalid GT
      (``ignored_instances``) act only through the assigner (e.g.
      :class:`SniperMaxIoUAssigner` ignores RoIs near them); the sampler adds
      only the valid GT as RoIs (``add_gt_as_proposals``).
    - ``label_invalid_gt=True`` (the reference code's proposal-target op):
      RoIs are labelled from every GT of the chip, valid and invalid alike,
      so a RoI matched to an invalid GT is foreground of that GT's class;
      nothing is ignored (the assigner gets no ignored GT); and if the
      sampler adds GT as proposals, it is every chip GT whose sqrt-area is
      inside the chip's valid range (every chip GT when the range filter is
      off). The GT RoIs come first and keep ``pos_is_gt``. The sampler then
      samples as configured. Every ignored instance counts as a chip GT,
      crowd boxes included: drop those first
      (:class:`DropIgnoredInstances`) for the reference's handling.

    Args:
        filter_proposals_by_valid_range (bool): Whether to drop the
            out-of-range proposals in :meth:`loss`. Defaults to True.
        label_invalid_gt (bool): Label RoIs from the invalid GT too, as the
            reference code does. Defaults to False. Box heads only.
        **kwargs: Arguments of :class:`StandardRoIHead`.
    """

    def __init__(self,
                 *args,
                 filter_proposals_by_valid_range: bool = True,
                 label_invalid_gt: bool = False,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.filter_proposals_by_valid_range = filter_proposals_by_valid_range
        self.label_invalid_gt = label_invalid_gt
        if label_invalid_gt and self.with_mask:
            raise ValueError(
                'SniperRoIHead: label_invalid_gt=True is implemented for '
                'box heads only, not with a mask head')
        self.gt_rois_sampler = None
        if label_invalid_gt and self.train_cfg:
            # the GT RoIs are added here (in-range ones only), so the
            # sampler itself must not add the GT again
            self.gt_rois_sampler = TASK_UTILS.build(
                dict(self.train_cfg.sampler, add_gt_as_proposals=False),
                default_args=dict(context=self))

    def loss(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
             batch_data_samples: List[DetDataSample]) -> dict:
        """Drop out-of-range proposals, then compute the RoI losses.

        Args:
            x (tuple[Tensor]): Multi-level image features.
            rpn_results_list (list[:obj:`InstanceData`]): Proposals of each
                image, with ``bboxes``.
            batch_data_samples (list[:obj:`DetDataSample`]): Data samples;
                ``metainfo['chip_valid_range']`` is read when present.

        Returns:
            dict[str, Tensor]: Loss components.
        """
        if self.filter_proposals_by_valid_range:
            rpn_results_list = list(
                map(self._filter_proposals, rpn_results_list,
                    batch_data_samples))
        if not self.label_invalid_gt:
            return super().loss(x, rpn_results_list, batch_data_samples)

        assert len(rpn_results_list) == len(batch_data_samples)
        batch_gt_instances, batch_gt_instances_ignore, _ = \
            unpack_gt_instances(batch_data_samples)
        sampling_results = [
            self._sample_with_invalid_gt(rpn_results_list[i],
                                         batch_gt_instances[i],
                                         batch_gt_instances_ignore[i],
                                         batch_data_samples[i],
                                         [lvl_feat[i][None] for lvl_feat in x])
            for i in range(len(batch_data_samples))
        ]
        bbox_results = self.bbox_loss(x, sampling_results)
        return dict(bbox_results['loss_bbox'])

    def _valid_range(self, data_sample: DetDataSample):
        if not self.filter_proposals_by_valid_range:
            return None
        return data_sample.metainfo.get('chip_valid_range', None)

    def _filter_proposals(self, results, data_sample: DetDataSample):
        """Keep the proposals inside the sample's chip valid range."""
        valid_range = self._valid_range(data_sample)
        if valid_range is None:
            if not self.filter_proposals_by_valid_range:
                return results
            warn_once(
                'SniperRoIHead.no_valid_range',
                "SniperRoIHead: the data samples carry no 'chip_valid_range'"
                ', so proposals are not filtered by the valid range. Add '
                "'chip_valid_range' to PackDetInputs' meta_keys (e.g. "
                'meta_keys=mmsniper.datasets.transforms.chip_meta_keys()) '
                'after SniperChipCrop, or set filter_proposals_by_valid_range'
                '=False to silence this.')
            return results
        keep = in_valid_range(get_box_tensor(results.bboxes), valid_range)
        return results if bool(keep.all()) else results[keep]

    def _sample_with_invalid_gt(self, rpn_results: InstanceData,
                                gt_instances: InstanceData,
                                gt_instances_ignore: Optional[InstanceData],
                                data_sample: DetDataSample,
                                feats: List[Tensor]) -> SamplingResult:
        """Assign and sample one image's RoIs the reference way.

        Every GT of the chip (valid, then invalid) labels the RoIs; the
        in-range ones are prepended to the proposals as RoIs when the
        configured sampler adds GT.
        """
        proposals = get_box_tensor(rpn_results.bboxes)
        bboxes = [get_box_tensor(gt_instances.bboxes)]
        labels = [gt_instances.labels]
        if gt_instances_ignore is not None and len(gt_instances_ignore):
            bboxes.append(
                get_box_tensor(gt_instances_ignore.bboxes).to(proposals))
            labels.append(gt_instances_ignore.labels.to(labels[0]))
        chip_gt = InstanceData(
            bboxes=torch.cat(bboxes).to(proposals), labels=torch.cat(labels))

        num_gt_rois = 0
        if self.bbox_sampler.add_gt_as_proposals and len(chip_gt):
            gt_rois = chip_gt.bboxes[in_valid_range(
                chip_gt.bboxes, self._valid_range(data_sample))]
            num_gt_rois = len(gt_rois)
            proposals = torch.cat([gt_rois, proposals])

        rois = InstanceData(priors=proposals)
        assign_result = self.bbox_assigner.assign(rois, chip_gt, None)
        sampling_result = self.gt_rois_sampler.sample(
            assign_result, rois, chip_gt, feats=feats)
        sampling_result.pos_is_gt = (sampling_result.pos_inds
                                     < num_gt_rois).to(torch.uint8)
        return sampling_result
