#!/usr/bin/env python
"""Propose SNIPER scales and valid ranges for a dataset's object sizes.

    python tools/analysis_tools/analyze_scales.py ANN_FILE_OR_CONFIG
        [--out-dir DIR] [--band A B] [--chip-size 512] [--stride 32]
        [--low-percentile 5] [--high-percentile 99] [--max-upsample 3]
        [--overlap 1.25] [--num-scales N]
        [--scales S [S ...] --valid-ranges LO,HI [LO,HI ...]]
        [--cfg-options ...]

Reads a COCO-format annotation file (``.json``) or the training dataset of
a config (the dataset that ``SniperChipDataset`` wraps, or the training
dataset itself), and prints:

* the object size distribution: sqrt-area percentiles per class (crowd /
  ignored and degenerate boxes left out, as in training);
* a proposal of scales and valid ranges that puts the objects into a target
  band of sizes in chip px (``--band``, default 32 to 256: what an FPN
  detector with anchors from 32 to 256 px handles well in 512 px chips;
  the algorithm is :func:`mmsniper.chips.propose_scales`);
* for the proposal and for the current settings (the config's, else
  ``--scales/--valid-ranges``, else the reference COCO settings that
  ``SniperChipDataset`` defaults to): positive chips per image, training
  pixels per image against one 800x1333 resize, and the share of boxes
  valid at no scale, measured with the chip generator used in training;
* a config block ready to paste.

With ``--out-dir`` it writes ``scale_histogram.png`` (the size histogram
with the proposed and current ranges) and ``scale_advice.json``.
"""
import argparse
import json
import os
import os.path as osp
import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[2])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmsniper.chips import (DEFAULT_BAND, box_sqrt_areas,  # noqa: E402
                            evaluate_settings, propose_scales,
                            size_percentiles)
from mmsniper.chips.settings import (NEGATIVE_VALUE_MATCHER,  # noqa: E402
                                     parse_range, parse_scale)

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
REFERENCE_SCALES = [3.0, 1.667, (-1, 512)]
REFERENCE_RANGES = [(-1, 80), (32, 150), (120, -1)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Propose SNIPER scales and valid ranges')
    # ``-1,512`` and ``-1,-1`` are values, not options
    parser._negative_number_matcher = NEGATIVE_VALUE_MATCHER
    parser.add_argument('source', help='COCO json or config file')
    parser.add_argument('--out-dir', help='write the histogram PNG and json')
    parser.add_argument(
        '--band',
        nargs=2,
        type=float,
        default=list(DEFAULT_BAND),
        metavar=('A', 'B'),
        help='target object sizes (sqrt-area) in chip px')
    parser.add_argument('--chip-size', type=int, help='default: config or '
                        '512')
    parser.add_argument('--stride', type=int, help='default: config or 32')
    parser.add_argument('--low-percentile', type=float, default=5.0)
    parser.add_argument('--high-percentile', type=float, default=99.0)
    parser.add_argument('--max-upsample', type=float, default=3.0)
    parser.add_argument('--overlap', type=float, default=1.25)
    parser.add_argument('--num-scales', type=int)
    parser.add_argument(
        '--scales',
        nargs='+',
        type=parse_scale,
        help='current scales to compare (json input); SHORT,LONG for a '
        'resolution pair')
    parser.add_argument('--valid-ranges', nargs='+', type=parse_range)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='config overrides (key=value), for a config source')
    return parser.parse_args(argv)


