# Copyright (c) mmsniper contributors. All rights reserved.
"""Speed of positive chip generation, against a naive baseline.

Runs :func:`mmsniper.chips.generate_positive_chips` with the reference COCO
training scales (3.0, 1.667, (-1, 512)), valid ranges ((-1, 80), (32, 150),
(120, -1)), chip 512 and stride 32, on the annotations of each data set in
``../shared/data`` (each replicated to ``--num-images`` images), and in the
same run a naive baseline (``K x N`` containment matrix and set-based
greedy cover, as the reference Python did) on a subset. Falls back to a
deterministic synthetic COCO-like workload when no annotation file exists.

``--growth`` instead times huge images (5,000 to 50,000 px a side, 500 to
5,000 boxes of 10 to 60 px, clustered like parking lots or spread
uniformly, 0.6 synthetic proposals per box for mining): positive chips and
negative mining per image, 3 runs each, and in the same run the previous
implementation (dense count map over the boxes' bounding region of the
grid, all-pairs overlap queries) where it finishes within its budget.

Usage::

    python benchmarks/bench_chip_generation.py [--num-images 20000]
    python benchmarks/bench_chip_generation.py --growth [--old-budget 120]
"""
import argparse
import contextlib
import json
import os.path as osp
import statistics
import sys
import time

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # benchmark the working tree

import mmsniper.chips.cover as cover_module  # noqa: E402
import mmsniper.chips.grid_cover as grid_cover_module  # noqa: E402
from mmsniper.chips import (  # noqa: E402
    candidate_chips,
    chip_driving_mask,  # noqa: E402
    compute_scale_factors,
    generate_positive_chips)
from mmsniper.chips.negative import generate_negative_chips  # noqa: E402

SCALES = (3.0, 1.667, (-1, 512))
VALID_RANGES = ((-1, 80), (32, 150), (120, -1))
CHIP_SIZE = 512
STRIDE = 32
COCO_TRAIN_IMAGES = 118_287
SHARED_DATA = osp.join(REPO_ROOT, '..', 'shared', 'data')
ANNOTATION_FILES = {
    'coco_val2014_100img':
    'coco_val2014_100img_ann/coco_val2014_100img/'
    'gt_instances_val2014_100img.json',
    'visdrone50':
    'visdrone50_annotations/visdrone2019-det-train-first50image.json',
}


def load_coco_json(path):
    """Load ``(image_size, gt_bboxes)`` per image from a COCO json.

    Args:
        path (str): The annotation file.

    Returns:
        list[tuple[tuple[int, int], np.ndarray]]: ``(height, width)`` and
        ``(N, 4)`` xyxy non-crowd boxes of each image.
    """
    with open(path) as file:
        coco = json.load(file)
    boxes_per_image = {image['id']: [] for image in coco['images']}
    for annotation in coco['annotations']:
        if not annotation.get('iscrowd', 0):
            x, y, w, h = annotation['bbox']
            boxes_per_image[annotation['image_id']].append(
                [x, y, x + w, y + h])
    return [((image['height'], image['width']),
             np.array(boxes_per_image[image['id']],
                      dtype=np.float64).reshape(-1, 4))
            for image in coco['images']]


def synthetic_workload(num_images=200, seed=0):
    """A deterministic COCO-like workload (640x480, ~7 boxes per image).

    Args:
        num_images (int): Distinct images to draw.
        seed (int): Random seed.

    Returns:
        list[tuple[tuple[int, int], np.ndarray]]: Images as in
        :func:`load_coco_json`.
    """
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(num_images):
        height, width = (480, 640) if rng.random() < 0.7 else (640, 480)
        num_boxes = rng.poisson(7)
        sizes = np.exp(rng.uniform(np.log(4), np.log(400), (num_boxes, 2)))
        corners = rng.uniform(0, 1, (num_boxes, 2)) * [width, height]
        images.append(
            ((height, width), np.concatenate([corners, corners + sizes],
                                             axis=1)))
    return images


