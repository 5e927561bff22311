# Copyright (c) mmsniper contributors. All rights reserved.
"""Chip pipeline throughput: mmsniper's crop-then-resize against the naive
resize-the-whole-image-then-crop, on the same chips, in one run.

    python benchmarks/bench_chip_pipeline.py [--num-chips 90] [--repeat 2]

Both pipelines load the JPEG, load the annotations and produce the same chip
(region, scale, boxes). Ours: LoadSniperChipFromFile (reduced JPEG decoding
for coarse scales, region only) + SniperChipCrop. Naive: LoadImageFromFile +
mmdet Resize of the whole image by the scale factor + a crop of the chip.
Uses the embedded synthetic dataset (generated on first use).
"""
import argparse
import os.path as osp
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


class CropChipAfterResize:
    """The naive way's last step: cut the chip out of the resized image."""

    def __call__(self, results):
        chip = results['sniper_chip']
        s = chip['scale_factor']
        x1, y1 = (np.asarray(chip['box'][:2]) * s).round().astype(int)
        height, width = chip['chip_size']
        results['img'] = results['img'][y1:y1 + height, x1:x1 + width]
        results['img_shape'] = results['img'].shape[:2]
        boxes = results['gt_bboxes']
        boxes.translate_([-x1, -y1])
        boxes.clip_(results['img_shape'])
        return results


def build_pipelines():
    from mmengine.dataset import Compose
    ours = Compose([
        dict(type='LoadSniperChipFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='SniperChipCrop'),
    ])
    naive_head = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
    ])
    return ours, naive_head


def run_naive(naive_head, info):
    from mmdet.datasets.transforms import Resize
    results = naive_head(info)
    s = info['sniper_chip']['scale_factor']
    results = Resize(scale_factor=s, keep_ratio=True)(results)
    return CropChipAfterResize()(results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root',
                        default=osp.join(ROOT, 'data', 'sniper_demo'))
    parser.add_argument('--num-chips', type=int, default=90,
                        help='chips timed per pipeline (equal per scale)')
    parser.add_argument('--repeat', type=int, default=2)
    args = parser.parse_args()

    import mmsniper  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmsniper.datasets import SniperChipDataset
    from mmsniper.datasets.synthetic import ensure_synthetic_dataset
    init_default_scope('mmdet')
    ensure_synthetic_dataset(args.data_root)

    scales = [1.5, 0.6, (-1, 512)]
    ranges = [(-1, 40), (28, 200), (150, -1)]
    ds = SniperChipDataset(
        dict(type='CocoDataset', data_root=osp.join(args.data_root, ''),
             ann_file='annotations/train.json',
             data_prefix=dict(img='train/'),
             metainfo=dict(classes=('vehicle', 'roof', 'tank')),
             pipeline=[]), scales, ranges, chip_size=512)
    table = ds.chip_table(0)
    rng = np.random.default_rng(0)
    per_scale = args.num_chips // len(scales)
    picks = {}
    for k in range(len(scales)):
        pool = np.flatnonzero(table.scale_idx == k)
        picks[k] = rng.choice(pool, size=min(per_scale, len(pool)),
                              replace=False)
    ours, naive_head = build_pipelines()
    print(f'{len(ds.dataset)} images of 1500-2500 px, {len(table)} chips; '
          f'timing up to {per_scale} chips per scale, best of {args.repeat} '
          'runs '
          'after a warm-up pass')
    print(f'{"scale":>12} {"ours chips/s":>13} {"naive chips/s":>14} '
          f'{"speed-up":>9}')
    totals = dict(ours=0.0, naive=0.0)
    for k, rows in picks.items():
        infos = [ds.get_data_info(table.index(r)) for r in rows]
        for info in infos:  # warm the page cache for both pipelines
            ours(dict(info))
            run_naive(naive_head, dict(info))
        timings = {}
        for name, fn in (('ours', lambda i: ours(i)),
                         ('naive', lambda i: run_naive(naive_head, i))):
            best = np.inf
            for _ in range(args.repeat):
                start = time.perf_counter()
                for info in infos:
                    out = fn(dict(info))
                    assert out['img'].shape[0] <= 512
                best = min(best, time.perf_counter() - start)
            timings[name] = best
            totals[name] += best
        print(f'{str(scales[k]):>12} {len(rows) / timings["ours"]:13.1f} '
              f'{len(rows) / timings["naive"]:14.1f} '
              f'{timings["naive"] / timings["ours"]:8.2f}x')
    num = sum(len(rows) for rows in picks.values())
    print(f'{"all":>12} {num / totals["ours"]:13.1f} '
          f'{num / totals["naive"]:14.1f} '
          f'{totals["naive"] / totals["ours"]:8.2f}x')


if __name__ == '__main__':
    main()
