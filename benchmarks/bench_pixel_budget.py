# Copyright (c) mmsniper contributors. All rights reserved.
"""Training pixels per image of SNIPER chips, against one 800x1333 resize
and the full 3-scale pyramid, on real annotations.

On the COCO val2014 (100 images) and VisDrone (50 images) annotations of
``../shared/data``, with the reference COCO training settings that
``SniperChipDataset`` defaults to (scales ``(3.0, 1.667, (-1, 512))``, the
last one the whole image with its long side at 512 px; valid ranges
``((-1, 80), (32, 150), (120, -1))`` sqrt-area in orig px; chip 512;
stride 32; 2 negative chips per image per epoch; a negative chip kept when
it holds more than 25 (finest scale) / 10 (other scales) proposals), it
reports per image:

* positive chips only (:func:`mmsniper.chips.generate_multiscale_chips`,
  cross-checked against :func:`mmsniper.chips.evaluate_settings`, the
  function behind ``tools/analysis_tools/analyze_scales.py``);
* positive chips plus ``--num-neg`` negative chips drawn at random from the
  image's negative chips (:func:`mmsniper.chips.generate_negative_chips`),
  pooled over scales, as the reference iterator and ``SniperChipDataset``
  do each epoch;
* the same against one keep-ratio resize to 800x1333 (mmdet's rule:
  short side 800, long side <= 1333; :func:`mmsniper.chips.resize_pixels`)
  and against the full pyramid (the whole image at each of the 3 scales).

Pixels are counted two ways: *chip px*, ``chip_size ** 2`` per chip (what
a batch of 512x512 chips costs the network: a chip of an image smaller
than the chip is padded), and *image px*, the image area inside the chips
at their scale (no padding). The resize and the pyramid have no padding.

No proposal file exists for these images, so negative chips come from
**simulated proposals**, ``--proposals-per-image`` per image (default 300,
the reference keeps the top 300 per scale): a share ``--gt-fraction``
(default 0.5) are copies of the image's GT boxes (drawn uniformly) with
their centre moved by ``N(0, 0.1)`` box sides and each side scaled by
``exp(N(0, 0.15))`` (an RPN fires around objects); the rest are random
boxes whose sqrt-area and aspect ratio are drawn from the data set's own
GT boxes and whose centre is uniform over the image; all are clipped to
the image. Proposals and the negative draw use ``numpy.random
.default_rng(seed)``, for each of ``--seeds`` seeds (0, 1, ...); the spread
over seeds is reported.

Usage::

    python benchmarks/bench_pixel_budget.py [--seeds 5]
        [--proposals-per-image 300] [--gt-fraction 0.5] [--stride 32]
        [--num-neg 2] [--data-root ../shared/data]
"""
import argparse
import json
import os.path as osp
import sys
import time
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

BENCH_DIR = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(BENCH_DIR)
sys.path.insert(0, REPO_ROOT)  # measure the working tree
sys.path.insert(0, BENCH_DIR)

from bench_chip_generation import ANNOTATION_FILES, SHARED_DATA  # noqa: E402

from mmsniper.chips import (  # noqa: E402
    evaluate_settings, generate_multiscale_chips, generate_negative_chips,
    image_scale_factors, resize_pixels)

#: ``SniperChipDataset`` defaults (REFERENCE_COCO_SCALES / _TRAIN_RANGES).
SCALES = (3.0, 1.667, (-1, 512))
VALID_RANGES = ((-1, 80), (32, 150), (120, -1))
CHIP_SIZE = 512
STRIDE = 32
#: Reference: ``n_neg_per_im = 2`` (lib/iterators/MNIteratorE2E.py);
#: ``SniperChipDataset(num_neg_chips_per_image=2)``.
NUM_NEG_CHIPS_PER_IMAGE = 2
#: Reference: more than 25 proposals (finest scale), 10 (other scales).
NEG_MIN_PROPOSALS = (25, 10)

PAPER_RATIO = 1.3
PAPER_CLAIM = ('"SNIPER only processes 30% more pixels compared to the '
               'commonly used single scale training at 800x1333 pixels on '
               'the COCO dataset. But, it also observes samples from extreme '
               'resolutions of the image pyramid, like 1400x2000 pixels."')
PAPER_SOURCE = ('B. Singh, M. Najibi, L. S. Davis, "SNIPER: Efficient '
                'Multi-Scale Training", NeurIPS 2018, abstract '
                '(arXiv:1805.09300)')


