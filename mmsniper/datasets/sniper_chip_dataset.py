# Copyright (c) mmsniper contributors. All rights reserved.
"""A dataset wrapper that turns every training image into its SNIPER chips."""
import copy
import inspect
import multiprocessing
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset, Compose
from mmengine.dist import is_main_process
from mmengine.logging import MMLogger, print_log

from mmdet.registry import DATASETS
from mmsniper.chips import (check_lower_bound_scales, chip_driving_mask,
                            clip_bboxes, compute_scale_factors,
                            containment_matrix, generate_multiscale_chips,
                            generate_negative_chips, normalize_valid_ranges,
                            validity_ranges)
from mmsniper.utils.progress import DelayedProgressBar
from .chip_settings import (check_chip_dataset_args, report_gt_validity,
                            warn_plain_index)
from .chip_table import ChipIndex, ChipTable
from .image_io import DEFAULT_MAX_IMAGE_PIXELS
from .proposals import ProposalSet, load_proposals

REFERENCE_COCO_SCALES = (3.0, 1.667, (-1, 512))
REFERENCE_COCO_TRAIN_RANGES = ((-1, 80), (32, 150), (120, -1))
# DEFAULT_MAX_IMAGE_PIXELS (2.5e9 px, e.g. a 50,000 x 50,000 aerial mosaic)
# is shared with the loader, LoadSniperChipFromFile(max_image_pixels=...).


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
    ignored = np.array(
        [bool(inst.get('ignore_flag', 0)) for inst in instances], dtype=bool)
    finite = np.isfinite(boxes).all(axis=1)
    degenerate = ~finite | (boxes[:, 2] <= boxes[:, 0]) | (
        boxes[:, 3] <= boxes[:, 1])
    return boxes, ignored, degenerate


def _image_chip_tables(job: tuple) -> List[ChipTable]:
    """Chips of one image at every scale (a picklable worker function)."""
    (img_idx, boxes, gt_ids, image_size, scales, valid_ranges, chip_size,
     stride, seed, lower_bound_scales) = job
    rng = None if seed is None else np.random.default_rng([seed, img_idx])
    tables = []
    per_scale = generate_multiscale_chips(
        boxes, image_size, scales, valid_ranges, chip_size=chip_size,
        stride=stride, rng=rng, lower_bound_scales=lower_bound_scales)
    for scale_idx, result in enumerate(per_scale):
        if len(result.chips):
            tables.append(
                ChipTable.from_image_chips(img_idx, scale_idx, result.chips,
                                           result.gt_chip, gt_ids))
    return tables


def _image_negative_tables(job: tuple) -> List[ChipTable]:
    """Negative chips of one image at every scale (picklable worker).

    A GT is valid in a negative chip when it is valid at the chip's scale
    (:func:`~mmsniper.chips.validity_ranges`: the scale's range, its lower
    bound dropped at the non-coarsest scales with
    ``lower_bound_scales='coarsest'``) and lies entirely inside it; every
    other GT there is ignored.
    """
    (img_idx, boxes, gt_ids, image_size, proposals, pos_chips, scales,
     valid_ranges, chip_size, stride, min_proposals,
     lower_bound_scales) = job
    neg_chips = generate_negative_chips(
        proposals, pos_chips, image_size, scales, valid_ranges,
        chip_size=chip_size, stride=stride, min_proposals=min_proposals,
        lower_bound_scales=lower_bound_scales)
    factors = compute_scale_factors(scales, image_size)
    ranges = validity_ranges(
        normalize_valid_ranges(valid_ranges, len(scales)),
        lower_bound_scales).tolist()
    tables = []
    for scale_idx, chips in enumerate(neg_chips):
        if not len(chips):
            continue
        valid = chip_driving_mask(boxes, factors[scale_idx],
                                  ranges[scale_idx], chip_size, stride,
                                  image_size=image_size)
        grown = chips + np.array([-1e-3, -1e-3, 1e-3, 1e-3])
        member = containment_matrix(grown, clip_bboxes(boxes, image_size))
        member &= valid[None]
        tables.append(
            ChipTable.from_membership(img_idx, scale_idx, chips, member,
                                      gt_ids, is_negative=True))
    return tables


