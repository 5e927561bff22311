# Copyright (c) mmsniper contributors. All rights reserved.
"""Cut one SNIPER chip out of a loaded image (spec sections 4 and 5)."""
import math
from numbers import Number
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes, HorizontalBoxes
from mmdet.structures.bbox.box_type import autocast_box_type
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from ..chip_settings import warn_missing_chip

#: Keys that :class:`SniperChipCrop` adds; pass them to ``PackDetInputs``.
SNIPER_CHIP_META_KEYS = ('chip_offset', 'chip_scale', 'chip_valid_range',
                         'chip_scale_idx', 'chip_is_negative')

_CV2_INTERP = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'lanczos': cv2.INTER_LANCZOS4,
}
# cv2.resize's INTER_NEAREST is not centre aligned (it floors dst * ratio);
# INTER_NEAREST_EXACT is, and matches what cv2.warpAffine does.
_CV2_RESIZE_INTERP = dict(
    _CV2_INTERP,
    nearest=getattr(cv2, 'INTER_NEAREST_EXACT', cv2.INTER_NEAREST))
# Extra source pixels kept around the sampled area: the widest kernel
# (Lanczos-4) reads 4 neighbours on each side.
_ROI_MARGIN = 5
# cv2.warpAffine / cv2.resize handle at most this many channels at once.
_MAX_WARP_CHANNELS = 4


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def resample_region(img: np.ndarray,
                    origin: Tuple[float, float],
                    scale: float,
                    out_size: Tuple[int, int],
                    interpolation: str = 'bilinear') -> np.ndarray:
    """Resample ``img`` so that the continuous point ``origin`` (in ``img``
    px, pixel ``i`` covering ``[i, i + 1)``) lands on output ``(0, 0)`` and
    distances are multiplied by ``scale``.

    Output pixel ``u`` shows input location ``origin + (u + 0.5) / scale``
    (centre to centre). When ``origin`` is integer and ``out_size / scale``
    is a whole number of input pixels this is exactly
    ``cv2.resize(img[crop], out_size)``, which is what is used then;
    otherwise an equivalent :func:`cv2.warpAffine` on the few input pixels
    around the region (``BORDER_REPLICATE`` at the image edges, like
    ``cv2.resize``).

    Args:
        img (np.ndarray): (H, W) or (H, W, C) image.
        origin (tuple[float, float]): (x, y) of the output origin in ``img``
            px.
        scale (float): Output px per input px.
        out_size (tuple[int, int]): (w, h) of the output.
        interpolation (str): 'nearest', 'bilinear', 'bicubic' or 'lanczos'.

    Returns:
        np.ndarray: (h, w[, C]) array of ``img``'s dtype.
    """
    out_w, out_h = out_size
    ox, oy = origin
    img_h, img_w = img.shape[:2]
    rx, ry = _round_half_up(ox), _round_half_up(oy)
    cw, ch = _round_half_up(out_w / scale), _round_half_up(out_h / scale)
    if (abs(ox - rx) < 1e-6 and abs(oy - ry) < 1e-6
            and abs(cw * scale - out_w) < 1e-3
            and abs(ch * scale - out_h) < 1e-3 and rx >= 0 and ry >= 0
            and rx + cw <= img_w and ry + ch <= img_h and cw > 0 and ch > 0):
        crop = img[ry:ry + ch, rx:rx + cw]
        if (cw, ch) == (out_w, out_h):
            return crop.copy()
        return _apply_per_channel_group(
            crop, lambda a: cv2.resize(
                a, (out_w, out_h),
                interpolation=_CV2_RESIZE_INTERP[interpolation]))

    # Input index coordinates (pixel centres at integers) sampled by the
    # first and last output pixels.
    x_lo = ox + 0.5 / scale - 0.5
    x_hi = ox + (out_w - 0.5) / scale - 0.5
    y_lo = oy + 0.5 / scale - 0.5
    y_hi = oy + (out_h - 0.5) / scale - 0.5
    x0 = min(max(int(math.floor(x_lo)) - _ROI_MARGIN, 0), img_w - 1)
    y0 = min(max(int(math.floor(y_lo)) - _ROI_MARGIN, 0), img_h - 1)
    x1 = max(min(int(math.ceil(x_hi)) + _ROI_MARGIN + 1, img_w), x0 + 1)
    y1 = max(min(int(math.ceil(y_hi)) + _ROI_MARGIN + 1, img_h), y0 + 1)
    roi = img[y0:y1, x0:x1]
    # u = scale * (x_roi + x0 - ox + 0.5) - 0.5 in index coordinates.
    matrix = np.array([[scale, 0., scale * (x0 - ox + 0.5) - 0.5],
                       [0., scale, scale * (y0 - oy + 0.5) - 0.5]],
                      dtype=np.float64)
    return _apply_per_channel_group(
        roi, lambda a: cv2.warpAffine(
            a,
            matrix, (out_w, out_h),
            flags=_CV2_INTERP[interpolation],
            borderMode=cv2.BORDER_REPLICATE))