def replicate(images, num_images):
    """Repeat ``images`` cyclically up to ``num_images`` entries."""
    return [images[index % len(images)] for index in range(num_images)]


def naive_positive_chips(gt_bboxes, image_size):
    """Reference-style positive chips: ``K x N`` matrix, set greedy.

    Args:
        gt_bboxes (np.ndarray): ``(N, 4)`` xyxy GT boxes.
        image_size (tuple[int, int]): ``(height, width)``.

    Returns:
        list[np.ndarray]: Per scale, the chips in orig px.
    """
    height, width = image_size
    clipped = np.minimum(np.maximum(gt_bboxes, 0), [width, height] * 2)
    result = []
    for factor, valid_range in zip(
            compute_scale_factors(SCALES, image_size), VALID_RANGES):
        valid = chip_driving_mask(clipped, factor, valid_range, CHIP_SIZE,
                                  STRIDE, image_size)
        boxes = clipped[valid] * factor
        if len(boxes) == 0:
            result.append(np.zeros((0, 4)))
            continue
        chips = candidate_chips((height * factor, width * factor), CHIP_SIZE,
                                STRIDE)
        inside = ((chips[:, None, 0] <= boxes[None, :, 0])
                  & (chips[:, None, 1] <= boxes[None, :, 1])
                  & (boxes[None, :, 2] <= chips[:, None, 2])
                  & (boxes[None, :, 3] <= chips[:, None, 3]))
        chip_matches = [set(np.flatnonzero(row).tolist()) for row in inside]
        picks = []
        while True:
            counts = [len(matches) for matches in chip_matches]
            best = int(np.argmax(counts))
            if counts[best] == 0:
                break
            picks.append(best)
            covered = chip_matches[best]
            chip_matches = [matches - covered for matches in chip_matches]
        result.append(np.minimum(chips[picks] / factor, [width, height] * 2))
    return result


def time_run(function, images, max_seconds=float('inf')):
    """Run ``function`` on the images, stopping after ``max_seconds``.

    Returns:
        tuple[int, float, float, int]: Images done, wall seconds, CPU
        seconds of this process and total number of chips.
    """
    num_chips = num_done = 0
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for image_size, gt_bboxes in images:
        num_chips += sum(
            len(chips) for chips in function(gt_bboxes, image_size))
        num_done += 1
        if time.perf_counter() - start_wall > max_seconds:
            break
    return (num_done, time.perf_counter() - start_wall,
            time.process_time() - start_cpu, num_chips)


def fast_positive_chips(gt_bboxes, image_size, rng=None):
    """:func:`generate_positive_chips` with the reference COCO setup."""
    return generate_positive_chips(gt_bboxes, image_size, SCALES, VALID_RANGES,
                                   CHIP_SIZE, STRIDE, rng)


def report(label, num_images, wall_seconds, cpu_seconds, num_chips):
    """Print one timing line.

    Returns:
        tuple[float, float]: Images per wall-clock second and per CPU
        second of this process.
    """
    rate = num_images / wall_seconds
    print(f'  {label:<22}: {num_images:6d} images in {wall_seconds:7.2f} s '
          f'(CPU {cpu_seconds:7.2f} s), {rate:8.0f} images/s, '
          f'{num_chips / num_images:.2f} chips/image')
    return rate, num_images / cpu_seconds


