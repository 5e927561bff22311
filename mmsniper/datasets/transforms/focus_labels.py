# Copyright (c) mmsniper contributors. All rights reserved.
"""FocusPixel labels of a training chip (AutoFocus, spec section 7)."""
import math
from typing import Optional, Tuple

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import PixelData

from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS
from ...chips.focus import focus_pixel_labels

#: Key under which :class:`SniperChipCrop` hands over every GT of the chip
#: after scaling and clipping, before the small-piece filter (chip px).
FOCUS_BOXES_KEY = 'focus_gt_bboxes'


def flip_boxes(boxes: np.ndarray, img_shape: Tuple[int, int],
               direction: str) -> np.ndarray:
    """``(N, 4)`` xyxy boxes flipped inside an ``(h, w)`` image, as mmdet's
    ``RandomFlip`` flips ``gt_bboxes``."""
    height, width = img_shape[:2]
    out = boxes.copy()
    if direction in ('horizontal', 'diagonal'):
        out[:, 0] = width - boxes[:, 2]
        out[:, 2] = width - boxes[:, 0]
    if direction in ('vertical', 'diagonal'):
        out[:, 1] = height - boxes[:, 3]
        out[:, 3] = height - boxes[:, 1]
    if direction not in ('horizontal', 'vertical', 'diagonal'):
        raise ValueError(f'unknown flip_direction {direction!r}')
    return out


@TRANSFORMS.register_module()
class FocusPixelLabels(BaseTransform):
    """Add the FocusPixel label map of a training chip.

    Place it after ``SniperChipCrop`` and ``RandomFlip`` (it flips the
    boxes itself when the chip was flipped) and pack with
    ``PackSniperDetInputs``. The map covers ``ceil(chip_size / stride)``
    cells from the chip's top-left corner, so cells of the padding around
    a chip smaller than the chip size are 0 (negative), as in the
    reference, where every chip is padded to the chip size. Labels follow
    :func:`mmsniper.chips.focus_pixel_labels`.

    Required Keys:

    - focus_gt_bboxes (np.ndarray): ``(N, 4)`` chip-px boxes from
      ``SniperChipCrop`` (with ``boxes='chip'``).
    - gt_bboxes (with ``boxes='gt'``): the image's boxes after ``Resize``
      and ``RandomFlip``, for full-image training (no chips, so nothing
      was filtered; the boxes are already flipped).
    - img_shape
    - chip_size (optional): ``(h, w)``; ``img_shape`` when absent.
    - flip (optional), flip_direction (optional)

    Added Keys:

    - gt_focus_map (np.ndarray): ``(H, W)`` int8 map of 1, 0 and -1.

    Args:
        stride (int): Cell size in chip px. Defaults to 16.
        positive_range (tuple[float, float]): sqrt-area band of the
            positive boxes, in chip px, exclusive. Defaults to (5, 64).
        ignore_upper (float): Boxes with sqrt-area in ``[hi, ignore_upper)``
            are ignored. Defaults to 90.
        boxes (str): ``'chip'``: the chip's boxes handed over by
            ``SniperChipCrop`` (SNIPER training); ``'gt'``: ``gt_bboxes`` of
            a whole resized image (training a focus head without chips).
            Defaults to 'chip'.
    """

    def __init__(self,
                 stride: int = 16,
                 positive_range: Tuple[float, float] = (5, 64),
                 ignore_upper: float = 90,
                 boxes: str = 'chip') -> None:
        if boxes not in ('chip', 'gt'):
            raise ValueError(
                f"FocusPixelLabels: boxes must be 'chip' or 'gt', got "
                f'{boxes!r}')
        self.boxes = boxes
        self.stride = stride
        self.positive_range = tuple(positive_range)
        self.ignore_upper = ignore_upper
        # validate the settings once, at build time
        focus_pixel_labels(
            np.zeros((0, 4)), (1, 1),
            stride=stride,
            positive_range=positive_range,
            ignore_upper=ignore_upper)

    def transform(self, results: dict) -> Optional[dict]:
        img_shape = results['img_shape'][:2]
        if self.boxes == 'gt':
            if 'gt_bboxes' not in results:
                raise KeyError(
                    "FocusPixelLabels(boxes='gt') needs 'gt_bboxes': put it "
                    "after dict(type='LoadAnnotations', with_bbox=True) and "
                    f"the resize of image {results.get('img_path', '?')!r}")
            gt = results['gt_bboxes']
            boxes = gt.tensor.numpy() if hasattr(gt, 'tensor') else gt
            size = img_shape  # already flipped by RandomFlip
        else:
            if FOCUS_BOXES_KEY not in results:
                raise KeyError(
                    f'FocusPixelLabels needs {FOCUS_BOXES_KEY!r} (set by '
                    "SniperChipCrop): put it after dict(type='SniperChipCrop')"
                    ' in the training pipeline')
            boxes = results[FOCUS_BOXES_KEY]
            size = results.get('chip_size', img_shape)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self.boxes == 'chip' and results.get('flip', False):
            boxes = flip_boxes(boxes, img_shape,
                               results.get('flip_direction', 'horizontal'))
        map_size = tuple(max(1, math.ceil(side / self.stride))
                         for side in size[:2])
        results['gt_focus_map'] = focus_pixel_labels(
            boxes,
            map_size,
            stride=self.stride,
            positive_range=self.positive_range,
            ignore_upper=self.ignore_upper)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(stride={self.stride}, '
                f'positive_range={self.positive_range}, '
                f'ignore_upper={self.ignore_upper}, boxes={self.boxes!r})')


@TRANSFORMS.register_module()
class PackSniperDetInputs(PackDetInputs):
    """``PackDetInputs`` that also packs ``gt_focus_map`` (when present) as
    the data sample's ``gt_focus_map`` (:class:`PixelData`, ``(1, H, W)``
    long tensor)."""

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        if 'gt_focus_map' in results:
            fmap = torch.from_numpy(
                np.ascontiguousarray(results['gt_focus_map'])).long()
            packed['data_samples'].gt_focus_map = PixelData(data=fmap[None])
        return packed
