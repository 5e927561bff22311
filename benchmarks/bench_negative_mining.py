# Copyright (c) mmsniper contributors. All rights reserved.
"""Per-epoch cost of negative-chip mining in :class:`SniperChipDataset`.

With ``stride_jitter`` every epoch redraws the positive chips on a new grid
and mines the negative chips again against them. This script times both
steps per epoch through the dataset itself, on the annotations of
``../shared/data`` (COCO val2014 boxes, replicated to ``--num-images``
images; a synthetic COCO-like workload when absent), with the reference
setup: scales (3.0, 1.667, (-1, 512)), ranges ((-1, 80), (32, 150),
(120, -1)), chip 512, ``stride_jitter=(56, 60)``, thresholds (25, 10).

Proposals are synthetic (no RPN output of 20,000 images is shipped): per
image ``--proposals-per-image`` boxes, 70 % jittered copies of the image's
GT boxes (an RPN fires around objects) and 30 % in a few random clusters
(false-positive blobs, which make the negative chips).

Usage::

    python benchmarks/bench_negative_mining.py [--num-images 20000]
        [--num-proc 1] [--epochs 3]
"""
import argparse
import json
import os.path as osp
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # benchmark the working tree
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from bench_chip_generation import (ANNOTATION_FILES, SHARED_DATA,  # noqa
                                   load_coco_json, replicate,
                                   synthetic_workload)

SCALES = [3.0, 1.667, (-1, 512)]
VALID_RANGES = [(-1, 80), (32, 150), (120, -1)]


def synthetic_proposals(gt_bboxes, image_size, num, rng):
    """``num`` proposals: jittered GT copies and random clusters."""
    height, width = image_size
    num_gt_like = int(0.7 * num) if len(gt_bboxes) else 0
    parts = []
    if num_gt_like:
        src = gt_bboxes[rng.integers(len(gt_bboxes), size=num_gt_like)]
        wh = np.maximum(src[:, 2:] - src[:, :2], 1.0)
        centers = (src[:, :2] + src[:, 2:]) / 2 + rng.normal(
            0, 0.1, (num_gt_like, 2)) * wh
        wh = wh * np.exp(rng.normal(0, 0.15, (num_gt_like, 2)))
        parts.append(np.hstack([centers - wh / 2, centers + wh / 2]))
    rest = num - num_gt_like
    num_blobs = 4
    blob_centers = rng.uniform(0, 1, (num_blobs, 2)) * [width, height]
    which = rng.integers(num_blobs, size=rest)
    centers = blob_centers[which] + rng.normal(0, 40, (rest, 2))
    wh = np.exp(rng.uniform(np.log(8), np.log(200), (rest, 2)))
    parts.append(np.hstack([centers - wh / 2, centers + wh / 2]))
    boxes = np.concatenate(parts)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    keep = (boxes[:, 2] > boxes[:, 0] + 1) & (boxes[:, 3] > boxes[:, 1] + 1)
    return boxes[keep].astype(np.float32)