class Image(NamedTuple):
    """One annotated image: ``size`` is ``(height, width)``, ``boxes`` an
    ``(N, 4)`` float64 xyxy array in orig px."""
    size: tuple
    boxes: np.ndarray


class ImageBudget(NamedTuple):
    """Chips and pixels of one image (chip px are ``chip_size ** 2`` per
    chip; image px are the image area inside the chips at their scale).

    Attributes:
        pos_chips (np.ndarray): ``(S,)`` positive chips per scale.
        neg_mined (np.ndarray): ``(S,)`` negative chips mined per scale.
        neg_drawn (np.ndarray): ``(S,)`` negative chips drawn per scale.
        pos_image_px (float): Image px inside the positive chips.
        neg_image_px (float): Image px inside the drawn negative chips.
    """
    pos_chips: np.ndarray
    neg_mined: np.ndarray
    neg_drawn: np.ndarray
    pos_image_px: float
    neg_image_px: float


def load_annotations(path: str) -> List[Image]:
    """Images and their non-crowd boxes from a COCO json.

    Crowd / ignored boxes are left out (they never drive chips); a box
    without area is an error naming the file and the annotation.

    Args:
        path (str): The annotation file.

    Returns:
        list[Image]: One entry per image of ``images``, in file order.
    """
    with open(path) as file:
        coco = json.load(file)
    for key in ('images', 'annotations'):
        if key not in coco:
            raise ValueError(f'{path}: not a COCO annotation file (no '
                             f'"{key}")')
    boxes = {image['id']: [] for image in coco['images']}
    for ann in coco['annotations']:
        if ann.get('iscrowd', 0) or ann.get('ignore', 0):
            continue
        if ann['image_id'] not in boxes:
            raise ValueError(f'{path}: annotation {ann.get("id")} names '
                             f'image_id {ann["image_id"]}, not in "images"')
        x, y, w, h = ann['bbox']
        if not (w > 0 and h > 0):
            raise ValueError(f'{path}: annotation {ann.get("id")} has no '
                             f'area (bbox {ann["bbox"]})')
        boxes[ann['image_id']].append([x, y, x + w, y + h])
    images = []
    for image in coco['images']:
        if not (image.get('height', 0) > 0 and image.get('width', 0) > 0):
            raise ValueError(f'{path}: image {image.get("file_name")} has no '
                             'height/width')
        images.append(
            Image((int(image['height']), int(image['width'])),
                  np.array(boxes[image['id']], np.float64).reshape(-1, 4)))
    return images


def box_statistics(images: Sequence[Image]) -> tuple:
    """The data set's GT sqrt-areas and log aspect ratios (``log(h / w)``),
    the pools that :func:`simulate_proposals` draws random boxes from."""
    boxes = np.concatenate([image.boxes for image in images])
    if not len(boxes):
        raise ValueError('no GT box to draw simulated proposals from')
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.sqrt(wh[:, 0] * wh[:, 1]), np.log(wh[:, 1] / wh[:, 0])


