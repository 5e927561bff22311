# Copyright (c) mmsniper contributors. All rights reserved.
"""A dataset wrapper that turns every training image into its SNIPER chips."""
import copy
import multiprocessing
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset, Compose
from mmengine.logging import MMLogger, print_log
from mmengine.utils import ProgressBar

from mmdet.registry import DATASETS
from mmsniper.chips import (compute_scale_factors, generate_scale_chips,
                            normalize_valid_ranges)
from .chip_table import ChipIndex, ChipTable

REFERENCE_COCO_SCALES = (3.0, 1.667, (-1, 512))
REFERENCE_COCO_TRAIN_RANGES = ((-1, 80), (32, 150), (120, -1))


def image_gt(data_info: dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes of an image's instances as mmdet's LoadAnnotations sees them.

    Args:
        data_info (dict): One ``data_list`` entry of an mmdet dataset.

    Returns:
        tuple: (N, 4) float64 boxes, (N,) bool ignore flags, and (N,) bool
        degenerate flags (non-finite or without positive width and height).
    """
    instances = data_info.get('instances', [])
    boxes = np.array([inst['bbox'] for inst in instances],
                     dtype=np.float64).reshape(-1, 4)
    ignored = np.array([bool(inst.get('ignore_flag', 0)) for inst in instances],
                       dtype=bool)
    finite = np.isfinite(boxes).all(axis=1)
    degenerate = ~finite | (boxes[:, 2] <= boxes[:, 0]) | (
        boxes[:, 3] <= boxes[:, 1])
    return boxes, ignored, degenerate


def _image_chip_tables(job: tuple) -> List[ChipTable]:
    """Chips of one image at every scale (a picklable worker function)."""
    (img_idx, boxes, gt_ids, image_size, scales, valid_ranges, chip_size,
     stride, seed) = job
    rng = None if seed is None else np.random.default_rng([seed, img_idx])
    tables = []
    for scale_idx, (scale, valid_range) in enumerate(zip(scales,
                                                         valid_ranges)):
        result = generate_scale_chips(
            boxes, image_size, scale, valid_range, chip_size=chip_size,
            stride=stride, rng=rng)
        if len(result.chips):
            tables.append(
                ChipTable.from_image_chips(img_idx, scale_idx, result.chips,
                                           result.gt_chip, gt_ids))
    return tables


def _chunk_chip_tables(jobs: List[tuple]) -> ChipTable:
    return ChipTable.concatenate(
        [t for job in jobs for t in _image_chip_tables(job)])


@DATASETS.register_module()
class SniperChipDataset:
    """Expand each training image of any mmdet dataset into SNIPER chips.

    Each sample is one chip: the wrapped dataset's ``data_info`` plus a
    ``sniper_chip`` dict that :class:`SniperChipCrop` consumes. Positive chips
    greedily cover the ground truth that is valid at each scale (see
    ``mmsniper.chips``). In test mode the wrapped dataset is used unchanged.

    Use it with :class:`SniperChipSampler`, which redraws the chips per epoch
    when ``stride_jitter`` is set and shards them across ranks. An integer
    index addresses the chips of epoch 0.

    Args:
        dataset (dict | BaseDataset): The wrapped dataset or its config.
        scales (Sequence): Training scales, finest first: float factors or
            ``(short_target, long_cap)`` resolution pairs.
        valid_ranges (Sequence): One ``(lo, hi)`` sqrt-area range in original
            px per scale, -1 for an open side.
        chip_size (int): Chip side in chip px. Defaults to 512.
        stride (int): Step of the candidate chip grid in chip px. Defaults to
            32 (the paper's value).
        stride_jitter (tuple, optional): ``(low, high)``: draw a new stride in
            ``[low, high)`` every epoch, as the reference code does with
            ``(56, 60)``. Defaults to None (fixed ``stride``).
        pipeline (list, optional): Replaces the wrapped dataset's pipeline.
        num_proc (int, optional): Processes for chip generation. Defaults to
            None: one process below 5000 images, else up to 8.
        on_degenerate_box (str): ``'warn'`` (count and report boxes that are
            non-finite or have no area; they never drive chips) or
            ``'error'``. Defaults to ``'warn'``.
        max_refetch (int): Retries with another chip when the pipeline
            returns None. Defaults to 100.
        lazy_init (bool): Defer loading and chip generation to
            :meth:`full_init`. Defaults to False.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 scales: Sequence = REFERENCE_COCO_SCALES,
                 valid_ranges: Sequence = REFERENCE_COCO_TRAIN_RANGES,
                 chip_size: int = 512,
                 stride: int = 32,
                 stride_jitter: Optional[Tuple[int, int]] = None,
                 pipeline: Optional[List[Union[dict, Any]]] = None,
                 num_proc: Optional[int] = None,
                 on_degenerate_box: str = 'warn',
                 max_refetch: int = 100,
                 lazy_init: bool = False) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        self.dataset = dataset
        if len(scales) != len(valid_ranges):
            raise ValueError(
                f'SniperChipDataset: {len(scales)} scales but '
                f'{len(valid_ranges)} valid_ranges; give one range per scale')
        normalize_valid_ranges(valid_ranges, len(scales))
        self.scales = tuple(
            tuple(s) if isinstance(s, (list, tuple)) else float(s)
            for s in scales)
        self.valid_ranges = tuple(tuple(r) for r in valid_ranges)
        self.chip_size = int(chip_size)
        self.stride = int(stride)
        if stride_jitter is not None:
            low, high = stride_jitter
            if not 0 < low < high:
                raise ValueError(
                    f'SniperChipDataset: stride_jitter must be (low, high) '
                    f'with 0 < low < high, got {stride_jitter}')
            stride_jitter = (int(low), int(high))
        self.stride_jitter = stride_jitter
        if on_degenerate_box not in ('warn', 'error'):
            raise ValueError("on_degenerate_box must be 'warn' or 'error'")
        self.on_degenerate_box = on_degenerate_box
        self.num_proc = num_proc
        self.max_refetch = max_refetch
        self.pipeline = (
            Compose(pipeline) if pipeline is not None else None)
        self._fully_initialized = False
        self._image_gt: Optional[List[tuple]] = None
        self._tables: Dict[Tuple[int, Optional[int]], ChipTable] = {}
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    @property
    def test_mode(self) -> bool:
        return bool(getattr(self.dataset, 'test_mode', False))

    def full_init(self) -> None:
        """Load the wrapped dataset and generate the chips of epoch 0."""
        if self._fully_initialized:
            return
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        if not self.test_mode:
            self._image_gt = self._collect_image_gt()
            table = self.chip_table(epoch=0)
            self._log_summary(table)
        self._fully_initialized = True

    # ---- chip generation -------------------------------------------------
    def _collect_image_gt(self) -> List[tuple]:
        """Per image: (boxes, instance ids, (h, w)) of the GT that drive
        chips; reports degenerate boxes."""
        records, degenerate_total, examples = [], 0, []
        for idx in range(len(self.dataset)):
            info = self.dataset.get_data_info(idx)
            height, width = info.get('height'), info.get('width')
            if not height or not width or height <= 0 or width <= 0:
                raise ValueError(
                    f'SniperChipDataset: image {info.get("img_path", idx)} '
                    f'has no valid height/width ({height}, {width}) in its '
                    'data_info; chips need the image size')
            boxes, ignored, degenerate = image_gt(info)
            if degenerate.any():
                degenerate_total += int(degenerate.sum())
                bad = boxes[degenerate][0].tolist()
                msg = (f'{info.get("img_path", idx)}: instance '
                       f'{int(np.flatnonzero(degenerate)[0])} bbox {bad}')
                if self.on_degenerate_box == 'error':
                    raise ValueError(
                        'SniperChipDataset: degenerate box (non-finite or '
                        f'without area) in {msg}')
                if len(examples) < 3:
                    examples.append(msg)
            keep = ~ignored & ~degenerate
            records.append((boxes[keep], np.flatnonzero(keep),
                            (int(height), int(width))))
        self._degenerate = (degenerate_total, examples)
        return records

    def epoch_stride(self, epoch: int, seed: Optional[int] = None) -> int:
        """The candidate grid stride used in ``epoch``."""
        if self.stride_jitter is None:
            return self.stride
        rng = np.random.default_rng([0 if seed is None else seed, epoch])
        return int(rng.integers(*self.stride_jitter))

    def chip_table(self, epoch: int = 0,
                   seed: Optional[int] = None) -> ChipTable:
        """All chips of ``epoch`` (positive chips; cached).

        Without stride jitter the chips are the same every epoch.
        """
        key = (0, None) if self.stride_jitter is None else (epoch, seed)
        if key not in self._tables:
            if len(self._tables) > 2:
                self._tables.pop(next(iter(self._tables)))
            self._tables[key] = self._generate(
                self.epoch_stride(epoch, seed),
                None if self.stride_jitter is None else
                (0 if seed is None else seed) + epoch)
        return self._tables[key]

    def _generate(self, stride: int, seed: Optional[int]) -> ChipTable:
        jobs = [(idx, boxes, gt_ids, size, self.scales, self.valid_ranges,
                 self.chip_size, stride, seed)
                for idx, (boxes, gt_ids, size) in enumerate(self._image_gt)]
        num_proc = self.num_proc
        if num_proc is None:
            num_proc = 1 if len(jobs) < 5000 else min(
                8, multiprocessing.cpu_count())
        chunk = max(1, min(1000, len(jobs) // max(1, num_proc * 4)))
        chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
        show = len(jobs) >= 5000
        bar = ProgressBar(len(chunks)) if show else None
        parts = []
        if num_proc > 1 and len(chunks) > 1:
            with multiprocessing.get_context('fork').Pool(num_proc) as pool:
                for part in pool.imap(_chunk_chip_tables, chunks):
                    parts.append(part)
                    bar and bar.update()
        else:
            for jobs_chunk in chunks:
                parts.append(_chunk_chip_tables(jobs_chunk))
                bar and bar.update()
        return ChipTable.concatenate(parts)

    # ---- statistics --------------------------------------------------------
    def chip_stats(self, table: Optional[ChipTable] = None) -> dict:
        """Chip counts and pixels per image, against one 800x1333 resize.

        Returns:
            dict: ``num_images``, ``num_chips``, ``chips_per_scale``,
            ``chips_per_image``, ``images_without_chips``,
            ``chip_pixels_per_image`` and ``resize_800x1333_pixels_per_image``.
        """
        table = self.chip_table(0) if table is None else table
        sizes = np.array([size for _, _, size in self._image_gt],
                         dtype=np.float64).reshape(-1, 2)
        num_images = len(sizes)
        short, long = sizes.min(axis=1), sizes.max(axis=1)
        factor = np.minimum(800.0 / short, 1333.0 / long)
        resize_pixels = (sizes[:, 0] * factor * sizes[:, 1] * factor).sum()
        return dict(
            num_images=num_images,
            num_chips=len(table),
            chips_per_scale=np.bincount(
                table.scale_idx.astype(np.int64),
                minlength=len(self.scales)).tolist(),
            chips_per_image=len(table) / max(num_images, 1),
            images_without_chips=int(num_images - len(
                np.unique(table.img_idx))),
            chip_pixels_per_image=len(table) * self.chip_size**2 /
            max(num_images, 1),
            resize_800x1333_pixels_per_image=resize_pixels /
            max(num_images, 1))

    def _log_summary(self, table: ChipTable) -> None:
        stats = self.chip_stats(table)
        num_boxes = sum(len(b) for b, _, _ in self._image_gt)
        print_log(
            f'SniperChipDataset: {stats["num_images"]} images, {num_boxes} '
            f'GT boxes -> {stats["num_chips"]} positive chips (per scale '
            f'{stats["chips_per_scale"]}, {stats["chips_per_image"]:.2f} per '
            f'image; {stats["images_without_chips"]} images without chips); '
            f'chip px per image {stats["chip_pixels_per_image"]:.3g} vs '
            f'{stats["resize_800x1333_pixels_per_image"]:.3g} for one '
            '800x1333 resize',
            logger='current')
        degenerate, examples = self._degenerate
        if degenerate:
            print_log(
                f'SniperChipDataset: {degenerate} degenerate GT boxes '
                '(non-finite or without area) drive no chip and are trained '
                f'as ignored where they fall in a chip; e.g. {examples}',
                logger=MMLogger.get_current_instance(), level=30)

    # ---- samples -----------------------------------------------------------
    def __len__(self) -> int:
        if self.test_mode:
            return len(self.dataset)
        return len(self.chip_table(0))

    def _resolve(self, idx: Union[int, ChipIndex]) -> ChipIndex:
        if isinstance(idx, ChipIndex):
            return idx
        if isinstance(idx, tuple):
            return ChipIndex(*idx)
        return self.chip_table(0).index(idx)

    def get_data_info(self, idx: Union[int, ChipIndex]) -> dict:
        """The wrapped ``data_info`` of a chip with its ``sniper_chip`` dict."""
        if self.test_mode:
            return self.dataset.get_data_info(idx)
        chip = self._resolve(idx)
        info = self.dataset.get_data_info(chip.img_idx)
        info['sniper_chip'] = dict(
            box=np.array(chip.box, dtype=np.float32),
            scale_factor=self.scale_factor(chip),
            scale_idx=chip.scale_idx,
            valid_range=self.valid_ranges[chip.scale_idx],
            valid_gt=np.array(chip.valid_gt, dtype=np.int64),
            chip_size=(self.chip_size, self.chip_size),
            is_negative=chip.is_negative)
        return info

    def scale_factor(self, chip: ChipIndex) -> float:
        """The original-to-chip scale factor of ``chip``."""
        size = self._image_gt[chip.img_idx][2]
        return float(compute_scale_factors(self.scales, size)[chip.scale_idx])

    def __getitem__(self, idx: Union[int, ChipIndex]) -> dict:
        if self.test_mode:
            return self.dataset[idx]
        if not self._fully_initialized:
            self.full_init()
        pipeline = self.pipeline or self.dataset.pipeline
        chip = self._resolve(idx)
        for _ in range(self.max_refetch + 1):
            data = pipeline(self.get_data_info(chip))
            if data is not None:
                return data
            table = self.chip_table(0)
            chip = table.index(np.random.randint(len(table)))
        raise RuntimeError(
            f'SniperChipDataset: the pipeline returned None for '
            f'{self.max_refetch + 1} chips in a row; check its transforms')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(dataset='
                f'{self.dataset.__class__.__name__}, scales={self.scales}, '
                f'valid_ranges={self.valid_ranges}, '
                f'chip_size={self.chip_size}, stride={self.stride}, '
                f'stride_jitter={self.stride_jitter})')