def _apply_per_channel_group(img: np.ndarray, func) -> np.ndarray:
    """Apply a cv2 function, splitting images with many channels."""
    if img.ndim == 2:
        return func(img)
    channels = img.shape[2]
    if channels <= _MAX_WARP_CHANNELS:  # cv2 takes row-strided views as is
        out = func(img)
        return out[..., None] if out.ndim == 2 else out
    parts = []
    for start in range(0, channels, _MAX_WARP_CHANNELS):
        part = np.ascontiguousarray(img[..., start:start + _MAX_WARP_CHANNELS])
        out = func(part)
        if out.ndim == 2:
            out = out[..., None]
        parts.append(out)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)


@TRANSFORMS.register_module()
class SniperChipCrop(BaseTransform):
    """Turn a whole-image sample into one SNIPER chip.

    The chip dataset wrapper puts ``results['sniper_chip']`` (a dict with
    ``box`` (xyxy, original px), ``scale_factor`` ``s``, ``scale_idx``,
    ``valid_range`` (sqrt-area, original px, -1 = open), ``valid_gt``
    (indices of the instances valid in this chip), ``chip_size`` (h, w) and
    ``is_negative``) before the pipeline runs. Place this transform after
    ``LoadImageFromFile`` (or :class:`LoadSniperChipFromFile`),
    ``LoadAnnotations`` and, if used, ``LoadProposals``, and before every
    other geometric transform. It then:

    - cuts the chip region out of ``img`` and resizes it by ``s`` to
      ``(round((y2 - y1) * s), round((x2 - x1) * s))`` (never the whole
      image). The region is sampled exactly (sub-pixel chip corners
      included): with an integer corner and an integer-sized result it is
      ``cv2.resize`` of the crop, otherwise the equivalent
      ``cv2.warpAffine``. The result is NOT padded: like every mmdet
      transform it leaves ``img.shape[:2] == img_shape``, so that later
      geometric transforms (``RandomFlip``) see the chip's content only.
      Batch padding (to ``chip_size``, as the reference pads every chip)
      belongs in the model's data preprocessor, after normalisation, e.g.
      ``DetDataPreprocessor(batch_augments=[dict(type='BatchFixedSizePad',
      size=(chip_h, chip_w))])``: 0 there is the pixel mean, the
      reference's pad;
    - maps ``gt_bboxes`` into the chip with the box type's own
      ``translate_``, ``rescale_`` and ``clip_`` (``(b - (x1, y1)) * s``,
      clipped to the resized region) and drops the pieces narrower or
      lower than ``min_gt_size`` chip px (a piece of exactly
      ``min_gt_size`` is kept), with their labels, ignore flags, masks,
      instance ids and any other per-instance ``gt_*`` array. Only
      axis-aligned boxes (``HorizontalBoxes`` or an (N, 4) array) are
      supported: clipping a rotated or quadrilateral box to the chip is not
      a box operation, so other box types raise a ``TypeError``;
    - marks as ignored (``gt_ignore_flags=True``) every surviving GT whose
      index (row of ``gt_bboxes`` as ``LoadAnnotations`` produced it) is
      not in ``valid_gt``; a GT already ignored (e.g. ``iscrowd``) stays
      ignored. Ignored boxes stay in ``gt_bboxes`` as in mmdet, so that
      ``PackDetInputs`` puts them in ``ignored_instances``;
    - maps ``proposals`` the same way, dropping those left empty;
    - hands every GT piece left in the chip, before the ``min_gt_size``
      filter, to :class:`FocusPixelLabels` as ``focus_gt_bboxes`` ((N, 4)
      float64 chip px).

    If ``results`` has no ``sniper_chip`` (or it is None), e.g. in test mode
    or for a plain dataset, the transform returns ``results`` unchanged, so
    one pipeline can serve both.

    If :class:`LoadSniperChipFromFile` decoded only part of the image (at a
    reduced JPEG scale), ``results['sniper_chip_img_origin']`` (x0, y0) and
    ``results['sniper_chip_img_scale']`` f say that ``img`` px
    ``= (orig px - (x0, y0)) * f``; the output geometry (boxes, shapes,
    metas) is the same as with the full image, only pixel values may
    differ slightly.

    No randomness is involved (the wrapper chose the chip), hence no
    ``cache_randomness``.

    Required Keys:

    - img
    - sniper_chip (optional; without it nothing happens)
    - img_path (optional, used in error messages)
    - ori_shape (required when ``img`` is a pre-cropped region)
    - sniper_chip_img_origin (optional)
    - sniper_chip_img_scale (optional)
    - gt_bboxes (HorizontalBoxes[torch.float32] | np.float32) (optional)
    - gt_bboxes_labels (np.int64) (optional)
    - gt_ignore_flags (bool) (optional)
    - gt_masks (BitmapMasks | PolygonMasks) (optional)
    - gt_seg_map (np.uint8) (optional)
    - proposals (np.float32 | HorizontalBoxes) (optional)
    - proposals_scores (np.float32) (optional)
    - homography_matrix (optional)
    - scale_factor (optional)

    Modified Keys:

    - img
    - img_shape
    - gt_bboxes (optional)
    - gt_bboxes_labels (optional)
    - gt_ignore_flags (optional; added if missing while gt_bboxes exists)
    - gt_masks (optional)
    - gt_seg_map (optional)
    - gt_instances_ids and any other per-instance ``gt_*`` (optional)
    - proposals (optional)
    - proposals_scores (optional)
    - homography_matrix (added if missing)
    - scale_factor (added if missing)
    - sniper_chip_img_origin, sniper_chip_img_scale (removed)

    Added Keys:

    - chip_offset (tuple[float, float]): chip corner (x1, y1), original px.
    - chip_scale (float): ``s``, chip px per original px.
    - chip_valid_range (tuple[float, float]): ``(lo * s, hi * s)``,
      sqrt-area in chip px, -1.0 kept for an open side.
    - chip_scale_idx (int): index of the chip's training scale.
    - chip_is_negative (bool): whether the chip is a negative chip.
    - chip_size (tuple[int, int]): ``(h, w)`` the chip is padded to.
    - focus_gt_bboxes (np.ndarray): every GT piece in the chip, before the
      ``min_gt_size`` filter (chip px), for :class:`FocusPixelLabels`.
    - focus_gt_outside (np.ndarray): the GT outside the chip, clipped onto
      its border (zero width or height, chip px), for
      ``FocusPixelLabels(outside_gt='border')``.

    ``img_shape`` and ``img.shape[:2]`` become the resized region (h, w),
    at most ``chip_size`` (h, w); masks and ``gt_seg_map`` take the same
    size. ``scale_factor`` is multiplied by ``s``
    (``(w_scale, h_scale)``), ``homography_matrix`` becomes
    ``S @ T @ H_old`` (original px -> chip px), ``ori_shape`` is kept.
    ``results['sniper_chip']`` itself is left in place.

    Args:
        min_gt_size (float): Clipped GT narrower or lower than this (chip
            px) are dropped; exactly ``min_gt_size`` is kept (spec: under
            10 px dropped; reference: ``ws >= 10`` kept). Defaults to 10.
        interpolation (str): 'nearest', 'bilinear', 'bicubic' or 'lanczos'
            (cv2). Masks and segmentation maps always use 'nearest'.
            Defaults to 'bilinear'.
        box_tol (float): How far (original px) the chip box may stick out of
            the image before it is an error; within it, the box is clipped
            to the image. Defaults to 1.0.
    """

    def __init__(self,
                 min_gt_size: float = 10,
                 interpolation: str = 'bilinear',
                 box_tol: float = 1.0) -> None:
        if interpolation not in _CV2_INTERP:
            raise ValueError(
                f'interpolation must be one of {sorted(_CV2_INTERP)}, '
                f'got {interpolation!r}')
        if min_gt_size < 0:
            raise ValueError(f'min_gt_size must be >= 0, got {min_gt_size}')
        if box_tol < 0:
            raise ValueError(f'box_tol must be >= 0, got {box_tol}')
        self.min_gt_size = min_gt_size
        self.interpolation = interpolation
        self.box_tol = box_tol

    # ------------------------------------------------------------------
    # parsing and validation
    # ------------------------------------------------------------------
    def _error(self, results: dict, field: str, msg: str) -> ValueError:
        return ValueError(f'{self.__class__.__name__}: bad {field} for image '
                          f"{results.get('img_path')!r}: {msg}")

    def _parse_chip(self, results: dict, chip: dict) -> dict:
        """Validate ``sniper_chip`` and work out the chip geometry."""
        if not isinstance(chip, dict):
            raise self._error(results, "results['sniper_chip']",
                              f'expected a dict, got {type(chip)}')
        for key in ('box', 'scale_factor', 'chip_size', 'valid_gt'):
            if key not in chip:
                raise self._error(results, f"sniper_chip['{key}']", 'missing')

        img = results['img']
        origin = results.pop('sniper_chip_img_origin', None)
        img_scale = results.pop('sniper_chip_img_scale', None)
        pre_cropped = origin is not None
        if pre_cropped:
            if results.get('ori_shape') is None:
                raise self._error(
                    results, "results['ori_shape']",
                    'needed to interpret a pre-cropped image '
                    '(sniper_chip_img_origin is set)')
            full_h, full_w = (int(v) for v in results['ori_shape'][:2])
        else:
            full_h, full_w = img.shape[:2]
            ori_shape = results.get('ori_shape')
            if ori_shape is not None and tuple(
                    ori_shape[:2]) != (full_h, full_w):
                raise self._error(
                    results, "results['img']",
                    f'image shape {(full_h, full_w)} differs from ori_shape '
                    f'{tuple(ori_shape[:2])}; SniperChipCrop must come '
                    'before any resizing transform')

        try:
            box = np.asarray(chip['box'], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as e:
            raise self._error(results, "sniper_chip['box']", str(e)) from e
        if box.shape != (4, ) or not np.isfinite(box).all():
            raise self._error(results, "sniper_chip['box']",
                              f'expected 4 finite numbers, got {chip["box"]}')
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (x2 > x1 and y2 > y1):
            raise self._error(results, "sniper_chip['box']",
                              f'degenerate box {box.tolist()}')
        tol = self.box_tol
        if (x1 < -tol or y1 < -tol or x2 > full_w + tol or y2 > full_h + tol):
            raise self._error(
                results, "sniper_chip['box']",
                f'box {box.tolist()} lies outside the image '
                f'(w={full_w}, h={full_h}) by more than {tol} px')
        x1, x2 = min(max(x1, 0.), full_w), min(max(x2, 0.), full_w)
        y1, y2 = min(max(y1, 0.), full_h), min(max(y2, 0.), full_h)
        if not (x2 > x1 and y2 > y1):
            raise self._error(results, "sniper_chip['box']",
                              f'box {box.tolist()} is empty inside the image')

        try:
            s = float(chip['scale_factor'])
        except (TypeError, ValueError) as e:
            raise self._error(results, "sniper_chip['scale_factor']",
                              str(e)) from e
        if not (math.isfinite(s) and s > 0):
            raise self._error(results, "sniper_chip['scale_factor']",
                              f'must be finite and > 0, got {s}')

        chip_size = chip['chip_size']
        if isinstance(chip_size, Number):
            chip_size = (chip_size, chip_size)
        try:
            chip_h, chip_w = (int(v) for v in chip_size)
        except (TypeError, ValueError) as e:
            raise self._error(results, "sniper_chip['chip_size']",
                              f'expected (h, w), got {chip_size}') from e
        if chip_h <= 0 or chip_w <= 0:
            raise self._error(results, "sniper_chip['chip_size']",
                              f'must be positive, got {chip_size}')

        exact_w, exact_h = (x2 - x1) * s, (y2 - y1) * s
        out_w = max(_round_half_up(exact_w), 1)
        out_h = max(_round_half_up(exact_h), 1)
        if exact_w > chip_w + 1 or exact_h > chip_h + 1:
            raise self._error(
                results, "sniper_chip['box']",
                f'box {box.tolist()} scaled by {s} is {exact_w:.2f}x'
                f'{exact_h:.2f} px (w x h), larger than chip_size '
                f'{(chip_h, chip_w)} (h, w)')
        out_w, out_h = min(out_w, chip_w), min(out_h, chip_h)

        # Where the chip region sits in the image we actually received.
        if pre_cropped:
            try:
                img_ox, img_oy = (float(v) for v in origin)
                f = 1.0 if img_scale is None else float(img_scale)
            except (TypeError, ValueError) as e:
                raise self._error(results, "results['sniper_chip_img_origin']",
                                  str(e)) from e
            if not (math.isfinite(f) and f > 0):
                raise self._error(results, "results['sniper_chip_img_scale']",
                                  f'must be finite and > 0, got {f}')
            cov_x2 = img_ox + img.shape[1] / f
            cov_y2 = img_oy + img.shape[0] / f
            ctol = tol + 1.0 / f
            if (x1 < img_ox - ctol or y1 < img_oy - ctol or x2 > cov_x2 + ctol
                    or y2 > cov_y2 + ctol):
                raise self._error(
                    results, "results['sniper_chip_img_origin']",
                    f'the pre-cropped image covers ({img_ox}, {img_oy}, '
                    f'{cov_x2}, {cov_y2}) original px, not the chip box '
                    f'{[x1, y1, x2, y2]}')
            src_origin = ((x1 - img_ox) * f, (y1 - img_oy) * f)
            src_scale = s / f
        else:
            src_origin = (x1, y1)
            src_scale = s

        valid_gt = np.asarray(chip['valid_gt'], dtype=np.int64).reshape(-1)
        valid_range = chip.get('valid_range', (-1, -1))
        if valid_range is None:
            valid_range = (-1, -1)
        try:
            lo, hi = (float(v) if v is not None else -1.0 for v in valid_range)
        except (TypeError, ValueError) as e:
            raise self._error(results, "sniper_chip['valid_range']",
                              f'expected (lo, hi), got {valid_range}') from e
        chip_range = (lo * s if lo >= 0 else -1.0, hi * s if hi >= 0 else -1.0)

        return dict(
            x1=x1,
            y1=y1,
            s=s,
            out_w=out_w,
            out_h=out_h,
            chip_h=chip_h,
            chip_w=chip_w,
            full_h=full_h,
            full_w=full_w,
            src_origin=src_origin,
            src_scale=src_scale,
            valid_gt=valid_gt,
            valid_range=chip_range,
            scale_idx=int(chip.get('scale_idx', 0)),
            is_negative=bool(chip.get('is_negative', False)))

    # ------------------------------------------------------------------
    # image-like data
    # ------------------------------------------------------------------
    def _crop_img(self, results: dict, geo: dict) -> None:
        img = resample_region(results['img'], geo['src_origin'],
                              geo['src_scale'], (geo['out_w'], geo['out_h']),
                              self.interpolation)
        if results['img'].ndim == 3 and img.ndim == 2:
            img = img[..., None]
        results['img'] = img
        results['img_shape'] = (geo['out_h'], geo['out_w'])

    def _map_orig(self, arr: np.ndarray, geo: dict) -> np.ndarray:
        """Resample an original-resolution 2-D map (mask, seg) into the
        chip (nearest)."""
        return resample_region(arr, (geo['x1'], geo['y1']), geo['s'],
                               (geo['out_w'], geo['out_h']), 'nearest')

    def _crop_seg(self, results: dict, geo: dict) -> None:
        seg = results.get('gt_seg_map', None)
        if seg is None:
            return
        if seg.shape[:2] != (geo['full_h'], geo['full_w']):
            raise self._error(
                results, "results['gt_seg_map']",
                f'shape {seg.shape[:2]} is not the image size '
                f"{(geo['full_h'], geo['full_w'])}")
        results['gt_seg_map'] = self._map_orig(seg, geo)

    def _crop_masks(self, results: dict, masks, keep: np.ndarray, geo: dict):
        keep_idx = np.flatnonzero(keep)
        out_h, out_w = geo['out_h'], geo['out_w']
        if isinstance(masks, BitmapMasks):
            if (masks.height, masks.width) != (geo['full_h'], geo['full_w']):
                raise self._error(
                    results, "results['gt_masks']",
                    f'mask size {(masks.height, masks.width)} is not the '
                    f"image size {(geo['full_h'], geo['full_w'])}")
            out = np.zeros((len(keep_idx), out_h, out_w), dtype=np.uint8)
            for j, i in enumerate(keep_idx):
                out[j] = self._map_orig(masks.masks[i], geo)
            return BitmapMasks(out, out_h, out_w)
        if isinstance(masks, PolygonMasks):
            x1, y1, s = geo['x1'], geo['y1'], geo['s']
            offset = np.array([x1, y1])
            polys = []
            for i in keep_idx:
                polys.append([(
                    (np.asarray(p, dtype=np.float64).reshape(-1, 2) - offset) *
                    s).reshape(-1) for p in masks.masks[i]])
            mapped = PolygonMasks(polys, out_h, out_w)
            # clip the polygons to the resized region (shapely, as mmdet)
            return mapped.crop(np.array([0, 0, out_w, out_h]))
        raise NotImplementedError(
            f'{self.__class__.__name__} supports gt_masks of type '
            f'BitmapMasks or PolygonMasks, not {type(masks)}')

    # ------------------------------------------------------------------
    # instances
    # ------------------------------------------------------------------
    def _check_box_type(self, results: dict, field: str,
                        boxes: BaseBoxes) -> BaseBoxes:
        """Refuse box types whose clipping to the chip is not a box."""
        if isinstance(boxes, HorizontalBoxes):
            return boxes
        if isinstance(boxes, BaseBoxes):
            raise TypeError(
                f'{self.__class__.__name__}: results[{field!r}] of image '
                f"{results.get('img_path')!r} is {type(boxes).__name__}; "
                'only HorizontalBoxes (xyxy) can be cut into chips: a '
                'rotated or quadrilateral box clipped to the chip border is '
                'no longer a box of its type. Convert them to '
                "HorizontalBoxes (e.g. boxes.convert_to('hbox')) or load "
                'axis-aligned boxes.')
        raise TypeError(f'{self.__class__.__name__}: results[{field!r}] '
                        'must be HorizontalBoxes or an (N, 4) np.ndarray, '
                        f'got {type(boxes).__name__}')

    @staticmethod
    def _map_boxes(boxes: HorizontalBoxes, geo: dict) -> HorizontalBoxes:
        """``(b - (x1, y1)) * s`` clipped to the chip, in float64, with the
        box type's own operations (a new object; ``boxes`` is untouched)."""
        mapped = type(boxes)(boxes.tensor.to(torch.float64))
        mapped.translate_((-geo['x1'], -geo['y1']))
        mapped.rescale_((geo['s'], geo['s']))
        mapped.clip_((geo['out_h'], geo['out_w']))
        return mapped

    def _crop_instances(self, results: dict, geo: dict) -> None:
        if results.get('gt_bboxes', None) is None:
            return
        if 'gt_keypoints' in results:
            raise NotImplementedError(
                f'{self.__class__.__name__} does not map gt_keypoints')
        bboxes = self._check_box_type(results, 'gt_bboxes',
                                      results['gt_bboxes'])
        num = len(bboxes)
        valid_gt = geo['valid_gt']
        if len(valid_gt) and (valid_gt.min() < 0 or valid_gt.max() >= num):
            raise self._error(
                results, "sniper_chip['valid_gt']",
                f'indices {valid_gt.tolist()} out of range for {num} '
                'instances')

        mapped = self._map_boxes(bboxes, geo)
        w = mapped.widths.numpy()
        h = mapped.heights.numpy()
        # every GT piece in the chip before the small-piece filter, for the
        # AutoFocus labels (spec 7), which count them all; the GT outside
        # the chip, collapsed onto its border by the clip, apart (the
        # reference labels them: FocusPixelLabels(outside_gt='border'))
        inside = (w > 0) & (h > 0)
        results['focus_gt_bboxes'] = mapped.tensor.numpy()[inside]
        results['focus_gt_outside'] = mapped.tensor.numpy()[~inside]
        # spec 4: pieces *under* min_gt_size are dropped, as the reference's
        # filter_boxes keeps ws >= 10
        keep = (w >= self.min_gt_size) & (h >= self.min_gt_size)
        keep &= (w > 0) & (h > 0)  # never keep empty pieces
        keep_t = torch.from_numpy(keep)
        results['gt_bboxes'] = type(bboxes)(
            mapped.tensor[keep_t].to(bboxes.tensor.dtype), clone=False)

        ignore = results.get('gt_ignore_flags', None)
        if ignore is None:
            ignore = np.zeros(num, dtype=bool)
        ignore = np.asarray(ignore, dtype=bool)
        if len(ignore) != num:
            raise self._error(results, "results['gt_ignore_flags']",
                              f'{len(ignore)} flags for {num} boxes')
        in_chip = np.zeros(num, dtype=bool)
        in_chip[valid_gt] = True
        results['gt_ignore_flags'] = (ignore | ~in_chip)[keep]

        if results.get('gt_masks', None) is not None:
            masks = results['gt_masks']
            if len(masks) != num:
                raise self._error(results, "results['gt_masks']",
                                  f'{len(masks)} masks for {num} boxes')
            results['gt_masks'] = self._crop_masks(results, masks, keep, geo)

        handled = ('gt_bboxes', 'gt_ignore_flags', 'gt_masks', 'gt_seg_map')
        for key in list(results.keys()):
            if not key.startswith('gt_') or key in handled:
                continue
            value = results[key]
            if isinstance(value, (np.ndarray, torch.Tensor)):
                if value.ndim >= 1 and len(value) == num:
                    results[key] = value[keep if isinstance(value, np.ndarray
                                                            ) else keep_t]
            elif isinstance(value, (list, tuple)) and len(value) == num:
                results[key] = type(value)(v for v, k in zip(value, keep) if k)

    def _crop_proposals(self, results: dict, geo: dict) -> None:
        proposals = results.get('proposals', None)
        if proposals is None:
            return
        is_boxes = isinstance(proposals, BaseBoxes)
        if is_boxes:
            boxes = self._check_box_type(results, 'proposals', proposals)
            dtype = boxes.tensor.dtype
        else:
            arr = np.asarray(proposals)
            dtype = arr.dtype if arr.dtype.kind == 'f' else np.float32
            try:
                boxes = HorizontalBoxes(arr.astype(np.float64))
            except AssertionError as e:
                raise self._error(
                    results, "results['proposals']",
                    f'expected (N, 4) xyxy boxes, got shape '
                    f'{arr.shape}') from e
        mapped = self._map_boxes(boxes, geo)
        keep = ((mapped.widths > 0) & (mapped.heights > 0)).numpy()
        p = mapped.tensor[torch.from_numpy(keep)]
        if is_boxes:
            results['proposals'] = type(proposals)(p.to(dtype), clone=False)
        else:
            results['proposals'] = p.numpy().astype(dtype)
        if results.get('proposals_scores', None) is not None:
            results['proposals_scores'] = results['proposals_scores'][keep]

    # ------------------------------------------------------------------
    # metas
    # ------------------------------------------------------------------
    @staticmethod
    def _record_meta(results: dict, geo: dict) -> None:
        x1, y1, s = geo['x1'], geo['y1'], geo['s']
        chip_matrix = np.array(
            [[s, 0., -x1 * s], [0., s, -y1 * s], [0., 0., 1.]],
            dtype=np.float64)  # S @ T
        old = results.get('homography_matrix', None)
        if old is not None:
            chip_matrix = chip_matrix @ np.asarray(old, dtype=np.float64)
        results['homography_matrix'] = chip_matrix.astype(np.float32)

        old_sf = results.get('scale_factor', None)
        if old_sf is None:
            results['scale_factor'] = (s, s)
        else:
            if isinstance(old_sf, Number):
                old_sf = (old_sf, old_sf)
            results['scale_factor'] = (float(old_sf[0]) * s,
                                       float(old_sf[1]) * s)

        results['chip_offset'] = (float(x1), float(y1))
        results['chip_size'] = (geo['chip_h'], geo['chip_w'])
        results['chip_scale'] = float(s)
        results['chip_valid_range'] = geo['valid_range']
        results['chip_scale_idx'] = geo['scale_idx']
        results['chip_is_negative'] = geo['is_negative']

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Cut the chip described by ``results['sniper_chip']``.

        Args:
            results (dict): Result dict from the loading transforms.

        Returns:
            dict: The chip's results; ``results`` unchanged when there is no
            ``sniper_chip``.
        """
        chip = results.get('sniper_chip', None)
        if chip is None:
            warn_missing_chip(results)
            return results
        geo = self._parse_chip(results, chip)
        self._crop_img(results, geo)
        self._crop_seg(results, geo)
        self._crop_instances(results, geo)
        self._crop_proposals(results, geo)
        self._record_meta(results, geo)
        return results

    def __repr__(self) -> str:
        repr_str = self.__class__.__name__
        repr_str += f'(min_gt_size={self.min_gt_size}, '
        repr_str += f"interpolation='{self.interpolation}', "
        repr_str += f'box_tol={self.box_tol})'
        return repr_str


def chip_meta_keys(base: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
    """``PackDetInputs`` meta_keys: ``base`` (mmdet's defaults when None)
    plus :data:`SNIPER_CHIP_META_KEYS`.
    """
    if base is None:
        base = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                'flip', 'flip_direction')
    keys: List[str] = list(base)
    keys += [k for k in SNIPER_CHIP_META_KEYS if k not in keys]
    return tuple(keys)