def read_coco(path: str) -> dict:
    """Boxes per image, labels, sizes and class names from a COCO json.

    Each problem is a ``ValueError`` naming the file and the entry.
    """
    try:
        with open(path) as f:
            coco = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path}: not valid JSON ({exc})') from None
    if not isinstance(coco, dict):
        raise ValueError(f'{path}: not a COCO annotation file (the JSON is '
                         f'a {type(coco).__name__}, not an object)')
    for key in ('images', 'annotations', 'categories'):
        if key not in coco:
            raise ValueError(f'{path}: not a COCO annotation file (no '
                             f'"{key}")')
    cat_ids = [c['id'] for c in coco['categories']]
    cat_index = {cid: i for i, cid in enumerate(cat_ids)}
    images = coco['images']
    index = {img['id']: i for i, img in enumerate(images)}
    boxes = [[] for _ in images]
    labels = [[] for _ in images]
    crowd = degenerate = 0
    for ann in coco['annotations']:
        if ann.get('iscrowd', 0) or ann.get('ignore', 0):
            crowd += 1
            continue
        name = f'{path}: annotation {ann.get("id")}'
        if ann['image_id'] not in index:
            raise ValueError(f'{name} names image_id {ann["image_id"]}, not '
                             'in "images"')
        if ann.get('category_id') not in cat_index:
            raise ValueError(f'{name} has category_id '
                             f'{ann.get("category_id")!r}, not in '
                             f'"categories" (ids {cat_ids})')
        bbox = ann.get('bbox')
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                for v in bbox)):
            raise ValueError(f'{name} has bbox {bbox!r}: need four numbers '
                             '[x, y, w, h]')
        x, y, w, h = bbox
        if not (w > 0 and h > 0):
            degenerate += 1
            continue
        i = index[ann['image_id']]
        boxes[i].append([x, y, x + w, y + h])
        labels[i].append(cat_index[ann['category_id']])
    sizes = []
    for img in images:
        if not img.get('height') or not img.get('width'):
            raise ValueError(f'{path}: image {img.get("file_name")} has no '
                             'height/width')
        if not all(
                isinstance(img[k], (int, float)) and img[k] > 0
                for k in ('height', 'width')):
            raise ValueError(f'{path}: image {img.get("file_name")} has '
                             f'height {img["height"]!r}, width '
                             f'{img["width"]!r}: need positive numbers')
        sizes.append((img['height'], img['width']))
    return dict(
        boxes=[np.array(b, dtype=np.float64).reshape(-1, 4) for b in boxes],
        labels=[np.array(lb, dtype=np.int64) for lb in labels],
        sizes=np.array(sizes, dtype=np.float64).reshape(-1, 2),
        classes=[c['name'] for c in coco['categories']],
        ignored=crowd,
        degenerate=degenerate,
        settings=None)


