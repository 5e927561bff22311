# Copyright (c) mmsniper contributors. All rights reserved.
"""SNIPER multi-scale inference for any mmdet detector (SNIPER_SPEC.md
section 6), with tiled inference for images too large to enlarge whole."""
import math
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmcv.ops import batched_nms
from mmengine.model import BaseTTAModel
from mmengine.structures import InstanceData

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmsniper.chips import (check_scales_and_ranges, compute_scale_factor,
                            edge_cut_mask, flip_boxes, map_boxes_to_original,
                            normalize_valid_ranges, plan_scale_tiles,
                            scale_valid_range_mask, scaled_size)
from mmsniper.chips.tiles import check_tile_settings
from mmsniper.utils.image_ops import _CV2_INTERP, crop_resize
from mmsniper.utils.progress import warn_once


DEFAULT_MERGE_CFG = dict(
    nms=dict(
        type='soft_nms',
        iou_threshold=0.3,
        sigma=0.55,
        min_score=0.001,
        method='gaussian'),
    max_per_img=200)
DEFAULT_TILE_CFG = dict(
    max_pixels=4e6, tile_size=2000, overlap=None, edge_margin=10.0)


def _as_instances(inst: InstanceData) -> InstanceData:
    """The fields a merge keeps, on the CPU."""
    out = InstanceData(
        bboxes=inst.bboxes.detach().float().cpu(),
        scores=inst.scores.detach().float().cpu(),
        labels=inst.labels.detach().cpu())
    if 'mask_crops' in inst:
        out.mask_crops = list(inst.mask_crops)
    return out


def _cat(results: List[InstanceData]) -> InstanceData:
    results = [_as_instances(r) for r in results]
    if any('mask_crops' in r for r in results) and not all(
            'mask_crops' in r for r in results):
        raise ValueError('SniperTTAModel: some views of an image have masks '
                         'and others not')
    if len(results) == 1:
        return results[0]
    return InstanceData.cat(results)


def _nms(inst: InstanceData, nms_cfg: dict) -> InstanceData:
    """``batched_nms`` (class-wise, NMS or Soft-NMS) over instances, masks
    carried along."""
    dets, keep = batched_nms(inst.bboxes, inst.scores, inst.labels, nms_cfg)
    out = inst[keep]
    out.bboxes, out.scores = dets[:, :4], dets[:, 4]
    return out


def mask_crops(masks, view_boxes: np.ndarray, view: dict,
               keep: np.ndarray) -> list:
    """Each kept detection's mask, cut to its box, with the box's region in
    original px.

    A whole-view mask per detection would cost (views x detections x view
    px); the crop inside the (view px) box costs the box's area only, and
    the merge pastes the survivors back at original resolution
    (:func:`paste_masks`).

    Args:
        masks (Tensor | BitmapMasks): (n, h, w) masks at view resolution.
        view_boxes (ndarray): (n, 4) the detections' boxes, view px (as
            predicted: flipped when the view is).
        view (dict): The view (``region``, ``scale``, ``flip``, ``width``).
        keep (ndarray): Indices of the kept detections.

    Returns:
        list[tuple[ndarray, ndarray]]: ``(crop, rect)``: a bool crop and
        its ``(x1, y1, x2, y2)`` in original px.
    """
    if hasattr(masks, 'to_ndarray'):
        masks = masks.to_ndarray()
    masks = masks.detach().cpu().numpy() if isinstance(
        masks, torch.Tensor) else np.asarray(masks)
    h, w = masks.shape[-2:]
    sx, sy = view['scale']
    rx, ry = view['region'][:2]
    out = []
    for i in keep:
        x1, y1, x2, y2 = view_boxes[i]
        x1, y1 = max(int(math.floor(x1)), 0), max(int(math.floor(y1)), 0)
        x2, y2 = min(int(math.ceil(x2)), w), min(int(math.ceil(y2)), h)
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        crop = masks[i, y1:y2, x1:x2].astype(bool)
        if view['flip']:
            crop = crop[:, ::-1]
            x1, x2 = view['width'] - x2, view['width'] - x1
        rect = np.array(
            [rx + x1 / sx, ry + y1 / sy, rx + x2 / sx, ry + y2 / sy])
        out.append((np.ascontiguousarray(crop), rect))
    return out


