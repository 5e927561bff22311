# Copyright (c) mmsniper contributors. All rights reserved.
"""A dataset wrapper that turns every training image into its SNIPER chips."""
import copy
import inspect
import multiprocessing
import os
import time
from concurrent.futures import Future
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset, Compose
from mmengine.dist import (all_gather_object, get_dist_info,
                           get_local_size, is_main_process)
from mmengine.logging import MMLogger, print_log

from mmdet.registry import DATASETS
from mmsniper.chips import (check_lower_bound_scales, compute_scale_factors,
                            normalize_valid_ranges)
from .chip_jobs import _chunk_chip_tables, _chunk_negative_tables, image_gt
from .chip_settings import (check_chip_dataset_args, report_gt_validity,
                            warn_plain_index)
from .chip_table import ChipIndex, ChipTable
from .chip_work import (BackgroundChipWork, in_main_thread, run_chunks,
                        shard_bounds, start_forkserver)
from .image_io import DEFAULT_MAX_IMAGE_PIXELS
from .proposals import ProposalSet, load_proposals

REFERENCE_COCO_SCALES = (3.0, 1.667, (-1, 512))
REFERENCE_COCO_TRAIN_RANGES = ((-1, 80), (32, 150), (120, -1))
# DEFAULT_MAX_IMAGE_PIXELS (2.5e9 px, e.g. a 50,000 x 50,000 aerial mosaic)
# is shared with the loader, LoadSniperChipFromFile(max_image_pixels=...).


def _ranks_on_this_node() -> int:
    """Training processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``,
    or mmengine's local group when one was set up)."""
    if os.environ.get('LOCAL_WORLD_SIZE', '').isdigit():
        return max(1, int(os.environ['LOCAL_WORLD_SIZE']))
    try:
        return max(1, get_local_size())
    except RuntimeError:  # distributed, but without a local group
        return 1