def read_config(path: str, cfg_options=None) -> dict:
    """The training dataset of a config, read as SniperChipDataset does."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsniper  # noqa: F401 (registers)
    from mmdet.registry import DATASETS
    from mmsniper.datasets.sniper_chip_dataset import image_gt
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    ds_cfg = cfg.train_dataloader.dataset
    settings = None
    if ds_cfg.get('type') == 'SniperChipDataset':
        settings = dict(
            scales=[
                tuple(s) if isinstance(s, (list, tuple)) else s
                for s in ds_cfg.get('scales', REFERENCE_SCALES)
            ],
            valid_ranges=[
                tuple(r)
                for r in ds_cfg.get('valid_ranges', REFERENCE_RANGES)
            ],
            chip_size=ds_cfg.get('chip_size', 512),
            stride=ds_cfg.get('stride', 32))
        ds_cfg = ds_cfg.dataset
    dataset = DATASETS.build(ds_cfg)
    classes = list(dataset.metainfo.get('classes', []))
    boxes, labels, sizes = [], [], []
    ignored = degenerate = 0
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        bxs, ign, deg = image_gt(info)
        keep = ~ign & ~deg
        ignored += int((ign & ~deg).sum())
        degenerate += int(deg.sum())
        boxes.append(bxs[keep])
        labels.append(
            np.array([inst.get('bbox_label', 0)
                      for inst in info.get('instances', [])],
                     dtype=np.int64).reshape(-1)[keep])
        sizes.append((info['height'], info['width']))
    return dict(
        boxes=boxes,
        labels=labels,
        sizes=np.array(sizes, dtype=np.float64).reshape(-1, 2),
        classes=classes,
        ignored=ignored,
        degenerate=degenerate,
        settings=settings)


def fmt_range(r) -> str:
    return '(' + ', '.join(f'{v:g}' for v in r) + ')'


def fmt_scale(s) -> str:
    if isinstance(s, tuple):
        return '(' + ', '.join(f'{v:g}' for v in s) + ')'
    return f'{s:g}'


def print_table(rows, header):
    widths = [
        max(len(str(r[i])) for r in rows + [header])
        for i in range(len(header))
    ]
    line = '  '.join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print('  '.join('-' * w for w in widths))
    for r in rows:
        print('  '.join(str(v).ljust(w) for v, w in zip(r, widths)))


def report_row(name, scales, ranges, rep):
    return [
        name, '[' + ', '.join(fmt_scale(s) for s in scales) + ']',
        '[' + ', '.join(fmt_range(r) for r in ranges) + ']',
        f'{rep.chips_per_image:.2f} {rep.chips_per_scale}',
        f'{rep.pixels_per_image / 1e6:.2f} M ({rep.pixels_vs_resize:.2f}x)',
        f'{rep.invalid} ({rep.invalid_share:.1%})'
    ]


def config_block(proposal, chip_size, stride, source) -> str:
    scales = '[' + ', '.join(fmt_scale(s) for s in proposal.scales) + ']'
    ranges = '[' + ', '.join(fmt_range(r)
                             for r in proposal.valid_ranges) + ']'
    a, b = proposal.band
    return (f'# analyze_scales.py on {osp.basename(source)}: objects into '
            f'{a:g}-{b:g} px in {chip_size} px chips\n'
            f'sniper_scales = {scales}  # finest first\n'
            f'sniper_valid_ranges = {ranges}  # sqrt-area, orig px\n'
            '# the SniperChipDataset level of your train_dataloader:\n'
            'train_dataloader = dict(dataset=dict(\n'
            '    scales=sniper_scales, valid_ranges=sniper_valid_ranges,\n'
            f'    chip_size={chip_size}, stride={stride}))')


def draw_histogram(path, sqrt_areas, proposal, current, current_name):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sizes = sqrt_areas[sqrt_areas > 0]
    fig, axes = plt.subplots(
        2 if current else 1, 1, figsize=(8, 5.5 if current else 3.4),
        sharex=True, squeeze=False)
    lo, hi = max(sizes.min(), 1.0), sizes.max()
    bins = np.geomspace(lo, hi * 1.01, 50)
    colors = plt.get_cmap('tab10').colors
    panels = [('proposal', proposal.scales, proposal.valid_ranges)]
    if current:
        panels.append((current_name, current['scales'],
                       current['valid_ranges']))
    for ax, (name, scales, ranges) in zip(axes[:, 0], panels):
        ax.hist(sizes, bins=bins, color='0.55')
        ax.set_xscale('log')
        top = ax.get_ylim()[1]
        for k, (scale, (r_lo, r_hi)) in enumerate(zip(scales, ranges)):
            left = lo if r_lo < 0 else r_lo
            right = hi * 1.01 if r_hi < 0 else r_hi
            ax.axvspan(left, right, ymin=0.9 - 0.1 * k, ymax=1.0 - 0.1 * k,
                       color=colors[k % 10], alpha=0.7,
                       label=f'scale {fmt_scale(scale)}: '
                       f'{fmt_range((r_lo, r_hi))}')
        ax.set_ylim(0, top * 1.45)
        ax.set_ylabel('boxes')
        ax.set_title(f'{name} valid ranges', fontsize=10)
        ax.legend(fontsize=8, loc='center right')
    axes[-1, 0].set_xlabel('object sqrt-area (original px)')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.source.endswith('.json'):
        data = read_coco(args.source)
    else:
        data = read_config(args.source, args.cfg_options)
    current = data['settings']
    chip_size = args.chip_size or (current or {}).get('chip_size', 512)
    stride = args.stride or (current or {}).get('stride', 32)
    current_name = 'config'
    if args.scales or args.valid_ranges:
        if not (args.scales and args.valid_ranges):
            raise SystemExit('give both --scales and --valid-ranges')
        current = dict(scales=args.scales, valid_ranges=args.valid_ranges)
        current_name = 'given'
    elif current is None:
        current = dict(scales=REFERENCE_SCALES, valid_ranges=REFERENCE_RANGES)
        current_name = 'reference (default)'

    boxes, labels, sizes = data['boxes'], data['labels'], data['sizes']
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    all_labels = np.concatenate(labels) if labels else np.zeros(0, int)
    sqrt_areas = box_sqrt_areas(all_boxes)
    classes = data['classes'] or [
        str(c) for c in range(int(all_labels.max(initial=-1)) + 1)
    ]
    print(f'{args.source}: {len(sizes)} images (median '
          f'{np.median(sizes[:, 1]):g} x {np.median(sizes[:, 0]):g} px), '
          f'{len(all_boxes)} boxes '
          f'({data["ignored"]} crowd / ignored and {data["degenerate"]} '
          'degenerate boxes left out)')
    print('\nObject size (sqrt-area, original px) percentiles:')
    table = size_percentiles(sqrt_areas, all_labels, len(classes),
                             PERCENTILES)
    counts = np.bincount(all_labels, minlength=len(classes))
    rows = [[name, int(counts[c])] +
            [('-' if np.isnan(v) else f'{v:.0f}') for v in table[c]]
            for c, name in enumerate(classes)]
    rows.append(['(all)', len(all_boxes)] +
                [f'{v:.0f}' for v in table[-1]])
    print_table(rows, ['class', 'boxes'] + [f'p{p}' for p in PERCENTILES])

    proposal = propose_scales(
        sqrt_areas, sizes, band=args.band, chip_size=chip_size,
        low_percentile=args.low_percentile,
        high_percentile=args.high_percentile,
        max_upsample=args.max_upsample, overlap=args.overlap,
        num_scales=args.num_scales)
    a, b = proposal.band
    print(f'\nProposal for objects at {a:g}-{b:g} px (sqrt-area) in '
          f'{chip_size} px chips: p{args.low_percentile:g} = '
          f'{proposal.small:.1f} px, p{args.high_percentile:g} = '
          f'{proposal.large:.1f} px; factors '
          f'{[round(f, 3) for f in proposal.factors]}')
    for k, (scale, rng, factor) in enumerate(
            zip(proposal.scales, proposal.valid_ranges, proposal.factors)):
        in_chip = tuple(v if v < 0 else round(v * factor)
                        for v in rng)
        print(f'  scale {fmt_scale(scale)}: range {fmt_range(rng)} orig px '
              f'-> {fmt_range(in_chip)} chip px')

    from mmsniper.utils.progress import DelayedProgressBar
    reports = {}
    for name, settings in (('proposal', dict(
            scales=proposal.scales, valid_ranges=proposal.valid_ranges)),
                           (current_name, current)):
        bar = DelayedProgressBar(len(sizes), f'evaluating {name} settings')
        reports[name] = (settings,
                         evaluate_settings(boxes, sizes, settings['scales'],
                                           settings['valid_ranges'],
                                           chip_size, stride, bar.update))
        bar.close()
    print(f'\nPositive chips, pixels and coverage ({len(sizes)} images, '
          f'chip {chip_size}, stride {stride}):')
    print_table([
        report_row(name, s['scales'], s['valid_ranges'], rep)
        for name, (s, rep) in reports.items()
    ], [
        'settings', 'scales', 'valid_ranges', 'chips/image [per scale]',
        'px/image (vs 800x1333)', 'GT valid at no scale'
    ])
    for name, (_, rep) in reports.items():
        if rep.invalid:
            print(f'  {name}: of the {rep.invalid} boxes valid at no scale, '
                  f'{rep.reasons["out_of_ranges"]} are in no range, '
                  f'{rep.reasons["too_large_for_chip"]} too long for a '
                  f'chip, {rep.reasons["too_small"]} under 2 px')
    block = config_block(proposal, chip_size, stride, args.source)
    print('\nConfig block:\n' + block)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        png = osp.join(args.out_dir, 'scale_histogram.png')
        draw_histogram(png, sqrt_areas, proposal, current, current_name)
        out = dict(
            source=args.source,
            proposal=dict(
                scales=proposal.scales,
                valid_ranges=proposal.valid_ranges,
                factors=proposal.factors,
                band=list(proposal.band)),
            reports={
                name: dict(settings=s, **rep._asdict())
                for name, (s, rep) in reports.items()
            },
            config_block=block)
        with open(osp.join(args.out_dir, 'scale_advice.json'), 'w') as f:
            json.dump(out, f, indent=1)
        print(f'\nwrote {png} and scale_advice.json')
    return reports


if __name__ == '__main__':
    try:
        main()
    except (ValueError, FileNotFoundError) as exc:  # names file and entry
        sys.exit(f'analyze_scales.py: error: {exc}')