def paste_masks(crops: list, shape: tuple) -> torch.Tensor:
    """(n, H, W) bool masks at original resolution from :func:`mask_crops`
    (each crop resized, nearest, into its rect)."""
    height, width = shape
    masks = torch.zeros((len(crops), height, width), dtype=torch.bool)
    for i, (crop, rect) in enumerate(crops):
        x1, y1, x2, y2 = rect
        ix1, iy1 = max(int(round(x1)), 0), max(int(round(y1)), 0)
        ix2, iy2 = min(int(round(x2)), width), min(int(round(y2)), height)
        if ix2 <= ix1 or iy2 <= iy1 or crop.size == 0:
            continue
        # the crop spans rect; sample it over the integer pixels inside
        full = cv2.resize(
            crop.astype(np.uint8),
            (max(int(round(x2 - x1)), 1), max(int(round(y2 - y1)), 1)),
            interpolation=cv2.INTER_NEAREST)
        ox, oy = ix1 - int(round(x1)), iy1 - int(round(y1))
        part = full[oy:oy + iy2 - iy1, ox:ox + ix2 - ix1]
        masks[i, iy1:iy1 + part.shape[0], ix1:ix1 + part.shape[1]] = \
            torch.from_numpy(part.astype(bool))
    return masks


@MODELS.register_module()
class SniperTTAModel(BaseTTAModel):
    """SNIPER testing: every scale on the whole image, valid ranges, Soft-NMS.

    Per image and test scale (finest first), the image is resized by the
    scale's factor (a factor, or a ``(short_target, long_cap)`` pair as in
    training; :func:`mmsniper.chips.compute_scale_factor`) and run through
    the wrapped detector, optionally flipped too. When the scaled image would
    exceed ``tile_cfg.max_pixels``, overlapping tiles of
    ``tile_cfg.tile_size`` scaled px are cut from the original image and
    resized one by one instead (:func:`mmsniper.chips.plan_scale_tiles`);
    detections cut by an inner tile edge are dropped
    (:func:`mmsniper.chips.edge_cut_mask`) and the views of one scale (tiles,
    flips) are merged with ``view_nms``. Then each scale keeps the
    detections whose sqrt-area in original px lies in its test valid range
    (``lo < sqrt(area) <= hi``, the reference's test rule), all scales are
    merged with class-wise ``merge_cfg.nms`` (Gaussian Soft-NMS by default)
    and the top ``merge_cfg.max_per_img`` are kept.

    Instance masks (Mask R-CNN, Cascade Mask R-CNN, HTC) follow their
    boxes: each detection's mask is cut to its box at view resolution
    (un-flipped), goes through the same tile-edge, view-NMS, valid-range,
    Soft-NMS and top-k selection as its box, and the survivors are pasted
    back at original resolution (``pred_instances.masks``, (N, H, W) bool
    as mmdet's own ``rescale=True`` output).

    The test pipeline must load the image at its original size and pack it
    (``LoadImageFromFile``, ``PackDetInputs``): this model does the resizing.
    It counts the pixels it feeds the detector per scale
    (:attr:`sniper_stats`; :class:`SniperTTAStatsHook` logs them).

    Args:
        module (dict | nn.Module): The detector.
        scales (Sequence): Test scales, finest first.
        valid_ranges (Sequence): One ``(lo, hi)`` sqrt-area range per scale,
            orig px, ``-1`` = open.
        flip (bool): Also run every view flipped horizontally.
        batch_size (int): Model inputs (whole images or tiles, of one scale)
            per forward pass.
        merge_cfg (dict): ``nms`` (an ``mmcv.ops.batched_nms`` config:
            ``soft_nms`` with ``method='gaussian'``, ``sigma``,
            ``min_score``, or ``type='nms'`` with ``iou_threshold``; its
            ``offset``: 0, or 1 for the reference's pixel-inclusive IoU,
            widths ``x2 - x1 + 1``) and ``max_per_img``.
        view_nms (dict, optional): ``batched_nms`` config merging the views
            of one scale (tiles, flips) before the valid-range filter;
            ``None`` keeps them all.
        tile_cfg (dict): ``max_pixels`` (scaled px above which an image is
            tiled at that scale), ``tile_size`` (scaled px), ``overlap``
            (scaled px; ``None``: the scale's valid-range upper bound plus
            twice ``edge_margin``, in orig px), ``edge_margin`` (orig px).
        interpolation (str): Resize interpolation (cv2), 'bilinear' as
            mmdet's ``Resize``.
        clip_offset (int): Boxes are clipped to ``[0, w - clip_offset] x
            [0, h - clip_offset]`` in the px of the ``w x h`` view (resized
            image, tile or chip) they were found in: 0 keeps the detector's
            own clip to ``[0, w]``; 1 is the reference's ``clip_boxes`` to
            the last pixel. Defaults to 0.
        data_preprocessor (dict, optional): See ``BaseTTAModel``.
    """

    def __init__(self,
                 module,
                 scales: Sequence,
                 valid_ranges: Sequence,
                 flip: bool = False,
                 batch_size: int = 1,
                 merge_cfg: Optional[dict] = None,
                 view_nms: Optional[dict] = dict(
                     type='nms', iou_threshold=0.5),
                 tile_cfg: Optional[dict] = None,
                 interpolation: str = 'bilinear',
                 clip_offset: int = 0,
                 data_preprocessor=None):
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        if isinstance(scales, (str, bytes)) or not len(scales):
            raise ValueError(f'scales must be a non-empty list, got '
                             f'{scales!r}')
        # finest first, one range per scale in the same order: a reversed
        # list would give each scale another scale's range
        check_scales_and_ranges(scales, valid_ranges, type(self).__name__)
        self.scales = [
            tuple(s) if isinstance(s, (list, tuple)) else s for s in scales
        ]
        for scale in self.scales:  # fail at build time on a bad scale
            compute_scale_factor(scale, (1000, 1000))
        self.valid_ranges = [tuple(r) for r in valid_ranges]
        self._ranges = normalize_valid_ranges(self.valid_ranges,
                                              len(self.scales))
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f'batch_size must be a positive integer, got '
                             f'{batch_size!r}')
        self.flip = bool(flip)
        self.batch_size = int(batch_size)
        self.merge_cfg = dict(DEFAULT_MERGE_CFG, **(merge_cfg or {}))
        if 'nms' not in self.merge_cfg or 'type' not in self.merge_cfg['nms']:
            raise ValueError('merge_cfg.nms must be a batched_nms config '
                             f'with a type, got {self.merge_cfg!r}')
        for name, cfg in (('merge_cfg.nms', self.merge_cfg['nms']),
                          ('view_nms', view_nms or {})):
            if cfg.get('offset', 0) not in (0, 1):
                raise ValueError(f'{name}.offset must be 0 or 1 (1: '
                                 'widths x2 - x1 + 1), got '
                                 f'{cfg["offset"]!r}')
        if clip_offset not in (0, 1):
            raise ValueError(f'clip_offset must be 0 or 1, got '
                             f'{clip_offset!r}')
        self.clip_offset = int(clip_offset)
        self.view_nms = dict(view_nms) if view_nms else None
        self.tile_cfg = dict(DEFAULT_TILE_CFG, **(tile_cfg or {}))
        unknown = set(self.tile_cfg) - set(DEFAULT_TILE_CFG)
        if unknown:
            raise ValueError(f'unknown tile_cfg keys {sorted(unknown)}; '
                             f'known: {sorted(DEFAULT_TILE_CFG)}')
        check_tile_settings(self.tile_cfg['tile_size'],
                            self.tile_cfg['overlap'])
        if interpolation not in _CV2_INTERP:
            raise ValueError(f'interpolation must be one of '
                             f'{sorted(_CV2_INTERP)}, got {interpolation!r}')
        self.interpolation = interpolation
        self.reset_stats()

    # ------------------------------------------------------------------
    # accounting
    # ------------------------------------------------------------------
    def reset_stats(self) -> None:
        """Zero the pixel and time counters."""
        num = len(self.scales)
        self.sniper_stats = dict(
            images=0,
            seconds=0.0,
            pixels=np.zeros(num, dtype=np.float64),
            views=np.zeros(num, dtype=np.int64),
            tiled_images=np.zeros(num, dtype=np.int64),
            non_finite_boxes=0,
            scale_seconds=np.zeros(num, dtype=np.float64))

    # ------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------
    @staticmethod
    def _image_hw(img: torch.Tensor, data_sample) -> tuple:
        lazy = data_sample.metainfo.get('sniper_lazy_image')
        if lazy is not None:  # LoadSniperLazyImage: read view by view
            return int(lazy['height']), int(lazy['width'])
        if not isinstance(img, torch.Tensor) or img.dim() != 3:
            raise TypeError(
                'SniperTTAModel expects one (C, H, W) tensor per image (the '
                'output of PackDetInputs); got '
                f'{type(img).__name__} for '
                f'{data_sample.metainfo.get("img_path")}. '
                'Its tta_pipeline must not use TestTimeAug or Resize: the '
                'model resizes per scale itself.')
        height, width = img.shape[-2:]
        ori_shape = data_sample.metainfo.get('ori_shape')
        if ori_shape is not None and tuple(ori_shape[:2]) != (height, width):
            raise ValueError(
                f'image {data_sample.metainfo.get("img_path")}: the input is '
                f'{height}x{width} but ori_shape is {tuple(ori_shape)}; '
                'the tta_pipeline must load the image at its original size '
                '(no Resize): SniperTTAModel resizes per scale itself.')
        return int(height), int(width)

    def _views(self, scale_idx: int, height: int, width: int) -> tuple:
        """Regions (orig px) of one image at one scale, and its factor."""
        factor = compute_scale_factor(self.scales[scale_idx], (height, width))
        hi = self._ranges[scale_idx, 1]
        cfg = self.tile_cfg
        regions = plan_scale_tiles((height, width),
                                   factor,
                                   max_pixels=cfg['max_pixels'],
                                   tile_size=cfg['tile_size'],
                                   max_object_size=hi,
                                   edge_margin=cfg['edge_margin'],
                                   overlap=cfg['overlap'])
        return regions, factor

    def _run_views(self, views: List[dict], inputs, data_samples) -> None:
        """Cut, resize, detect and map one batch of views (one scale)."""
        batch_inputs, batch_samples = [], []
        for view in views:
            img = inputs[view['image']]
            x1, y1, x2, y2 = view['region']
            out_h, out_w = scaled_size((y2 - y1, x2 - x1), view['factor'])
            lazy = data_samples[view['image']].metainfo.get(
                'sniper_lazy_image')
            if lazy is not None:  # never decoded whole: read this window
                from mmsniper.datasets.lazy_image import read_view
                tensor = torch.from_numpy(
                    read_view(lazy, view['region'], (out_w, out_h),
                              self.interpolation))
            else:
                tensor = crop_resize(img.cpu(), view['region'],
                                     (out_w, out_h), self.interpolation)
            if view['flip']:
                tensor = tensor.flip(-1)
            scale = (out_w / (x2 - x1), out_h / (y2 - y1))
            meta = dict(data_samples[view['image']].metainfo)
            meta.update(
                img_shape=(out_h, out_w),
                ori_shape=(int(y2 - y1), int(x2 - x1)),
                scale_factor=scale,
                flip=view['flip'],
                flip_direction='horizontal' if view['flip'] else None,
                sniper_region=tuple(float(v) for v in view['region']))
            view['scale'] = scale
            view['width'], view['height'] = out_w, out_h
            batch_inputs.append(tensor)
            batch_samples.append(DetDataSample(metainfo=meta))
        data = self.module.data_preprocessor(
            dict(inputs=batch_inputs, data_samples=batch_samples), False)
        with torch.no_grad():
            preds = self.module.predict(
                data['inputs'], data['data_samples'], rescale=False)
        for view, pred in zip(views, preds):
            inst = pred.pred_instances
            boxes = inst.bboxes.detach().float().cpu().numpy().astype(
                np.float64)
            finite = np.isfinite(boxes).all(axis=1)
            if not finite.all():
                # a diverged or untrained detector: its NaN / inf boxes
                # cannot be mapped or merged; say so, keep the others
                path = data_samples[view['image']].metainfo.get('img_path')
                self.sniper_stats['non_finite_boxes'] += int((~finite).sum())
                warn_once(
                    'SniperTTAModel.non_finite',
                    f'SniperTTAModel: the detector returned '
                    f'{int((~finite).sum())} non-finite boxes (NaN or inf) '
                    f'for {path}; they are left out of the merged result '
                    "(counted in sniper_stats['non_finite_boxes'] for all "
                    'images; this warning is not repeated)')
                boxes = np.where(finite[:, None], boxes, 0.0)
            view_boxes = boxes
            if view['flip']:
                boxes = flip_boxes(boxes, view['width'])
            if self.clip_offset:
                # the reference's clip_boxes (lib/bbox/bbox_transform.py):
                # to the view's last pixel, w - 1
                last = np.array([view['width'], view['height']] * 2,
                                dtype=np.float64) - self.clip_offset
                boxes = np.clip(boxes, 0.0, np.maximum(last, 0.0))
            height, width = view['image_hw']
            region = np.asarray(view['region'], dtype=np.float64)
            boxes = map_boxes_to_original(boxes, region[:2], view['scale'],
                                          (height, width))
            keep = finite.copy()
            if view['tiled']:
                keep &= edge_cut_mask(boxes, region, (height, width),
                                      self.tile_cfg['edge_margin'])
            keep_t = torch.from_numpy(keep)
            if view.get('keep_pred', False):
                view['pred'] = pred  # e.g. AutoFocus reads its focus map
            result = InstanceData(
                bboxes=torch.from_numpy(boxes[keep]).float(),
                scores=inst.scores.detach().float().cpu()[keep_t],
                labels=inst.labels.detach().cpu()[keep_t])
            if 'masks' in inst:
                result.mask_crops = mask_crops(
                    inst.masks, view_boxes, view, np.flatnonzero(keep))
            view['result'] = result

    def _scale_result(self, data_sample, scale_idx: int,
                      views: List[dict]) -> DetDataSample:
        """One image's merged views at one scale, tagged with the scale
        (no views: no detections)."""
        if views:
            merged = self._merge_views([v['result'] for v in views])
        else:
            merged = InstanceData(
                bboxes=torch.zeros((0, 4)),
                scores=torch.zeros(0),
                labels=torch.zeros(0, dtype=torch.long))
        sample = DetDataSample(
            metainfo=dict(data_sample.metainfo, sniper_scale_idx=scale_idx))
        sample.pred_instances = merged
        return sample

    def _merge_views(self, results: List[InstanceData]) -> InstanceData:
        """Concatenate the views of one image at one scale (+ view NMS)."""
        merged = _cat(results)
        if len(results) > 1 and self.view_nms and len(merged):
            merged = _nms(merged, self.view_nms)
        return merged

    def _unpack_batch(self, data: dict) -> tuple:
        """``inputs``, ``data_samples`` and each image's ``(h, w)`` of a
        pseudo-collated batch, refusing batches this model cannot test."""
        name = type(self).__name__
        if not isinstance(data, dict):
            raise TypeError(f'{name}.test_step expects the dict of a '
                            'pseudo-collated batch (inputs, data_samples), '
                            f'got {type(data).__name__}')
        inputs, data_samples = data['inputs'], data['data_samples']
        if inputs and isinstance(inputs[0], (list, tuple)):
            raise TypeError(
                f'{name} got several augmented views per image (a '
                'TestTimeAug pipeline); its tta_pipeline must load the image '
                'at its original size and pack it once (LoadImageFromFile, '
                'PackDetInputs): the model resizes per scale itself.')
        sizes = [
            self._image_hw(img, sample)
            for img, sample in zip(inputs, data_samples)
        ]
        return inputs, data_samples, sizes

    def test_step(self, data: dict) -> List[DetDataSample]:
        """Run the SNIPER test on a batch (``inputs``, ``data_samples``)."""
        start = time.perf_counter()
        inputs, data_samples, sizes = self._unpack_batch(data)
        stats = self.sniper_stats
        per_image: List[List[DetDataSample]] = [[] for _ in inputs]
        flips = (False, True) if self.flip else (False, )
        for scale_idx in range(len(self.scales)):
            scale_start = time.perf_counter()
            views, by_image = [], [[] for _ in inputs]
            for image_idx, (height, width) in enumerate(sizes):
                regions, factor = self._views(scale_idx, height, width)
                stats['tiled_images'][scale_idx] += len(regions) > 1
                for region in regions:
                    for flip in flips:
                        view = dict(
                            image=image_idx,
                            image_hw=(height, width),
                            region=region,
                            factor=factor,
                            flip=flip,
                            tiled=len(regions) > 1)
                        views.append(view)
                        by_image[image_idx].append(view)
            for first in range(0, len(views), self.batch_size):
                self._run_views(views[first:first + self.batch_size], inputs,
                                data_samples)
            for view in views:
                stats['pixels'][scale_idx] += math.prod(
                    scaled_size(
                        (view['region'][3] - view['region'][1],
                         view['region'][2] - view['region'][0]),
                        view['factor']))
            stats['views'][scale_idx] += len(views)
            for image_idx, image_views in enumerate(by_image):
                per_image[image_idx].append(
                    self._scale_result(data_samples[image_idx], scale_idx,
                                       image_views))
            stats['scale_seconds'][scale_idx] += (
                time.perf_counter() - scale_start)
        merged = self.merge_preds(per_image)
        outputs = []
        for sample, result in zip(data_samples, merged):
            sample.pred_instances = result.pred_instances
            outputs.append(sample)
        stats['images'] += len(inputs)
        stats['seconds'] += time.perf_counter() - start
        return outputs

    # ------------------------------------------------------------------
    # merging
    # ------------------------------------------------------------------
    def merge_preds(self, data_samples_list: List[List[DetDataSample]]
                    ) -> List[DetDataSample]:
        """Merge the per-scale predictions of each image.

        Args:
            data_samples_list (list[list[DetDataSample]]): Per image, one
                sample per scale whose ``pred_instances`` are in original px
                and whose metainfo holds ``sniper_scale_idx``.

        Returns:
            list[DetDataSample]: Per image, the valid-range filtered,
            merged and capped detections (metainfo of its first sample).
        """
        return [self._merge_image(samples) for samples in data_samples_list]

    def _merge_image(self, samples: List[DetDataSample]) -> DetDataSample:
        kept = []
        for sample in samples:
            inst = sample.pred_instances
            scale_idx = sample.metainfo.get('sniper_scale_idx')
            if scale_idx is None:
                raise KeyError('each sample to merge needs sniper_scale_idx '
                               'in its metainfo')
            boxes = inst.bboxes.detach().float().cpu()
            keep = scale_valid_range_mask(
                boxes.numpy(), np.full(len(boxes), scale_idx),
                self._ranges)
            kept.append(inst[torch.from_numpy(keep)])
        merged = _cat(kept) if kept else InstanceData(
            bboxes=torch.zeros((0, 4)),
            scores=torch.zeros(0),
            labels=torch.zeros(0, dtype=torch.long))
        if len(merged):
            merged = _nms(merged, self.merge_cfg['nms'])
        max_per_img = self.merge_cfg.get('max_per_img', -1)
        if max_per_img is not None and max_per_img > 0:
            merged = merged[:max_per_img]
        meta = dict(samples[0].metainfo) if samples else {}
        meta.pop('sniper_scale_idx', None)
        if 'mask_crops' in merged:
            height, width = meta['ori_shape'][:2]
            merged.masks = paste_masks(merged.mask_crops, (height, width))
            del merged.mask_crops
        result = DetDataSample(metainfo=meta)
        result.pred_instances = merged
        return result

    def extra_repr(self) -> str:
        return (f'scales={self.scales}, valid_ranges={self.valid_ranges}, '
                f'flip={self.flip}, batch_size={self.batch_size}, '
                f'merge_cfg={self.merge_cfg}, view_nms={self.view_nms}, '
                f'tile_cfg={self.tile_cfg}, clip_offset={self.clip_offset}')


