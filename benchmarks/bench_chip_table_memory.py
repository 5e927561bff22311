# Copyright (c) mmsniper contributors. All rights reserved.
"""Memory that :class:`SniperChipDataset` holds per rank for its chips.

Every rank (and the main process of every node) builds the dataset and keeps
the chip tables of the current epochs as flat numpy arrays
(:class:`ChipTable`), plus the GT boxes that drive the chips and, with
negative mining, the proposals. This script builds the dataset on the
workload of ``bench_negative_mining.py`` (COCO val2014 boxes of
``../shared/data`` replicated to ``--num-images`` images, a synthetic
COCO-like workload when absent; 300 synthetic proposals per image), with the
reference setup (scales (3.0, 1.667, (-1, 512)), chip 512,
``stride_jitter=(56, 60)``, negatives on), asks for the tables of
``--epochs`` epochs as the sampler does, and reports:

- ``nbytes`` of every cached table's arrays (bytes per chip, per image) and
  of the GT and proposal arrays;
- the RSS growth of the process over each step (``VmRSS``), which also
  counts the wrapped ``CocoDataset`` (mmengine serialises its data list)
  and allocator slack;
- both extrapolated linearly to COCO train (118,287 images).

Usage::

    python benchmarks/bench_chip_table_memory.py [--num-images 10000]
        [--proposals-per-image 300] [--epochs 2] [--no-negatives]
"""
import argparse
import gc
import os.path as osp
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # benchmark the working tree
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from bench_chip_generation import COCO_TRAIN_IMAGES, SHARED_DATA  # noqa
from bench_negative_mining import (coco_workload, reference_dataset,  # noqa
                                   write_workload)

MB = 1024.0**2


def rss_bytes():
    """Current resident set size of this process (``VmRSS``)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmRSS in /proc/self/status')


def table_nbytes(table):
    return sum(arr.nbytes for arr in (table.img_idx, table.scale_idx,
                                      table.boxes, table.is_negative,
                                      table.gt_ptr, table.gt_index))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=10000)
    parser.add_argument('--proposals-per-image', type=int, default=300)
    parser.add_argument('--epochs', type=int, default=2,
                        help='epochs asked for after epoch 0')
    parser.add_argument('--no-negatives', action='store_true')
    parser.add_argument('--data-root', default=SHARED_DATA)
    return parser.parse_args()


def main():
    args = parse_args()
    name, images, workload, num_boxes = coco_workload(args.data_root,
                                                      args.num_images)
    n_img = args.num_images
    scale = COCO_TRAIN_IMAGES / n_img
    import mmsniper  # noqa: F401  (registers the dataset)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('bench_chip_table_memory', log_level='WARNING')
    with tempfile.TemporaryDirectory() as folder:
        ann_file, prop_file = write_workload(workload, folder,
                                             args.proposals_per_image)
        print(f'[{name}] {n_img} images, {num_boxes} GT boxes '
              f'({num_boxes / n_img:.1f} per image), negatives '
              f'{"off" if args.no_negatives else "on"} '
              f'({args.proposals_per_image} proposals per image), '
              f'stride_jitter (56, 60), numpy {np.__version__}')
        gc.collect()
        rss = [('start', rss_bytes())]
        ds = reference_dataset(
            folder, None if args.no_negatives else prop_file, num_proc=1,
            lazy_init=True)
        ds.dataset.full_init()
        gc.collect()
        rss.append(('wrapped CocoDataset loaded', rss_bytes()))
        start = time.perf_counter()
        ds.full_init()
        gc.collect()
        rss.append(('SniperChipDataset.full_init (epoch 0 tables)',
                    rss_bytes()))
        for epoch in range(1, args.epochs + 1):
            ds.chip_table(epoch, 0)
        gc.collect()
        rss.append((f'tables of epochs 1..{args.epochs} (seed 0)',
                    rss_bytes()))
        print(f'  built in {time.perf_counter() - start:.1f} s')

        print('\n  cached table              chips   gt refs      MB  '
              'B/chip  B/image')
        total_tables = 0
        for key, table in ds._tables.items():
            nbytes = table_nbytes(table)
            total_tables += nbytes
            print(f'  {str(key):24s} {len(table):8d} {len(table.gt_index):9d}'
                  f' {nbytes / MB:7.2f} {nbytes / max(len(table), 1):7.1f} '
                  f'{nbytes / n_img:8.1f}')
        gt_bytes = sum(b.nbytes + i.nbytes for b, i, _ in ds._image_gt)
        prop = ds._proposals
        prop_bytes = 0 if prop is None else sum(
            a.nbytes for a in (prop.ptr, prop.bboxes, prop.scores))
        # the last epoch asked for (earlier ones may have been evicted)
        epoch_key = ('with_negatives' if not args.no_negatives else
                     'positive', args.epochs, 0)
        epoch_table = ds._tables[epoch_key]
        print(f'\n  one epoch\'s training table {epoch_key}: '
              f'{len(epoch_table)} chips, '
              f'{len(epoch_table) / n_img:.2f} per image, '
              f'{table_nbytes(epoch_table) / len(epoch_table):.1f} B per '
              f'chip, {table_nbytes(epoch_table) / n_img:.0f} B per image')
        rows = [('all cached chip tables', total_tables),
                ('GT arrays (_image_gt)', gt_bytes),
                ('proposal arrays', prop_bytes)]
        print(f'\n  {"numpy arrays (nbytes)":40s} {"MB":>9s} {"B/image":>9s}'
              f' {"x COCO train MB":>16s}')
        for label, nbytes in rows:
            print(f'  {label:40s} {nbytes / MB:9.1f} {nbytes / n_img:9.0f} '
                  f'{nbytes * scale / MB:16.0f}')
        print(f'\n  {"process RSS growth (VmRSS)":40s} {"MB":>9s} '
              f'{"B/image":>9s} {"x COCO train MB":>16s}')
        for (_, before), (label, after) in zip(rss, rss[1:]):
            delta = after - before
            print(f'  {label:40s} {delta / MB:9.1f} {delta / n_img:9.0f} '
                  f'{delta * scale / MB:16.0f}')
        delta = rss[-1][1] - rss[0][1]
        print(f'  {"total":40s} {delta / MB:9.1f} {delta / n_img:9.0f} '
              f'{delta * scale / MB:16.0f}')


if __name__ == '__main__':
    main()