def simulate_proposals(gt_boxes: np.ndarray, image_size: Sequence[int],
                       num: int, gt_fraction: float, sqrt_areas: np.ndarray,
                       log_aspects: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """Proposals simulated from GT statistics (no RPN output exists).

    ``round(gt_fraction * num)`` jittered copies of the image's GT boxes
    (none without GT): centre moved by ``N(0, 0.1)`` box sides, each side
    scaled by ``exp(N(0, 0.15))``; the rest random boxes, sqrt-area and
    ``log(h / w)`` drawn from ``sqrt_areas`` / ``log_aspects`` (the data
    set's GT), centre uniform over the image. All clipped to the image.

    Returns:
        np.ndarray: ``(num, 4)`` float64 xyxy boxes, orig px.
    """
    height, width = image_size
    num_gt = int(round(gt_fraction * num)) if len(gt_boxes) else 0
    src = gt_boxes[rng.integers(len(gt_boxes), size=num_gt)] if num_gt \
        else np.zeros((0, 4))
    wh = src[:, 2:] - src[:, :2]
    centres = (src[:, :2] + src[:, 2:]) / 2 + rng.normal(0, 0.1,
                                                         (num_gt, 2)) * wh
    wh = wh * np.exp(rng.normal(0, 0.15, (num_gt, 2)))
    num_random = num - num_gt
    side = rng.choice(sqrt_areas, num_random)
    aspect = np.exp(rng.choice(log_aspects, num_random) / 2)
    random_wh = np.stack([side / aspect, side * aspect], axis=1)
    random_centres = rng.uniform(0, 1, (num_random, 2)) * [width, height]
    centres = np.concatenate([centres, random_centres])
    wh = np.concatenate([wh, random_wh])
    boxes = np.hstack([centres - wh / 2, centres + wh / 2])
    return np.clip(boxes, 0, [width, height, width, height])


def image_budget(gt_boxes: np.ndarray,
                 image_size: Sequence[int],
                 proposals: Optional[np.ndarray] = None,
                 scales: Sequence = SCALES,
                 valid_ranges: Sequence = VALID_RANGES,
                 chip_size: int = CHIP_SIZE,
                 stride: int = STRIDE,
                 num_neg: int = NUM_NEG_CHIPS_PER_IMAGE,
                 min_proposals=NEG_MIN_PROPOSALS,
                 rng: Optional[np.random.Generator] = None) -> ImageBudget:
    """Positive chips, mined and drawn negative chips of one image.

    Positive chips: :func:`mmsniper.chips.generate_multiscale_chips`.
    Negative chips (when ``proposals`` is given):
    :func:`mmsniper.chips.generate_negative_chips` against the positive
    chips, then ``num_neg`` of them drawn without replacement, pooled over
    scales (``rng.permutation``, as the reference iterator does).

    Returns:
        ImageBudget: The counts and image px.
    """
    pos = generate_multiscale_chips(gt_boxes, image_size, scales, valid_ranges,
                                    chip_size, stride)
    factors = np.array([result.scale_factor for result in pos])
    pos_chips = np.array([len(result.chips) for result in pos])
    pos_image_px = sum(
        _image_px(result.chips, result.scale_factor) for result in pos)
    neg_mined = np.zeros(len(pos), dtype=np.int64)
    neg_drawn = np.zeros(len(pos), dtype=np.int64)
    neg_image_px = 0.0
    if proposals is not None and num_neg > 0:
        neg = generate_negative_chips(proposals,
                                      [result.chips for result in pos],
                                      image_size, scales, valid_ranges,
                                      chip_size, stride, min_proposals)
        neg_mined = np.array([len(chips) for chips in neg])
        if neg_mined.sum():
            rng = np.random.default_rng() if rng is None else rng
            pooled = np.concatenate(neg)
            scale_of = np.repeat(np.arange(len(neg)), neg_mined)
            drawn = rng.permutation(len(pooled))[:num_neg]
            neg_drawn = np.bincount(scale_of[drawn], minlength=len(neg))
            neg_image_px = float(
                sum(
                    _image_px(pooled[i:i + 1], factors[scale_of[i]])
                    for i in drawn))
    return ImageBudget(pos_chips, neg_mined, neg_drawn, float(pos_image_px),
                       neg_image_px)


def _image_px(chips: np.ndarray, factor: float) -> float:
    """Image area (scaled px) inside ``chips`` (orig px) at ``factor``."""
    wh = chips[:, 2:] - chips[:, :2]
    return float((wh[:, 0] * wh[:, 1]).sum() * factor**2)


class DatasetBudget(NamedTuple):
    """Per-image means over a data set (px are per image).

    ``pos_chips``, ``neg_mined`` and ``neg_drawn`` are per scale;
    ``images_with_neg`` is the share of images with a mined negative chip.
    """
    num_images: int
    pos_chips: np.ndarray
    neg_mined: np.ndarray
    neg_drawn: np.ndarray
    pos_chip_px: float
    neg_chip_px: float
    pos_image_px: float
    neg_image_px: float
    resize_px: float
    pyramid_px: float
    images_with_neg: float


def dataset_budget(images: Sequence[Image],
                   proposals: Optional[Sequence[np.ndarray]] = None,
                   scales: Sequence = SCALES,
                   valid_ranges: Sequence = VALID_RANGES,
                   chip_size: int = CHIP_SIZE,
                   stride: int = STRIDE,
                   num_neg: int = NUM_NEG_CHIPS_PER_IMAGE,
                   min_proposals=NEG_MIN_PROPOSALS,
                   rng: Optional[np.random.Generator] = None) -> DatasetBudget:
    """:func:`image_budget` of every image, averaged per image, with the
    px of one 800x1333 resize and of the full pyramid per image.

    Args:
        images (Sequence[Image]): The data set.
        proposals (Sequence[np.ndarray], optional): One ``(P, 4)`` array
            per image; None: positive chips only.

    Returns:
        DatasetBudget: Per-image means.
    """
    if proposals is not None and len(proposals) != len(images):
        raise ValueError(f'got proposals for {len(proposals)} images, '
                         f'{len(images)} images')
    budgets = [
        image_budget(image.boxes, image.size,
                     None if proposals is None else proposals[i], scales,
                     valid_ranges, chip_size, stride, num_neg, min_proposals,
                     rng) for i, image in enumerate(images)
    ]
    sizes = np.array([image.size for image in images], dtype=np.float64)
    factors = image_scale_factors(scales, sizes)
    pyramid = (sizes[:, :1] * sizes[:, 1:] * factors**2).sum(axis=1)
    num = len(images)
    pos_chips = np.mean([b.pos_chips for b in budgets], axis=0)
    neg_drawn = np.mean([b.neg_drawn for b in budgets], axis=0)
    return DatasetBudget(
        num_images=num,
        pos_chips=pos_chips,
        neg_mined=np.mean([b.neg_mined for b in budgets], axis=0),
        neg_drawn=neg_drawn,
        pos_chip_px=float(pos_chips.sum() * chip_size**2),
        neg_chip_px=float(neg_drawn.sum() * chip_size**2),
        pos_image_px=float(np.mean([b.pos_image_px for b in budgets])),
        neg_image_px=float(np.mean([b.neg_image_px for b in budgets])),
        resize_px=float(resize_pixels(sizes).mean()),
        pyramid_px=float(pyramid.mean()),
        images_with_neg=float(
            np.mean([b.neg_mined.sum() > 0 for b in budgets])))


def _scaled_size(size, factor) -> str:
    height, width = size
    return f'{width * factor:.0f}x{height * factor:.0f}'


def run_dataset(name: str, images: List[Image], args) -> None:
    """Measure and print the table of one data set."""
    num_boxes = sum(len(image.boxes) for image in images)
    sizes = np.array([image.size for image in images], dtype=np.float64)
    median = tuple(np.median(sizes, axis=0))
    factors = np.median(image_scale_factors(SCALES, sizes), axis=0)
    print(f'[{name}] {len(images)} images (median {median[1]:.0f}x'
          f'{median[0]:.0f}), {num_boxes} boxes ({num_boxes / len(images):.1f}'
          f' per image); the median image at each scale: ' +
          ', '.join(_scaled_size(median, f) for f in factors))
    positive = dataset_budget(images, None, SCALES, VALID_RANGES, CHIP_SIZE,
                              args.stride)
    report = evaluate_settings([image.boxes for image in images], sizes,
                               SCALES, VALID_RANGES, CHIP_SIZE, args.stride)
    chips = np.array(report.chips_per_scale) / len(images)
    if not np.allclose(chips, positive.pos_chips):
        raise RuntimeError(f'{name}: positive chips per scale disagree with '
                           f'evaluate_settings: {positive.pos_chips} vs '
                           f'{chips}')
    sqrt_areas, log_aspects = box_statistics(images)
    runs = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        proposals = [
            simulate_proposals(image.boxes, image.size,
                               args.proposals_per_image, args.gt_fraction,
                               sqrt_areas, log_aspects, rng)
            for image in images
        ]
        runs.append(
            dataset_budget(images, proposals, SCALES, VALID_RANGES, CHIP_SIZE,
                           args.stride, args.num_neg, NEG_MIN_PROPOSALS, rng))
    resize, pyramid = positive.resize_px, positive.pyramid_px

    def row(label, chips, chip_px, image_px, spread=''):
        chips = f'{chips:9.2f}' if chips is not None else f'{"-":>9}'
        image_px = f'{image_px / 1e6:9.3f}' if image_px is not None \
            else f'{"-":>9}'
        print(f'  {label:<38}{chips} {chip_px / 1e6:8.3f} '
              f'{image_px} {chip_px / resize:10.2f}x '
              f'{chip_px / pyramid:9.2f}x{spread}')

    print(f'  {"per image":<38}{"chips":>9} {"chip Mpx":>8} '
          f'{"image Mpx":>9} {"vs 800x1333":>11} {"vs pyramid":>10}')
    row('one 800x1333 resize (mmdet rule)', None, resize, resize)
    row('full 3-scale pyramid', None, pyramid, pyramid)
    row('SNIPER positive chips', positive.pos_chips.sum(),
        positive.pos_chip_px, positive.pos_image_px)
    total = np.array([r.pos_chip_px + r.neg_chip_px for r in runs])
    ratios = total / resize
    chips_total = np.mean(
        [r.pos_chips.sum() + r.neg_drawn.sum() for r in runs])
    image_total = np.mean([r.pos_image_px + r.neg_image_px for r in runs])
    row(
        f'SNIPER pos + {args.num_neg} neg (seed mean)', chips_total,
        total.mean(), image_total,
        f'  ({ratios.min():.2f}x..{ratios.max():.2f}x, sd {ratios.std():.3f}'
        f' over {args.seeds} seeds)')
    bound = positive.pos_chip_px + args.num_neg * CHIP_SIZE**2
    row(f'  bound: every image {args.num_neg} neg',
        positive.pos_chips.sum() + args.num_neg, bound, None)
    print(f'  {"SNIPER paper, COCO (abstract)":<38}{"-":>9} {"-":>8} '
          f'{"-":>9} {"~" + format(PAPER_RATIO, ".2f"):>10}x {"-":>10}')
    per_scale = ' / '.join(f'{c:.2f}' for c in positive.pos_chips)
    mined = np.mean([r.neg_mined for r in runs], axis=0)
    drawn = np.mean([r.neg_drawn for r in runs], axis=0)
    with_neg = np.mean([r.images_with_neg for r in runs])
    print(f'  positive chips per image per scale {SCALES}: {per_scale}; '
          f'evaluate_settings agrees ({report.pixels_vs_resize:.2f}x the '
          f'resize; {report.invalid_share:.1%} of boxes valid at no scale)')
    print('  negative chips per image per scale, mean over seeds: mined ' +
          ' / '.join(f'{m:.2f}' for m in mined) + ', drawn ' +
          ' / '.join(f'{d:.2f}' for d in drawn) +
          f'; images with a negative chip: {with_neg:.0%}')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--seeds',
        type=int,
        default=5,
        help='proposal simulations / negative draws')
    parser.add_argument('--proposals-per-image', type=int, default=300)
    parser.add_argument(
        '--gt-fraction',
        type=float,
        default=0.5,
        help='share of simulated proposals jittered from GT')
    parser.add_argument('--stride', type=int, default=STRIDE)
    parser.add_argument(
        '--num-neg',
        type=int,
        default=NUM_NEG_CHIPS_PER_IMAGE,
        help='negative chips drawn per image')
    parser.add_argument(
        '--data-root',
        default=SHARED_DATA,
        help='folder holding the annotation folders '
        '(default: ../shared/data beside the repository)')
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.proposals_per_image < 0 or args.num_neg < 0:
        parser.error('--seeds must be >= 1, --proposals-per-image and '
                     '--num-neg >= 0')
    if not 0 <= args.gt_fraction <= 1:
        parser.error('--gt-fraction must be in [0, 1]')
    missing = [
        osp.join(args.data_root, rel) for rel in ANNOTATION_FILES.values()
        if not osp.isfile(osp.join(args.data_root, rel))
    ]
    if missing:
        parser.error('needs the real annotations of ../shared/data beside '
                     'the repository (or --data-root); missing: ' +
                     ', '.join(osp.normpath(m) for m in missing))
    return args