def _chunk_chip_tables(jobs: List[tuple]) -> ChipTable:
    return ChipTable.concatenate(
        [t for job in jobs for t in _image_chip_tables(job)])


def _chunk_negative_tables(jobs: List[tuple]) -> ChipTable:
    return ChipTable.concatenate(
        [t for job in jobs for t in _image_negative_tables(job)])


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
            32 (the paper's value). Must be below ``chip_size - 1``: a GT
            drives chips only when it is smaller than
            ``(chip_size - stride - 1) / scale``.
        stride_jitter (tuple, optional): ``(low, high)``: draw a new stride in
            ``[low, high)`` every epoch, as the reference code does with
            ``(56, 60)``; positive and negative chips both follow it.
            Defaults to None (fixed ``stride``).
        neg_proposals (dict, optional): Mine negative chips from proposals:
            ``dict(file=..., on_missing='skip', on_bad_box='drop',
            max_per_image=None, fmt='auto')``, passed to
            :func:`load_proposals` (mmdet ``DumpProposals`` pickles, COCO
            result json, ``tools/extract_proposals.py`` output). Keep images
            without GT in the wrapped dataset (``filter_empty_gt=False``) so
            that negative-only images contribute negatives. The proposals
            are loaded once; negative chips are mined against each epoch's
            positive chips and stride (once when the stride is fixed).
            Defaults to None.
        num_neg_chips_per_image (int): Negative chips drawn per image each
            epoch from that image's negative chips, pooled over scales.
            Defaults to 2 (reference).
        neg_min_proposals (int | Sequence[int]): A negative chip is kept when
            it holds more proposals than this; a sequence gives the finest
            scales' values, its last one repeating. Defaults to (25, 10).
        lower_bound_scales (str): Where a valid range's lower bound applies
            to GT validity and to negative-mining proposals: ``'all'``
            scales (the spec and the paper) or only the ``'coarsest'`` one
            (the authors' code: at the other scales a GT below the range is
            valid in the positive chip it overlaps most, partial overlap
            included, and small proposals drive negative chips). Positive
            chips are driven by the full ranges either way. Defaults to
            ``'all'``.
        max_image_pixels (float): Refuse an image whose declared
            ``width * height`` exceeds this (a corrupt size would make chip
            generation take minutes and gigabytes). Defaults to 2.5e9
            (50,000 x 50,000); raise it for larger mosaics.
        pipeline (list, optional): Replaces the wrapped dataset's pipeline.
        num_proc (int, optional): Processes for chip generation and negative
            mining. Defaults to None: one process below 5000 images, else up
            to 8.
        on_degenerate_box (str): ``'warn'`` (count and report boxes that are
            non-finite or have no area; they never drive chips) or
            ``'error'``. Defaults to ``'warn'``.
        max_refetch (int): Retries with another chip when the pipeline
            returns None. Defaults to 100.
        lazy_init (bool): Defer loading and chip generation to
            :meth:`full_init`. Defaults to False.
        **kwargs: Nothing else is accepted: keys of the wrapped dataset
            (``data_root``, ``ann_file``, ...) raise a TypeError that shows
            where they belong (:mod:`.chip_settings` checks every setting).
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset, None] = None,
                 scales: Sequence = REFERENCE_COCO_SCALES,
                 valid_ranges: Sequence = REFERENCE_COCO_TRAIN_RANGES,
                 chip_size: int = 512,
                 stride: int = 32,
                 stride_jitter: Optional[Tuple[int, int]] = None,
                 neg_proposals: Optional[dict] = None,
                 num_neg_chips_per_image: int = 2,
                 neg_min_proposals: Union[int, Sequence[int]] = (25, 10),
                 lower_bound_scales: str = 'all',
                 max_image_pixels: float = DEFAULT_MAX_IMAGE_PIXELS,
                 pipeline: Optional[List[Union[dict, Any]]] = None,
                 num_proc: Optional[int] = None,
                 on_degenerate_box: str = 'warn',
                 max_refetch: int = 100,
                 lazy_init: bool = False,
                 **kwargs) -> None:
        check_chip_dataset_args(
            dataset, kwargs, scales, valid_ranges, chip_size, stride,
            stride_jitter, [
                p for p in inspect.signature(type(self).__init__).parameters
                if p not in ('self', 'kwargs')
            ])
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
        self._check_strides()
        self.lower_bound_scales = check_lower_bound_scales(lower_bound_scales)
        if not max_image_pixels > 0:
            raise ValueError('SniperChipDataset: max_image_pixels must be '
                             f'positive, got {max_image_pixels!r}')
        self.max_image_pixels = max_image_pixels
        if on_degenerate_box not in ('warn', 'error'):
            raise ValueError("on_degenerate_box must be 'warn' or 'error'")
        self.on_degenerate_box = on_degenerate_box
        if neg_proposals is not None and not isinstance(neg_proposals, dict):
            neg_proposals = dict(file=neg_proposals)
        if neg_proposals is not None and not neg_proposals.get('file'):
            raise ValueError(
                'SniperChipDataset: neg_proposals needs a proposal file: '
                "neg_proposals=dict(file='proposals.pkl')")
        if num_neg_chips_per_image < 0:
            raise ValueError('num_neg_chips_per_image must be >= 0')
        self.neg_proposals = neg_proposals
        self.num_neg_chips_per_image = int(num_neg_chips_per_image)
        self.neg_min_proposals = neg_min_proposals
        self.num_proc = num_proc
        self.max_refetch = max_refetch
        self.pipeline = (
            Compose(pipeline) if pipeline is not None else None)
        self._fully_initialized = False
        self._image_gt: Optional[List[tuple]] = None
        self._tables: Dict[tuple, ChipTable] = {}
        self._proposals: Optional[ProposalSet] = None
        self.proposal_report: Optional[dict] = None
        if not lazy_init:
            self.full_init()

    def _check_strides(self) -> None:
        """Refuse strides that leave no room for any GT in a chip."""
        if self.chip_size <= 0 or self.stride <= 0:
            raise ValueError(
                'SniperChipDataset: chip_size and stride must be positive, '
                f'got chip_size={self.chip_size}, stride={self.stride}')
        if self.stride_jitter is None:
            name, largest = 'stride', self.stride
        else:
            name, largest = 'stride_jitter', self.stride_jitter[1] - 1
        if largest >= self.chip_size - 1:
            raise ValueError(
                f'SniperChipDataset: {name}='
                f'{getattr(self, name)} yields no chips with '
                f'chip_size={self.chip_size}: a GT drives chips only when '
                'its long side is below (chip_size - stride - 1) / scale; '
                f'set {name} well below chip_size (the paper: stride 32 for '
                '512 px chips; the reference code: stride_jitter=(56, 60))')

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
            if self.neg_proposals:
                cfg = dict(self.neg_proposals)
                self._proposals, self.proposal_report = load_proposals(
                    cfg.pop('file'), self._image_keys, **cfg)
            table = self.chip_table(epoch=0)
            if not len(table):
                self._raise_no_chips()
            self._log_summary(table)
        self._fully_initialized = True

    def _raise_no_chips(self) -> None:
        num_boxes = sum(len(b) for b, _, _ in self._image_gt)
        if not num_boxes:
            raise ValueError(
                f'SniperChipDataset: no chips: the {len(self._image_gt)} '
                'images hold no usable GT box (all crowd, ignored or '
                'degenerate) and no negative chip was mined; check the '
                'annotation file and filter_cfg, or give neg_proposals')
        raise ValueError(
            f'SniperChipDataset: no chips from {len(self._image_gt)} images '
            f'with {num_boxes} GT boxes: no GT is valid at any scale. Change '
            f'valid_ranges={self.valid_ranges} (sqrt-area, original px), '
            f'scales={self.scales}, or stride={self.stride} / stride_jitter='
            f'{self.stride_jitter} against chip_size={self.chip_size} (a GT '
            'must be smaller than (chip_size - stride - 1) / scale)')

    # ---- chip generation -------------------------------------------------
    def _collect_image_gt(self) -> List[tuple]:
        """Per image: (boxes, instance ids, (h, w)) of the GT that drive
        chips; reports degenerate boxes."""
        records, degenerate_total, examples = [], 0, []
        self._num_ignored = 0
        self._image_keys = []
        for idx in range(len(self.dataset)):
            info = self.dataset.get_data_info(idx)
            height, width = info.get('height'), info.get('width')
            if not height or not width or height <= 0 or width <= 0:
                raise ValueError(
                    f'SniperChipDataset: image {info.get("img_path", idx)} '
                    f'has no valid height/width ({height}, {width}) in its '
                    'data_info; chips need the image size')
            if float(width) * float(height) > self.max_image_pixels:
                field = 'width' if width >= height else 'height'
                raise ValueError(
                    f'SniperChipDataset: image {info.get("img_path", idx)} '
                    f'declares {field}={info[field]} (width x height = '
                    f'{width} x {height} = {float(width) * float(height):.3g}'
                    f' px), above max_image_pixels={self.max_image_pixels:.3g}'
                    '; fix the annotation, or raise SniperChipDataset('
                    'max_image_pixels=...) if the image really is that large')
            boxes, ignored, degenerate = image_gt(info)
            self._num_ignored += int((ignored & ~degenerate).sum())
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
            self._image_keys.append(
                dict(img_id=info.get('img_id'),
                     img_path=info.get('img_path', ''), height=int(height),
                     width=int(width)))
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

    def _epoch_key(self, epoch: int, seed: Optional[int]) -> tuple:
        """Epochs whose positive and mined negative chips are the same share
        a key: all of them without stride jitter."""
        return (0, None) if self.stride_jitter is None else (epoch, seed)

    def chip_table(self, epoch: int = 0,
                   seed: Optional[int] = None) -> ChipTable:
        """The chips of ``epoch``: every positive chip, then
        ``num_neg_chips_per_image`` negative chips per image drawn with
        ``(seed, epoch)`` from the negative chips mined for that epoch.

        Without stride jitter the positive chips are the same every epoch.
        """
        if self._image_gt is None:
            self.full_init()
        positives = self._positive_table(epoch, seed)
        if not self.neg_proposals or not self.num_neg_chips_per_image:
            return positives
        key = ('with_negatives', epoch, seed)
        if key not in self._tables:
            negatives = self.negative_table(epoch, seed)
            self._cache(key, ChipTable.concatenate(
                [positives, self._draw_negatives(negatives, epoch, seed)]))
        return self._tables[key]

    def _cache(self, key, table: ChipTable) -> None:
        """Keep the tables of the last two epochs or so (memory stays
        bounded); those of epoch 0 without a seed, which ``len()`` and
        integer indexing use, stay."""
        evictable = [k for k in self._tables if k[-2:] != (0, None)]
        if len(evictable) > 4:
            self._tables.pop(evictable[0])
        self._tables[key] = table

    def _draw_negatives(self, table: ChipTable, epoch: int,
                        seed: Optional[int]) -> ChipTable:
        """Up to ``num_neg_chips_per_image`` negative chips per image, drawn
        without replacement from the image's negative chips."""
        rng = np.random.default_rng([0 if seed is None else seed, epoch, 1])
        order = np.lexsort((rng.random(len(table)), table.img_idx))
        img_sorted = table.img_idx[order]
        first = np.searchsorted(img_sorted, img_sorted, side='left')
        rank = np.arange(len(order)) - first
        return table.take(
            np.sort(order[rank < self.num_neg_chips_per_image]))

    def _positive_table(self, epoch: int,
                        seed: Optional[int]) -> ChipTable:
        key = ('positive', ) + self._epoch_key(epoch, seed)
        if key not in self._tables:
            self._cache(key, self._generate(
                self.epoch_stride(epoch, seed),
                None if self.stride_jitter is None else
                (0 if seed is None else seed) + epoch))
        return self._tables[key]

    def _generate(self, stride: int, seed: Optional[int]) -> ChipTable:
        jobs = [(idx, boxes, gt_ids, size, self.scales, self.valid_ranges,
                 self.chip_size, stride, seed, self.lower_bound_scales)
                for idx, (boxes, gt_ids, size) in enumerate(self._image_gt)]
        return self._run_jobs(_chunk_chip_tables, jobs)

    def negative_table(self, epoch: int = 0,
                       seed: Optional[int] = None) -> ChipTable:
        """Every negative chip mined for ``epoch``, before the per-image
        draw: mined against that epoch's positive chips, on its stride.

        Without stride jitter the mining runs once and the proposals are
        then released; with it, once per epoch (cached for the last epochs),
        the proposals staying in memory as flat arrays.
        """
        if not self.neg_proposals:
            return ChipTable.empty()
        if self._image_gt is None:
            self.full_init()
        key = ('negative', ) + self._epoch_key(epoch, seed)
        if key not in self._tables:
            positives = self._positive_table(epoch, seed)
            stride = self.epoch_stride(epoch, seed)
            table = self._mine_negatives(positives, stride)
            if self.stride_jitter is not None:
                print_log(
                    f'SniperChipDataset: epoch {epoch}, stride {stride}: '
                    f'{len(table)} negative chips mined', logger='current')
            self._cache(key, table)
            if self.stride_jitter is None:
                # Mined once for good (a pinned cache entry): free the
                # proposals.
                self._proposals = None
        return self._tables[key]

    def _mine_negatives(self, positives: ChipTable,
                        stride: int) -> ChipTable:
        """Mine every image's negative chips against ``positives``."""
        proposals = self._proposals
        order = np.argsort(positives.img_idx, kind='stable')
        bounds = np.searchsorted(positives.img_idx[order],
                                 np.arange(len(self._image_gt) + 1))
        jobs = []
        for idx, (boxes, gt_ids, size) in enumerate(self._image_gt):
            props, _ = proposals.get(idx)
            if not len(props):
                continue
            rows = order[bounds[idx]:bounds[idx + 1]]
            pos_chips = [
                positives.boxes[rows[positives.scale_idx[rows] == k]].astype(
                    np.float64) for k in range(len(self.scales))
            ]
            jobs.append((idx, boxes, gt_ids, size, props, pos_chips,
                         self.scales, self.valid_ranges, self.chip_size,
                         stride, self.neg_min_proposals,
                         self.lower_bound_scales))
        return self._run_jobs(_chunk_negative_tables, jobs)

    def _run_jobs(self, chunk_fn, jobs: List[tuple]) -> ChipTable:
        """Run ``chunk_fn`` over chunks of ``jobs``, in processes for large
        datasets, with a progress bar."""
        num_proc = self.num_proc
        if num_proc is None:
            num_proc = 1 if len(jobs) < 5000 else min(
                8, multiprocessing.cpu_count())
        chunk = max(1, min(1000, len(jobs) // max(1, num_proc * 4)))
        chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
        bar = DelayedProgressBar(
            len(chunks), 'SniperChipDataset: ' +
            ('mining negative chips' if chunk_fn is _chunk_negative_tables
             else 'generating chips'))
        parts = []
        if num_proc > 1 and len(chunks) > 1:
            with multiprocessing.get_context('fork').Pool(num_proc) as pool:
                for part in pool.imap(chunk_fn, chunks):
                    parts.append(part)
                    bar and bar.update()
        else:
            for jobs_chunk in chunks:
                parts.append(chunk_fn(jobs_chunk))
                bar and bar.update()
        bar.close()
        return ChipTable.concatenate(parts)

    # ---- statistics --------------------------------------------------------
    def chip_stats(self, table: Optional[ChipTable] = None,
                   epoch: int = 0, seed: Optional[int] = None) -> dict:
        """Chip counts and pixels per image, against resizing whole images.

        Args:
            table (ChipTable, optional): An epoch's chips. Defaults to the
                chips of ``(epoch, seed)``.
            epoch (int): The epoch whose mined negative chips are counted
                (and whose chips are used without ``table``). Defaults to 0.
            seed (int, optional): The sampler's seed. Defaults to None.

        Returns:
            dict: ``num_images``, ``num_chips`` (positive plus the epoch's
            negative chips), ``num_positive_chips``, ``chips_per_scale``
            (positive), ``num_negative_chips_mined``,
            ``negative_chips_per_epoch``, ``chips_per_image``,
            ``images_without_chips``, ``chip_pixels_per_image``,
            ``finest_scale_pixels_per_image`` (the whole image resized to
            the finest scale, which is what chips replace) and
            ``resize_800x1333_pixels_per_image``.
        """
        table = self.chip_table(epoch, seed) if table is None else table
        sizes = np.array([size for _, _, size in self._image_gt],
                         dtype=np.float64).reshape(-1, 2)
        num_images = max(len(sizes), 1)
        short, long = sizes.min(axis=1), sizes.max(axis=1)
        factor = np.minimum(800.0 / short, 1333.0 / long)
        resize_pixels = (sizes[:, 0] * factor * sizes[:, 1] * factor).sum()
        finest = np.array([
            compute_scale_factors(self.scales[:1], size)[0]
            for size in sizes.astype(int)
        ]).reshape(-1)
        finest_pixels = (sizes[:, 0] * sizes[:, 1] * finest**2).sum()
        positive = ~table.is_negative
        return dict(
            num_images=len(sizes),
            num_chips=len(table),
            num_positive_chips=int(positive.sum()),
            chips_per_scale=np.bincount(
                table.scale_idx[positive].astype(np.int64),
                minlength=len(self.scales)).tolist(),
            num_negative_chips_mined=len(self.negative_table(epoch, seed)),
            negative_chips_per_epoch=int(table.is_negative.sum()),
            chips_per_image=len(table) / num_images,
            images_without_chips=int(
                len(sizes) - len(np.unique(table.img_idx))),
            chip_pixels_per_image=len(table) * self.chip_size**2 /
            num_images,
            finest_scale_pixels_per_image=finest_pixels / num_images,
            resize_800x1333_pixels_per_image=resize_pixels / num_images)

    def _log_summary(self, table: ChipTable) -> None:
        if not is_main_process():
            return
        stats = self.chip_stats(table)
        num_boxes = sum(len(b) for b, _, _ in self._image_gt)
        negatives = ''
        if self.neg_proposals:
            negatives = (
                f' + {stats["negative_chips_per_epoch"]} negative chips per '
                f'epoch (drawn from {stats["num_negative_chips_mined"]} '
                'mined)')
        print_log(
            f'SniperChipDataset: {stats["num_images"]} images, {num_boxes} '
            f'GT boxes -> {stats["num_positive_chips"]} positive chips (per '
            f'scale {stats["chips_per_scale"]}){negatives}; '
            f'{stats["chips_per_image"]:.2f} chips per image, '
            f'{stats["images_without_chips"]} images without chips; '
            f'chip px per image {stats["chip_pixels_per_image"]:.3g} vs '
            f'{stats["finest_scale_pixels_per_image"]:.3g} for the whole '
            'image at the finest scale and '
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
        report_gt_validity(self._image_gt, self.scales, self.valid_ranges,
                           self.chip_size, self.stride, self._num_ignored,
                           self._degenerate[0])

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
        """The wrapped ``data_info`` of a chip, with its ``sniper_chip``."""
        if self.test_mode:
            return self.dataset.get_data_info(idx)
        if not self._fully_initialized:
            self.full_init()
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
        warn_plain_index(idx)
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

    def update_skip_type_keys(self, skip_type_keys: Sequence[str]) -> None:
        """Drop the pipeline steps of these types from now on.

        What mmdet's ``MultiImageMixDataset`` offers ``YOLOXModeSwitchHook``
        (which turns off Mosaic, RandomAffine and MixUp for the last
        epochs); a chip pipeline has none of those, so the hook's switch to
        the L1 box loss is what remains of it.

        Args:
            skip_type_keys (Sequence[str]): Transform class names.
        """
        if isinstance(skip_type_keys, str) or not all(
                isinstance(k, str) for k in skip_type_keys):
            raise TypeError('skip_type_keys must be a sequence of transform '
                            f'names, got {skip_type_keys!r}')
        pipeline = self.pipeline or self.dataset.pipeline
        self.pipeline = Compose([
            t for t in pipeline.transforms
            if type(t).__name__ not in skip_type_keys
        ])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(dataset='
                f'{self.dataset.__class__.__name__}, scales={self.scales}, '
                f'valid_ranges={self.valid_ranges}, '
                f'chip_size={self.chip_size}, stride={self.stride}, '
                f'stride_jitter={self.stride_jitter}, '
                f'lower_bound_scales={self.lower_bound_scales!r})')