def benchmark(name, images, num_images, num_naive, naive_seconds):
    """Time fast and naive chip generation on one workload and print."""
    workload = replicate(images, num_images)
    num_boxes = sum(len(boxes) for _, boxes in workload)
    print(f'[{name}] {len(images)} distinct images replicated to '
          f'{num_images} ({num_boxes} boxes, '
          f'{num_boxes / num_images:.1f} per image)')
    fast_rate, fast_cpu_rate = report('fast',
                                      *time_run(fast_positive_chips, workload))
    rng = np.random.default_rng(0)
    report(
        'fast, random ties',
        *time_run(lambda boxes, size: fast_positive_chips(boxes, size, rng),
                  workload))
    naive_done, naive_wall, naive_cpu, naive_chips = time_run(
        naive_positive_chips, workload[:num_naive], naive_seconds)
    naive_rate, naive_cpu_rate = report('naive (K x N, sets)', naive_done,
                                        naive_wall, naive_cpu, naive_chips)
    subset_chips = time_run(fast_positive_chips, workload[:naive_done])[3]
    print(f'  speed ratio fast/naive: {fast_rate / naive_rate:.1f}x wall, '
          f'{fast_cpu_rate / naive_cpu_rate:.1f}x CPU; same chips on the '
          f'naive subset: {subset_chips == naive_chips} '
          f'({subset_chips} vs {naive_chips})')
    print(f'  extrapolated to {COCO_TRAIN_IMAGES} such images (one core): '
          f'fast {COCO_TRAIN_IMAGES / fast_rate:.1f} s wall, '
          f'{COCO_TRAIN_IMAGES / fast_cpu_rate:.1f} s CPU; naive '
          f'{COCO_TRAIN_IMAGES / naive_rate:.0f} s wall, '
          f'{COCO_TRAIN_IMAGES / naive_cpu_rate:.0f} s CPU')


GROWTH_SIZES = ((5000, 500), (10000, 1000), (20000, 2000), (30000, 3000),
                (50000, 5000))