def main(argv=None):
    args = parse_args(argv)
    start, cpu = time.perf_counter(), time.process_time()
    print(f'scales {SCALES}, valid ranges {VALID_RANGES} (sqrt-area, orig '
          f'px), chip {CHIP_SIZE}, stride {args.stride}; negatives: '
          f'{args.num_neg} drawn per image from the chips holding > '
          f'{NEG_MIN_PROPOSALS[0]} / {NEG_MIN_PROPOSALS[1]} proposals '
          '(finest / other scales)')
    print(f'proposals SIMULATED (no proposal file exists): '
          f'{args.proposals_per_image} per image, '
          f'{args.gt_fraction:.0%} jittered GT copies, the rest random boxes '
          'with the data set\'s GT sizes and aspect ratios, seeds 0..'
          f'{args.seeds - 1}')
    print('chip Mpx: 512x512 per chip (padded); image Mpx: image area '
          'inside the chips; ratios use chip Mpx')
    for name, rel in ANNOTATION_FILES.items():
        run_dataset(name, load_annotations(osp.join(args.data_root, rel)),
                    args)
    print(f'paper: {PAPER_CLAIM} ({PAPER_SOURCE})')
    print(f'run time {time.perf_counter() - start:.1f} s wall, '
          f'{time.process_time() - cpu:.1f} s CPU; numpy {np.__version__}')


if __name__ == '__main__':
    main()