def format_sniper_stats(stats: Dict, scales: Sequence) -> List[str]:
    """Human-readable lines of :attr:`SniperTTAModel.sniper_stats`."""
    images = max(int(stats['images']), 1)
    total = float(np.sum(stats['pixels']))
    lines = [
        f'SNIPER test: {int(stats["images"])} images, '
        f'{total / images / 1e6:.3f} M px per image over '
        f'{len(scales)} scales, {stats["seconds"] / images:.3f} s per image'
    ]
    full = stats.get('full_pixels', None)
    if full is not None:
        lines[0] = lines[0].replace('SNIPER test', 'AutoFocus test') + (
            f', {total / max(float(np.sum(full)), 1.0):.1%} of the pixels '
            'of the full multi-scale test')
    for idx, scale in enumerate(scales):
        share = ''
        if full is not None:
            fraction = stats['pixels'][idx] / max(float(full[idx]), 1.0)
            share = f' ({fraction:.1%} of the whole image at this scale)'
        lines.append(
            f'  scale {idx} {scale}: '
            f'{stats["pixels"][idx] / images / 1e6:.3f} M px per image'
            f'{share}, '
            f'{int(stats["views"][idx])} model inputs, '
            f'{int(stats["tiled_images"][idx])} images tiled, '
            f'{stats["scale_seconds"][idx] / images:.3f} s per image')
    return lines
