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
#: Key under which it hands over the GT outside the chip, clipped onto the
#: chip border (zero width or height, chip px).
FOCUS_OUTSIDE_KEY = 'focus_gt_outside'


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
    - focus_gt_outside (np.ndarray): the GT outside the chip from
      ``SniperChipCrop`` (with ``outside_gt='border'``).
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
        outside_gt (str): ``'drop'``: only the GT pieces inside the chip
            make labels. ``'border'``: the reference's ``gen_mask`` input
            (``lib/data_utils/data_workers.py``): every GT of the image,
            rounded to whole chip px and clipped to ``[0, chip_w - 1] x [0,
            chip_h - 1]``, so a GT outside the chip collapses onto its
            border and, of sqrt-area 0, marks the border cells it projects
            onto as ignored (-1). (The reference never loads crowd boxes:
            add ``DropIgnoredInstances`` for that.) Only with
            ``boxes='chip'``. Defaults to 'drop'.
    """

    def __init__(self,
                 stride: int = 16,
                 positive_range: Tuple[float, float] = (5, 64),
                 ignore_upper: float = 90,
                 boxes: str = 'chip',
                 outside_gt: str = 'drop') -> None:
        if boxes not in ('chip', 'gt'):
            raise ValueError(
                f"FocusPixelLabels: boxes must be 'chip' or 'gt', got "
                f'{boxes!r}')
        if outside_gt not in ('drop', 'border'):
            raise ValueError(
                "FocusPixelLabels: outside_gt must be 'drop' or 'border', "
                f'got {outside_gt!r}')
        if outside_gt == 'border' and boxes != 'chip':
            raise ValueError(
                "FocusPixelLabels: outside_gt='border' needs boxes='chip' "
                '(a whole image has no GT outside it)')
        self.boxes = boxes
        self.outside_gt = outside_gt
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
            if self.outside_gt == 'border':
                if FOCUS_OUTSIDE_KEY not in results:
                    raise KeyError(
                        f"FocusPixelLabels(outside_gt='border') needs "
                        f'{FOCUS_OUTSIDE_KEY!r} (set by SniperChipCrop) for '
                        f"image {results.get('img_path', '?')!r}")
                boxes = np.concatenate([
                    np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
                    np.asarray(results[FOCUS_OUTSIDE_KEY],
                               dtype=np.float64).reshape(-1, 4)
                ])
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if self.boxes == 'chip' and results.get('flip', False):
            boxes = flip_boxes(boxes, img_shape,
                               results.get('flip_direction', 'horizontal'))
        if self.outside_gt == 'border':
            # data_workers.py gen_mask input: clip_boxes(np.round(gt *
            # scale), im_info) with im_info the 512 px chip: [0, 511]
            last_x, last_y = size[1] - 1, size[0] - 1
            boxes = np.clip(
                np.round(boxes), 0,
                np.array([last_x, last_y, last_x, last_y], dtype=np.float64))
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
                f'ignore_upper={self.ignore_upper}, boxes={self.boxes!r}, '
                f'outside_gt={self.outside_gt!r})')


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
