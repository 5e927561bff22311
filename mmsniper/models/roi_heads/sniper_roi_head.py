from typing import List, Tuple

from mmdet.models.roi_heads import StandardRoIHead
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import get_box_tensor
from mmdet.utils import InstanceList
from torch import Tensor

from mmsniper.utils.progress import warn_once
from ..valid_range import in_valid_range


@MODELS.register_module()
class SniperRoIHead(StandardRoIHead):
    """StandardRoIHead that drops proposals outside the chip's valid range.

    In training, before assignment and sampling, the proposals of each image
    whose sqrt-area (chip px) is outside ``metainfo['chip_valid_range']``
    (``(lo, hi)``, -1 for an open side, ``lo <= sqrt(w * h) < hi``) are
    dropped, as the reference proposal-target op does. GT are still added as
    proposals by the sampler (``add_gt_as_proposals``); only the valid GT of
    the chip are ``gt_instances``, so only they are added. Without the key
    (warned once), or with ``filter_proposals_by_valid_range=False``, and at
    test time, it behaves as :class:`StandardRoIHead`.

    Args:
        filter_proposals_by_valid_range (bool): Whether to drop the
            out-of-range proposals in :meth:`loss`. Defaults to True.
        **kwargs: Arguments of :class:`StandardRoIHead`.
    """

    def __init__(self,
                 *args,
                 filter_proposals_by_valid_range: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.filter_proposals_by_valid_range = filter_proposals_by_valid_range

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
        return super().loss(x, rpn_results_list, batch_data_samples)

    @staticmethod
    def _filter_proposals(results, data_sample: DetDataSample):
        """Keep the proposals inside the sample's chip valid range."""
        valid_range = data_sample.metainfo.get('chip_valid_range', None)
        if valid_range is None:
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