def _not_in_dataloader_worker() -> bool:
    from torch.utils.data import get_worker_info
    return get_worker_info() is None


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
            mining (per rank). Defaults to None: one process below 5000
            images (of this rank's share), else up to 8, at most the CPUs
            per rank on this node.
        shard_chip_work (bool): In distributed training, each rank generates
            and mines the chips of its share of the images (contiguous
            blocks balanced by boxes and proposals) and the shares are
            gathered (``mmengine.dist.all_gather_object``), instead of every
            rank doing all of it. The gathered table is row for row the
            single-process one. Needs the dataset built on every rank, as
            mmengine's runner does. Defaults to True.
        prefetch_next_epoch (bool): When the chips change per epoch
            (``stride_jitter``, or negative draws), :class:`SniperChipSampler`
            asks for the next epoch's chips as soon as an epoch starts, and
            they are computed in a background thread (process pools started
            from it use ``forkserver``) while the epoch trains; the same
            tables as computing them on demand. Defaults to True.
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
                 shard_chip_work: bool = True,
                 prefetch_next_epoch: bool = True,
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
        self.shard_chip_work = bool(shard_chip_work)
        self.prefetch_next_epoch = bool(prefetch_next_epoch)
        self._background = BackgroundChipWork()
        self._futures: Dict[tuple, Future] = {}
        #: per (epoch, seed) computed: how (``'on demand'`` or
        #: ``'background'``), this rank's ``work_s``, ``wait_s`` (what the
        #: caller waited, gather included), ``ready_wait_s`` (before the
        #: gather), ``images`` (this rank's share), ``world_size``,
        #: ``rank_work_s`` (every rank's work_s)
        self.chip_work_log: Dict[tuple, dict] = {}
        self._shard_bounds: Optional[tuple] = None
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
            table = self.chip_table(epoch=0, collective=True)
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
                   seed: Optional[int] = None,
                   collective: bool = False) -> ChipTable:
        """The chips of ``epoch``: every positive chip, then
        ``num_neg_chips_per_image`` negative chips per image drawn with
        ``(seed, epoch)`` from the negative chips mined for that epoch.

        Without stride jitter the positive chips are the same every epoch.

        Args:
            epoch (int): The epoch. Defaults to 0.
            seed (int, optional): The sampler's seed. Defaults to None.
            collective (bool): Every rank makes this same call at the same
                point (the sampler and :meth:`full_init` do): in distributed
                training the work is then shared across ranks
                (``shard_chip_work``). Other callers get the same table,
                computed by this rank alone. Defaults to False.
        """
        if self._image_gt is None:
            self.full_init()
        if not self.neg_proposals or not self.num_neg_chips_per_image:
            return self._positive_table(epoch, seed, collective)
        key = ('with_negatives', epoch, seed)
        table = self._tables.get(key)
        if table is None:
            ekey = self._epoch_key(epoch, seed)
            positives = self._tables.get(('positive', ) + ekey)
            negatives = self._tables.get(('negative', ) + ekey)
            if positives is None or negatives is None:
                # both in one pass (and one gather)
                positives, negatives = self._epoch_work(
                    epoch, seed, collective, negatives=True)
            if negatives is None:
                negatives = self.negative_table(epoch, seed, collective)
            table = ChipTable.concatenate(
                [positives, self._draw_negatives(negatives, epoch, seed)])
            self._cache(key, table)
        return table

    def _cache(self, key, table: ChipTable) -> None:
        """Keep the tables of the last epochs (memory stays bounded: the
        current and the next epoch's, three kinds each); those of epoch 0
        without a seed, which ``len()`` and integer indexing use, stay.

        Plain dict operations only (atomic under the GIL): the background
        thread caches too, and a forked dataloader worker must not inherit
        a held lock.
        """
        evictable = [k for k in list(self._tables) if k[-2:] != (0, None)]
        if len(evictable) > 8:
            self._tables.pop(evictable[0], None)
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

    def _positive_table(self, epoch: int, seed: Optional[int],
                        collective: bool = False) -> ChipTable:
        key = ('positive', ) + self._epoch_key(epoch, seed)
        table = self._tables.get(key)
        if table is None:
            table = self._epoch_work(epoch, seed, collective,
                                     negatives=False)[0]
        return table

    def negative_table(self, epoch: int = 0,
                       seed: Optional[int] = None,
                       collective: bool = False) -> ChipTable:
        """Every negative chip mined for ``epoch``, before the per-image
        draw: mined against that epoch's positive chips, on its stride.

        Without stride jitter the mining runs once and the proposals are
        then released; with it, once per epoch (cached for the last epochs),
        the proposals staying in memory as flat arrays. ``collective`` as in
        :meth:`chip_table`.
        """
        if not self.neg_proposals:
            return ChipTable.empty()
        if self._image_gt is None:
            self.full_init()
        key = ('negative', ) + self._epoch_key(epoch, seed)
        table = self._tables.get(key)
        if table is None:
            table = self._epoch_work(epoch, seed, collective,
                                     negatives=True)[1]
        return table

    # ---- who computes what: rank shards, background prefetch -------------
    def _shard(self, collective: bool) -> Tuple[int, int, int, int]:
        """(rank, world_size, lo, hi): this rank's block of images when the
        work is shared, else all of them on a world of one."""
        num = len(self._image_gt)
        rank, world_size = get_dist_info()
        if not (collective and self.shard_chip_work and world_size > 1
                and in_main_thread() and _not_in_dataloader_worker()):
            return 0, 1, 0, num
        if self._shard_bounds is None or self._shard_bounds[0] != world_size:
            # work estimate per image: its boxes, and a tenth of its
            # proposals (mining is per proposal, and vectorised)
            costs = np.array([len(boxes) + 1.0
                              for boxes, _, _ in self._image_gt])
            if self._proposals is not None:
                costs += np.diff(self._proposals.ptr)[:num] * 0.1
            self._shard_bounds = (world_size, shard_bounds(costs, world_size))
        bounds = self._shard_bounds[1]
        return rank, world_size, int(bounds[rank]), int(bounds[rank + 1])

    def _epoch_work(self, epoch: int, seed: Optional[int], collective: bool,
                    negatives: bool) -> Tuple[ChipTable, ChipTable]:
        """Compute (or take from the background) the positive chips of
        ``epoch`` and, with ``negatives``, its mined negative chips; gather
        the rank shards; cache both."""
        ekey = self._epoch_key(epoch, seed)
        rank, world_size, lo, hi = self._shard(collective)
        start = time.perf_counter()
        future = self._futures.pop((ekey, lo, hi), None)
        if future is not None:
            pos_part, neg_part, work_s = future.result()
            how = 'background'
        else:
            pos_part, neg_part, work_s = self._epoch_parts(
                epoch, seed, lo, hi, negatives, progress=True)
            how = 'on demand'
        ready_s = time.perf_counter() - start
        if world_size > 1:
            shards = all_gather_object((pos_part, neg_part, work_s))
            positives = ChipTable.concatenate([p for p, _, _ in shards])
            negs = [n for _, n, _ in shards]
            neg_table = (ChipTable.concatenate(negs) if all(
                n is not None for n in negs) else None)
            rank_work_s = [w for _, _, w in shards]
        else:
            positives, neg_table, rank_work_s = pos_part, neg_part, [work_s]
        self.chip_work_log[(epoch, seed)] = dict(
            how=how, work_s=work_s, wait_s=time.perf_counter() - start,
            ready_wait_s=ready_s, images=hi - lo, world_size=world_size,
            rank_work_s=rank_work_s)
        self._cache(('positive', ) + ekey, positives)
        if neg_table is not None:
            if self.stride_jitter is not None:
                print_log(
                    f'SniperChipDataset: epoch {epoch}, stride '
                    f'{self.epoch_stride(epoch, seed)}: {len(neg_table)} '
                    'negative chips mined', logger='current')
            self._cache(('negative', ) + ekey, neg_table)
            if self.stride_jitter is None:
                # Mined once for good (a pinned cache entry): free the
                # proposals.
                self._proposals = None
        return positives, neg_table

    def _epoch_parts(self, epoch: int, seed: Optional[int], lo: int, hi: int,
                     negatives: bool, progress: bool = False) -> tuple:
        """The positive chips of images ``[lo, hi)`` in ``epoch``, with
        ``negatives`` their mined negative chips (else None), and the
        seconds it took. Writes no cache and makes no collective call (it
        may run in the background thread)."""
        start = time.perf_counter()
        ekey = self._epoch_key(epoch, seed)
        stride = self.epoch_stride(epoch, seed)
        positives = self._tables.get(('positive', ) + ekey)
        if positives is not None:
            rows = np.flatnonzero((positives.img_idx >= lo)
                                  & (positives.img_idx < hi))
            pos_part = positives.take(rows)
        else:
            pos_part = self._generate(
                stride, None if self.stride_jitter is None else
                (0 if seed is None else seed) + epoch, lo, hi, progress)
        neg_part = None
        if negatives and self.neg_proposals:
            neg_part = self._mine_negatives(pos_part, stride, lo, hi,
                                            progress)
        return pos_part, neg_part, time.perf_counter() - start

    def prefetch(self, epoch: int, seed: Optional[int] = None) -> bool:
        """Start computing the chips of ``epoch`` in the background thread,
        this rank's share of them in distributed training. Called by
        :class:`SniperChipSampler` on every rank when an epoch starts, for
        the next one.

        Returns:
            bool: Whether work was started (False when the tables are
            cached, already on their way, the same every epoch, or
            ``prefetch_next_epoch`` is off).
        """
        if (not self.prefetch_next_epoch or self._image_gt is None
                or self.test_mode):
            return False
        ekey = self._epoch_key(epoch, seed)
        negatives = bool(self.neg_proposals)
        if ('positive', ) + ekey in self._tables and (
                not negatives or ('negative', ) + ekey in self._tables):
            return False
        _, _, lo, hi = self._shard(collective=True)
        if (ekey, lo, hi) in self._futures:
            return False
        # Drop what was prefetched and never asked for (a skipped epoch).
        for key in [k for k in self._futures if k[0] != ekey]:
            self._futures.pop(key).cancel()
        if self._num_proc(hi - lo) > 1:
            start_forkserver()
        self._futures[(ekey, lo, hi)] = self._background.submit(
            self._epoch_parts, epoch, seed, lo, hi, negatives)
        return True

    def _generate(self, stride: int, seed: Optional[int], lo: int = 0,
                  hi: Optional[int] = None,
                  progress: bool = True) -> ChipTable:
        hi = len(self._image_gt) if hi is None else hi
        jobs = [(idx, boxes, gt_ids, size, self.scales, self.valid_ranges,
                 self.chip_size, stride, seed, self.lower_bound_scales)
                for idx, (boxes, gt_ids, size) in enumerate(
                    self._image_gt[lo:hi], start=lo)]
        return self._run_jobs(_chunk_chip_tables, jobs, progress)

    def _mine_negatives(self, positives: ChipTable, stride: int,
                        lo: int = 0, hi: Optional[int] = None,
                        progress: bool = True) -> ChipTable:
        """Mine the negative chips of images ``[lo, hi)`` against
        ``positives`` (which holds at least those images' chips)."""
        hi = len(self._image_gt) if hi is None else hi
        proposals = self._proposals
        order = np.argsort(positives.img_idx, kind='stable')
        bounds = np.searchsorted(positives.img_idx[order],
                                 np.arange(len(self._image_gt) + 1))
        jobs = []
        for idx in range(lo, hi):
            boxes, gt_ids, size = self._image_gt[idx]
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
        return self._run_jobs(_chunk_negative_tables, jobs, progress)

    def _num_proc(self, num_jobs: int) -> int:
        if self.num_proc is not None:
            return self.num_proc
        per_rank = max(1, multiprocessing.cpu_count() //
                       _ranks_on_this_node())
        return 1 if num_jobs < 5000 else min(8, per_rank)

    def _run_jobs(self, chunk_fn, jobs: List[tuple],
                  progress: bool = True) -> ChipTable:
        """Run ``chunk_fn`` over chunks of ``jobs``, in processes for large
        datasets (:func:`~.chip_work.run_chunks`)."""
        num_proc = self._num_proc(len(jobs))
        title = 'SniperChipDataset: ' + (
            'mining negative chips' if chunk_fn is _chunk_negative_tables
            else 'generating chips')
        return run_chunks(chunk_fn, jobs, num_proc, title,
                          progress=progress and in_main_thread())

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

    def __getstate__(self) -> dict:
        # A copy (a dataloader worker under ``spawn``) takes the tables,
        # not the background work in flight.
        state = self.__dict__.copy()
        state['_futures'] = {}
        return state

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(dataset='
                f'{self.dataset.__class__.__name__}, scales={self.scales}, '
                f'valid_ranges={self.valid_ranges}, '
                f'chip_size={self.chip_size}, stride={self.stride}, '
                f'stride_jitter={self.stride_jitter}, '
                f'lower_bound_scales={self.lower_bound_scales!r})')