def write_workload(images, folder, num_proposals, seed=0):
    """A COCO json and a proposal file (``tools/extract_proposals.py``
    format) for ``images``."""
    from mmengine.fileio import dump
    rng = np.random.default_rng(seed)
    coco = dict(images=[], annotations=[],
                categories=[dict(id=1, name='object')])
    proposals = {}
    ann_id = 1
    for img_id, ((height, width), boxes) in enumerate(images, start=1):
        name = f'{img_id:06d}.jpg'
        coco['images'].append(
            dict(id=img_id, file_name=name, height=int(height),
                 width=int(width)))
        for x1, y1, x2, y2 in boxes.tolist():
            coco['annotations'].append(
                dict(id=ann_id, image_id=img_id, category_id=1,
                     bbox=[x1, y1, x2 - x1, y2 - y1],
                     area=(x2 - x1) * (y2 - y1), iscrowd=0))
            ann_id += 1
        props = synthetic_proposals(boxes, (height, width), num_proposals,
                                    rng)
        proposals[f'images/{name}'] = dict(
            bboxes=props, scores=np.linspace(1, 0.01, len(props),
                                             dtype=np.float32),
            img_id=img_id)
    ann_file = osp.join(folder, 'ann.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    prop_file = osp.join(folder, 'proposals.pkl')
    dump(proposals, prop_file)
    return ann_file, prop_file


def coco_workload(data_root, num_images):
    """COCO val2014 boxes of ``data_root`` (a synthetic COCO-like set when
    absent) replicated to ``num_images``: (name, distinct images, workload,
    number of GT boxes)."""
    path = osp.join(data_root, ANNOTATION_FILES['coco_val2014_100img'])
    if osp.isfile(path):
        name, images = 'coco_val2014_100img', load_coco_json(path)
    else:
        name, images = 'synthetic', synthetic_workload()
    workload = replicate(images, num_images)
    return name, images, workload, sum(len(b) for _, b in workload)


def reference_dataset(folder, prop_file, **kwargs):
    """The reference setup's :class:`SniperChipDataset` on the workload
    written to ``folder`` (``stride_jitter=(56, 60)``, negatives mined from
    ``prop_file`` unless it is None)."""
    from mmsniper.datasets.sniper_chip_dataset import SniperChipDataset
    return SniperChipDataset(
        dict(type='CocoDataset', data_root=folder, ann_file='ann.json',
             data_prefix=dict(img='images/'),
             metainfo=dict(classes=('object', )),
             filter_cfg=dict(filter_empty_gt=False), pipeline=[]),
        SCALES, VALID_RANGES, chip_size=512, stride_jitter=(56, 60),
        neg_proposals=None if prop_file is None else dict(file=prop_file),
        **kwargs)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=20000)
    parser.add_argument('--proposals-per-image', type=int, default=300)
    parser.add_argument('--num-proc', type=int, default=1)
    parser.add_argument('--epochs', type=int, default=3,
                        help='epochs timed after epoch 0')
    parser.add_argument('--data-root', default=SHARED_DATA)
    return parser.parse_args()


def main():
    args = parse_args()
    name, images, workload, num_boxes = coco_workload(args.data_root,
                                                      args.num_images)
    import mmsniper  # noqa: F401  (registers the dataset)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('bench_negative_mining', log_level='WARNING')
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        ann_file, prop_file = write_workload(workload, folder,
                                             args.proposals_per_image)
        print(f'[{name}] {len(images)} distinct images replicated to '
              f'{args.num_images} ({num_boxes} GT boxes, '
              f'{num_boxes / args.num_images:.1f} per image), '
              f'{args.proposals_per_image} synthetic proposals per image; '
              f'files written in {time.perf_counter() - start:.1f} s')
        start = time.perf_counter()
        ds = reference_dataset(folder, prop_file, num_proc=args.num_proc)
        print(f'  dataset built (annotations, proposals, epoch 0 positive '
              f'chips and mining) in {time.perf_counter() - start:.1f} s; '
              f'{ds.proposal_report["proposals_used"]} proposals used')
        print(f'  num_proc={args.num_proc}, numpy {np.__version__}')
        seed = 0
        pos_times, neg_times = [], []
        for epoch in range(1, args.epochs + 1):
            start, cpu = time.perf_counter(), time.process_time()
            positives = ds._positive_table(epoch, seed)
            pos_wall = time.perf_counter() - start
            pos_cpu = time.process_time() - cpu
            start, cpu = time.perf_counter(), time.process_time()
            negatives = ds.negative_table(epoch, seed)
            neg_wall = time.perf_counter() - start
            neg_cpu = time.process_time() - cpu
            pos_times.append((pos_wall, pos_cpu))
            neg_times.append((neg_wall, neg_cpu))
            print(f'  epoch {epoch}: stride {ds.epoch_stride(epoch, seed)}, '
                  f'{len(positives)} positive chips in {pos_wall:.2f} s '
                  f'(CPU {pos_cpu:.2f} s), {len(negatives)} negative chips '
                  f'mined in {neg_wall:.2f} s (CPU {neg_cpu:.2f} s)')
        (pos_wall, pos_cpu), (neg_wall, neg_cpu) = (np.mean(pos_times, 0),
                                                    np.mean(neg_times, 0))
        print(f'  per epoch, mean of {args.epochs}: positive chips '
              f'{pos_wall:.2f} s wall ({pos_cpu:.2f} s CPU of this process), '
              f'negative mining {neg_wall:.2f} s wall ({neg_cpu:.2f} s CPU, '
              f'{args.num_images / neg_wall:.0f} images/s wall, '
              f'{neg_cpu / pos_cpu:.2f}x the positive generation\'s CPU)')
        print('  (with --num-proc > 1 the work runs in child processes; '
              'compare wall times then)')


if __name__ == '__main__':
    main()
