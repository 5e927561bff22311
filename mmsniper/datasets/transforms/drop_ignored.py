# Copyright (c) mmsniper contributors. All rights reserved.
"""Drop ignored annotations (COCO crowd boxes) the way the reference does."""
import numpy as np
from mmcv.transforms import BaseTransform

from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class DropIgnoredInstances(BaseTransform):
    """Remove the instances flagged ``ignore_flag`` before they are loaded.

    mmdet's ``CocoDataset`` flags crowd boxes (``iscrowd=1``) with
    ``ignore_flag``; a SNIPER chip then keeps them as ignored GT (no anchor
    or RoI near them is trained). The reference code instead never loads
    crowd annotations, so their regions are trained as background. Put this
    transform before ``LoadAnnotations`` to do the same: the flagged entries
    leave ``results['instances']`` and the chip's ``valid_gt`` indices are
    renumbered to the remaining instances. Nothing else changes; with no
    flagged instance the results are returned as they are.

    Required Keys:

    - instances (list[dict]) (optional)
    - sniper_chip (dict) (optional)
    - img_path (optional, used in error messages)

    Modified Keys:

    - instances
    - sniper_chip (``valid_gt``, a new dict)
    """

    def transform(self, results: dict) -> dict:
        """Drop the ignored instances and renumber ``valid_gt``.

        Args:
            results (dict): Result dict from the dataset.

        Returns:
            dict: The results without ignored instances.
        """
        instances = results.get('instances', None)
        if not instances:
            return results
        keep = np.array(
            [not inst.get('ignore_flag', 0) for inst in instances], dtype=bool)
        if keep.all():
            return results
        chip = results.get('sniper_chip', None)
        if chip is not None and chip.get('valid_gt', None) is not None:
            valid_gt = np.asarray(chip['valid_gt'], dtype=np.int64)
            in_bounds = (valid_gt >= 0) & (valid_gt < len(keep))
            if not (in_bounds.all() and keep[valid_gt].all()):
                raise ValueError(
                    f'{self.__class__.__name__}: '
                    f'{results.get("img_path", "image")}: '
                    f"sniper_chip['valid_gt'] {valid_gt.tolist()} names an "
                    f'ignored or missing instance (of {len(keep)}, ignored '
                    f'{np.flatnonzero(~keep).tolist()})')
            results['sniper_chip'] = dict(
                chip, valid_gt=(np.cumsum(keep) - 1)[valid_gt])
        results['instances'] = [
            inst for inst, k in zip(instances, keep) if k
        ]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