def huge_image_boxes(side, num_boxes, layout, seed=0):
    """Boxes of 10 to 60 px on a ``side`` x ``side`` image.

    Args:
        side (int): Image side, px.
        num_boxes (int): Number of boxes.
        layout (str): ``'clustered'``: 100 boxes per cluster, normally
            spread (sigma 80 px) around uniform centers, the density of a
            parking lot; ``'uniform'``: centers uniform over the image.
        seed (int): Random seed.

    Returns:
        np.ndarray: ``(num_boxes, 4)`` xyxy boxes clipped to the image.
    """
    rng = np.random.default_rng(seed)
    if layout == 'clustered':
        centers = rng.uniform(0.02, 0.98, (max(1, num_boxes // 100), 2))
        middles = centers[rng.integers(len(centers), size=num_boxes)] * side
        middles += rng.normal(0, 80, (num_boxes, 2))
    else:
        middles = rng.uniform(0, side, (num_boxes, 2))
    sides = rng.uniform(10, 60, (num_boxes, 2))
    return np.clip(
        np.hstack([middles - sides / 2, middles + sides / 2]), 0, side)


@contextlib.contextmanager
def previous_implementation():
    """Run the chips module as before the sparse strategies: a dense count
    map of the boxes' bounding region of the grid, all-pairs overlaps."""
    saved = (grid_cover_module.DENSE_COVER_MAX_CELLS,
             cover_module.DENSE_PAIRS_MAX)
    grid_cover_module.DENSE_COVER_MAX_CELLS = 1 << 62
    cover_module.DENSE_PAIRS_MAX = 1 << 62
    try:
        yield
    finally:
        (grid_cover_module.DENSE_COVER_MAX_CELLS,
         cover_module.DENSE_PAIRS_MAX) = saved


def huge_image_chips(boxes, proposals, side, seed=None):
    """Positive chips and mined negative chips of one image.

    Returns:
        tuple[list, list, float, float]: Positive and negative chips per
        scale, and the seconds each took.
    """
    rng = None if seed is None else np.random.default_rng(seed)
    start = time.perf_counter()
    positives = generate_positive_chips(boxes, (side, side), SCALES,
                                        VALID_RANGES, CHIP_SIZE, STRIDE, rng)
    middle = time.perf_counter()
    negatives = generate_negative_chips(proposals, positives, (side, side),
                                        SCALES, VALID_RANGES, CHIP_SIZE,
                                        STRIDE, (25, 10))
    return positives, negatives, middle - start, time.perf_counter() - middle


def growth_table(old_budget, repeats=3):
    """Print seconds per image against image side and boxes."""
    from bench_negative_mining import synthetic_proposals
    print(f'huge images: boxes 10-60 px, 0.6 proposals per box; scales '
          f'{SCALES}, chip {CHIP_SIZE}, stride {STRIDE}, thresholds (25, 10)'
          f'; one process; new: min / median of {repeats} runs; old: 1 run, '
          f'skipped once the previous size took more than {old_budget / 10:g}'
          f' s (--old-budget / 10)')
    print(f'{"side":>7} {"boxes":>6} {"layout":<9} {"chips":>11} | '
          f'{"new: pos+mining":>16} {"(mining)":>9} {"random ties":>14} | '
          f'{"old":>8} {"same":>5}')
    for layout in ('clustered', 'uniform'):
        old_seconds = 0.0
        for side, num_boxes in GROWTH_SIZES:
            boxes = huge_image_boxes(side, num_boxes, layout)
            proposals = synthetic_proposals(
                boxes, (side, side), int(0.6 * num_boxes),
                np.random.default_rng(1))
            runs = [
                huge_image_chips(boxes, proposals, side)
                for _ in range(repeats)
            ]
            totals = [pos + neg for _, _, pos, neg in runs]
            mining = statistics.median(neg for _, _, _, neg in runs)
            tie_totals = [
                sum(huge_image_chips(boxes, proposals, side, seed)[2:])
                for seed in range(repeats)
            ]
            positives, negatives = runs[0][:2]
            chips = (f'{sum(map(len, positives))}+'
                     f'{sum(map(len, negatives))}')
            old, same = 'skipped', ''
            if old_seconds <= old_budget / 10:
                with previous_implementation():
                    old_pos, old_neg, pos, neg = huge_image_chips(
                        boxes, proposals, side)
                old_seconds = pos + neg
                old = f'{old_seconds:7.2f}s'
                same = str(
                    all(
                        np.array_equal(a, b)
                        for a, b in zip(positives + negatives,
                                        old_pos + old_neg)))
            print(f'{side:>7} {num_boxes:>6} {layout:<9} {chips:>11} | '
                  f'{min(totals):6.2f} / {statistics.median(totals):5.2f}s '
                  f'{mining:8.2f}s {min(tie_totals):5.2f} / '
                  f'{statistics.median(tie_totals):5.2f}s | {old:>8} '
                  f'{same:>5}',
                  flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--num-images',
        type=int,
        default=20000,
        help='images per workload after replication')
    parser.add_argument(
        '--num-naive',
        type=int,
        default=1000,
        help='most images timed for the naive baseline')
    parser.add_argument(
        '--naive-seconds',
        type=float,
        default=20.0,
        help='time budget of the naive baseline per '
        'workload')
    parser.add_argument(
        '--data-root',
        default=SHARED_DATA,
        help='folder holding the annotation files')
    parser.add_argument(
        '--growth',
        action='store_true',
        help='time huge images (5,000 to 50,000 px) instead')
    parser.add_argument(
        '--old-budget',
        type=float,
        default=120.0,
        help='with --growth, time the previous implementation at a size '
        'while its previous size took at most a tenth of this (seconds)')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.growth:
        sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
        growth_table(args.old_budget)
        return
    print(f'scales {SCALES}, valid ranges {VALID_RANGES}, chip {CHIP_SIZE},'
          f' stride {STRIDE}; one process, numpy {np.__version__}')
    workloads = {}
    for name, relative_path in ANNOTATION_FILES.items():
        path = osp.join(args.data_root, relative_path)
        if osp.isfile(path):
            workloads[name] = load_coco_json(path)
    if not workloads:
        print(f'no annotation file under {osp.abspath(args.data_root)}: '
              'using a deterministic synthetic COCO-like workload')
        workloads['synthetic'] = synthetic_workload()
    for name, images in workloads.items():
        benchmark(name, images, args.num_images,
                  min(args.num_naive, args.num_images), args.naive_seconds)


if __name__ == '__main__':
    main()
