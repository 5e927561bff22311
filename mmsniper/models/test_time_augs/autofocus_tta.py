# Copyright (c) mmsniper contributors. All rights reserved.
"""AutoFocus inference (SNIPER_SPEC.md section 7): coarse to fine, the finer
scales look only at the FocusChips the coarser scale's focus map asks for."""
import math
import os
import os.path as osp
import time
from typing import List, Optional, Sequence

import cv2
import numpy as np

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmsniper.chips import (compute_scale_factor, generate_focus_chips,
                            plan_scale_tiles, scaled_size)
from .sniper_tta import SniperTTAModel, _cat

#: Reference chip parameters (dilation, threshold, min size in cells),
#: coarse to fine: the chips of the middle scale come from the coarsest
#: scale's map, those of the finest scale from the middle scale's map.
DEFAULT_CHIP_PARAMS = ((3, 0.02, 16), (3, 0.2, 20))
#: One colour (BGR) per scale, coarse to fine, for the pictures.
_SCALE_COLOURS = ((255, 160, 0), (0, 200, 255), (60, 60, 255),
                  (200, 0, 200), (0, 255, 0))


@MODELS.register_module()
class AutoFocusTTAModel(SniperTTAModel):
    """AutoFocus testing for a detector with a FocusPixel head.

    The coarsest scale runs on the whole image (tiled when too large, as in
    :class:`SniperTTAModel`); its focus maps give the FocusChips of the next
    finer scale (:func:`mmsniper.chips.generate_focus_chips`, with
    ``chip_params``), each cut from the original image and resized by that
    scale's full-image factor (tiled when a chip is too large); those
    chips' maps give the chips of the next scale, and so on. Detections
    within ``tile_cfg.edge_margin`` original px of a chip edge that is not
    an image edge are dropped; then the per-scale valid ranges and the
    Soft-NMS merge of :class:`SniperTTAModel`. As in the reference
    (``lib/inference.py``: no NMS per chip, ``aggregate`` sends every
    chip's detections to the final Soft-NMS), the detections of different
    FocusChips are not merged with each other before that Soft-NMS;
    ``view_nms`` merges the views of one chip (its tiles when it is too
    large, its flipped copy), as it merges those of a whole image.
    With ``focus=False`` every scale runs on the whole image: exactly the
    SNIPER multi-scale test.

    The wrapped detector must set ``pred_focus_map`` on its predictions
    (:class:`AutoFocusDetector`); flipped views (``flip=True``) add
    detections but no focus maps.

    Besides :attr:`sniper_stats`, it counts ``full_pixels``: the pixels the
    full multi-scale test would process at each scale, so the fraction
    AutoFocus spent is visible (logged by :class:`SniperTTAStatsHook`), and
    keeps per-image pixel records in :attr:`focus_records`.

    Args:
        scales, valid_ranges, flip, batch_size, merge_cfg, view_nms,
        tile_cfg, interpolation, data_preprocessor: as
            :class:`SniperTTAModel` (scales finest first; the reference
            AutoFocus ranges are ``(-1, 75), (32, 180), (75, -1)``).
        focus (bool): Look only at FocusChips at the finer scales. Defaults
            to True.
        chip_params (Sequence[tuple]): ``(dilation, threshold, min_size)``
            per finer scale, coarse to fine: entry ``k`` builds the chips of
            the ``k + 2``-th coarsest scale from the maps of the ``k + 1``-th.
            Defaults to the reference's ``((3, 0.02, 16), (3, 0.2, 20))``.
        focus_stride (int, optional): Stride of the focus map; defaults to
            the one the detector reports with its map.
        vis_dir (str, optional): Write, per image, a picture with the
            coarsest focus map overlaid and the FocusChips of each scale in
            its own colour. Defaults to None.
        nms_across_chips (bool): Also merge the FocusChips of one scale
            with each other by ``view_nms`` before the valid ranges, as
            this model did before; the reference does not. Only
            overlapping chips are affected (a detection is clipped to its
            chip). Defaults to False.
        chip_holes (bool): Take the holes of the thresholded focus map's
            regions too, as the reference's ``cv2.RETR_LIST`` contours do
            (:func:`mmsniper.chips.generate_focus_chips` ``holes``).
            Defaults to False.
    """

    def __init__(self,
                 module,
                 scales: Sequence,
                 valid_ranges: Sequence,
                 focus: bool = True,
                 chip_params: Sequence = DEFAULT_CHIP_PARAMS,
                 focus_stride: Optional[int] = None,
                 vis_dir: Optional[str] = None,
                 nms_across_chips: bool = False,
                 chip_holes: bool = False,
                 **kwargs):
        super().__init__(module, scales, valid_ranges, **kwargs)
        self.focus = bool(focus)
        self.nms_across_chips = bool(nms_across_chips)
        self.chip_holes = bool(chip_holes)
        self.chip_params = [tuple(p) for p in chip_params]
        if len(self.chip_params) != len(self.scales) - 1:
            raise ValueError(
                f'AutoFocusTTAModel: chip_params needs one (dilation, '
                f'threshold, min_size) per finer scale ({len(self.scales) - 1}'
                f' for {len(self.scales)} scales), got {self.chip_params!r}')
        for dilation, threshold, min_size in self.chip_params:
            # fail at build time on bad parameters
            generate_focus_chips(
                np.zeros((1, 1)), threshold, dilation, min_size, (16, 16))
        self.focus_stride = focus_stride
        self.vis_dir = vis_dir

    def reset_stats(self) -> None:
        super().reset_stats()
        self.sniper_stats['full_pixels'] = np.zeros(len(self.scales))
        self.focus_records = []

    # ------------------------------------------------------------------
    def _chip_views(self, chips: np.ndarray, scale_idx: int, height: int,
                    width: int) -> tuple:
        """Integer regions (orig px) of the FocusChips at a scale, tiled
        where a chip is larger than the pixel budget, the factor, and the
        index of the chip each region belongs to."""
        factor = compute_scale_factor(self.scales[scale_idx], (height, width))
        cfg = self.tile_cfg
        regions, owners = [], []
        for chip_idx, (x1, y1, x2, y2) in enumerate(chips):
            x1, y1 = max(int(math.floor(x1)), 0), max(int(math.floor(y1)), 0)
            x2 = min(int(math.ceil(x2)), width)
            y2 = min(int(math.ceil(y2)), height)
            if x2 <= x1 or y2 <= y1:
                continue
            tiles = plan_scale_tiles((y2 - y1, x2 - x1),
                                     factor,
                                     max_pixels=cfg['max_pixels'],
                                     tile_size=cfg['tile_size'],
                                     max_object_size=self._ranges[scale_idx,
                                                                  1],
                                     edge_margin=cfg['edge_margin'],
                                     overlap=cfg['overlap'])
            for tx1, ty1, tx2, ty2 in np.asarray(tiles).reshape(-1, 4):
                regions.append(
                    (x1 + int(tx1), y1 + int(ty1), x1 + int(tx2),
                     y1 + int(ty2)))
                owners.append(chip_idx)
        return regions, factor, owners

    def _focus_chips(self, view: dict, params: tuple) -> np.ndarray:
        pred = view.pop('pred')
        if 'pred_focus_map' not in pred:
            raise KeyError(
                'AutoFocusTTAModel needs a detector that predicts focus maps '
                "(type='AutoFocusDetector' with a focus_head); "
                f'{type(self.module).__name__} gave none. Set focus=False '
                'to run the full multi-scale test instead.')
        fmap = pred.pred_focus_map
        stride = self.focus_stride or fmap.metainfo.get('stride', 16)
        x1, y1, x2, y2 = view['region']
        dilation, threshold, min_size = params
        view['focus_map'] = fmap.data[0].detach().float().cpu().numpy()
        view['focus_stride'] = stride
        return generate_focus_chips(
            view['focus_map'],
            threshold,
            dilation,
            min_size, (y2 - y1, x2 - x1),
            stride=stride,
            parent_offset=(x1, y1),
            scale=view['factor'],
            holes=self.chip_holes)

    def test_step(self, data: dict) -> List[DetDataSample]:
        """Run AutoFocus on a batch (``inputs``, ``data_samples``)."""
        start = time.perf_counter()
        inputs, data_samples, sizes = self._unpack_batch(data)
        stats = self.sniper_stats
        num_scales = len(self.scales)
        per_image: List[List[DetDataSample]] = [[] for _ in inputs]
        flips = (False, True) if self.flip else (False, )
        chips = [None] * len(inputs)  # FocusChips of the current scale
        drawn = [[] for _ in inputs]  # per image: (scale_idx, chips)
        maps = [None] * len(inputs)  # coarsest focus map, for pictures
        records = [dict(pixels=np.zeros(num_scales),
                        full_pixels=np.zeros(num_scales))
                   for _ in inputs]
        order = list(range(num_scales - 1, -1, -1))  # coarse to fine
        for step, scale_idx in enumerate(order):
            scale_start = time.perf_counter()
            last = step == len(order) - 1
            views, by_image = [], [[] for _ in inputs]
            for image_idx, (height, width) in enumerate(sizes):
                full = math.prod(
                    scaled_size((height, width),
                                compute_scale_factor(self.scales[scale_idx],
                                                     (height, width))))
                stats['full_pixels'][scale_idx] += full
                records[image_idx]['full_pixels'][scale_idx] = full
                if step == 0 or not self.focus:
                    regions, factor = self._views(scale_idx, height, width)
                    owners = [0] * len(regions)
                    cut = len(regions) > 1
                else:
                    regions, factor, owners = self._chip_views(
                        chips[image_idx], scale_idx, height, width)
                    cut = True
                    drawn[image_idx].append((scale_idx, chips[image_idx]))
                stats['tiled_images'][scale_idx] += (
                    step == 0 or not self.focus) and len(regions) > 1
                for owner, region in zip(owners, regions):
                    for flip in flips:
                        view = dict(
                            image=image_idx,
                            image_hw=(height, width),
                            region=tuple(int(v) for v in region),
                            chip=owner,
                            factor=factor,
                            flip=flip,
                            tiled=cut,
                            keep_pred=self.focus and not last and not flip)
                        views.append(view)
                        by_image[image_idx].append(view)
            for first in range(0, len(views), self.batch_size):
                self._run_views(views[first:first + self.batch_size], inputs,
                                data_samples)
            for view in views:
                x1, y1, x2, y2 = view['region']
                pixels = math.prod(scaled_size((y2 - y1, x2 - x1),
                                               view['factor']))
                stats['pixels'][scale_idx] += pixels
                records[view['image']]['pixels'][scale_idx] += pixels
            stats['views'][scale_idx] += len(views)
            if self.focus and not last:
                params = self.chip_params[step]
                for image_idx, image_views in enumerate(by_image):
                    found = [
                        self._focus_chips(v, params) for v in image_views
                        if v['keep_pred']
                    ]
                    if step == 0:
                        maps[image_idx] = [
                            v for v in image_views if 'focus_map' in v
                        ]
                    chips[image_idx] = (np.concatenate(found) if found else
                                        np.zeros((0, 4)))
            on_chips = self.focus and step > 0 and not self.nms_across_chips
            for image_idx, image_views in enumerate(by_image):
                per_image[image_idx].append(
                    self._chip_scale_result(data_samples[image_idx],
                                            scale_idx, image_views)
                    if on_chips else self._scale_result(
                        data_samples[image_idx], scale_idx, image_views))
            stats['scale_seconds'][scale_idx] += (
                time.perf_counter() - scale_start)
        merged = self.merge_preds(per_image)
        outputs = []
        for image_idx, (sample, result) in enumerate(zip(data_samples,
                                                         merged)):
            sample.pred_instances = result.pred_instances
            outputs.append(sample)
            records[image_idx]['img_path'] = sample.metainfo.get('img_path')
            self.focus_records.append(records[image_idx])
            if self.vis_dir:
                self._draw(inputs[image_idx], sample, maps[image_idx],
                           drawn[image_idx])
        stats['images'] += len(inputs)
        stats['seconds'] += time.perf_counter() - start
        return outputs

    def _chip_scale_result(self, data_sample, scale_idx: int,
                           views: List[dict]) -> DetDataSample:
        """One image's detections on the FocusChips of one scale: the
        views of each chip (its tiles, its flipped copy) merged by
        ``view_nms`` as the views of a whole image are, the chips only
        concatenated (the reference's ``aggregate`` puts every chip's
        detections into the final Soft-NMS)."""
        by_chip = {}
        for view in views:
            by_chip.setdefault(view['chip'], []).append(view)
        sample = self._scale_result(data_sample, scale_idx, [])
        if by_chip:
            sample.pred_instances = _cat([
                self._merge_views([v['result'] for v in group])
                for group in by_chip.values()
            ])
        return sample

    # ------------------------------------------------------------------
    def _draw(self, img, sample, map_views: Optional[list],
              chips_by_scale: list) -> None:
        """Picture of one image: coarsest focus map, FocusChips per scale."""
        canvas = img.detach().cpu().numpy().transpose(1, 2, 0)
        canvas = np.ascontiguousarray(canvas[..., :3]).astype(np.uint8)
        height, width = canvas.shape[:2]
        for map_view in map_views or []:
            fmap = map_view['focus_map']
            x1, y1, x2, y2 = map_view['region']
            stride, factor = map_view['focus_stride'], map_view['factor']
            cells_w = int(math.ceil((x2 - x1) * factor / stride))
            cells_h = int(math.ceil((y2 - y1) * factor / stride))
            fmap = fmap[:cells_h, :cells_w]
            # each cell covers stride / factor orig px
            heat = cv2.resize(
                (fmap * 255).astype(np.uint8),
                (int(round(fmap.shape[1] * stride / factor)),
                 int(round(fmap.shape[0] * stride / factor))),
                interpolation=cv2.INTER_NEAREST)[:y2 - y1, :x2 - x1]
            heat = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
            region = canvas[y1:y1 + heat.shape[0], x1:x1 + heat.shape[1]]
            region[:] = cv2.addWeighted(region, 0.6, heat, 0.4, 0)
        order = list(range(len(self.scales) - 1, -1, -1))
        thick = max(2, int(round(max(height, width) / 500)))
        for scale_idx, chips in chips_by_scale:
            colour = _SCALE_COLOURS[order.index(scale_idx) %
                                    len(_SCALE_COLOURS)]
            for x1, y1, x2, y2 in np.asarray(chips).reshape(-1, 4):
                cv2.rectangle(canvas, (int(x1), int(y1)),
                              (int(x2) - 1, int(y2) - 1), colour, thick)
        name = osp.splitext(osp.basename(
            str(sample.metainfo.get('img_path', 'image'))))[0]
        os.makedirs(self.vis_dir, exist_ok=True)
        cv2.imwrite(osp.join(self.vis_dir, f'{name}_autofocus.jpg'), canvas)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f', focus={self.focus}, '
                f'chip_params={self.chip_params}, '
                f'nms_across_chips={self.nms_across_chips}, '
                f'chip_holes={self.chip_holes}')
