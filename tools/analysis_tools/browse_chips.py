#!/usr/bin/env python
"""Draw the SNIPER chips of a training config, as generated and as trained.

    python tools/analysis_tools/browse_chips.py CONFIG --out-dir DIR
        [--images N | --image-ids ID [ID ...]] [--epoch 0] [--seed 0]
        [--max-side 1600] [--no-chips] [--cfg-options ...]

For each selected image of the config's ``SniperChipDataset``:

* ``<name>_i<index>_image.png``: the whole image with its positive chips
  (one colour per scale, solid) and the epoch's negative chips (dashed,
  colour of their scale), the GT valid at some scale (green) and valid at
  none (red), and crowd / ignored GT (grey, dashed). Images larger than
  ``--max-side`` are drawn reduced.
* ``<name>_i<index>_s<scale>_c<chip>[_neg].png``: each chip as the model
  receives it, after the whole training pipeline (random flip included;
  ``--seed`` fixes it): valid GT green, GT ignored in this chip orange and
  dashed. ``<chip>`` numbers the chips of the image at that scale.

Drawing uses mmdet's ``DetLocalVisualizer``.
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[2])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import set_random_seed  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402

import mmsniper  # noqa: E402,F401 (registers)
from mmdet.registry import DATASETS  # noqa: E402
from mmdet.visualization import DetLocalVisualizer  # noqa: E402
from mmsniper.chips import (compute_scale_factors,  # noqa: E402
                            gt_scale_validity, image_scale_factors)
from mmsniper.datasets.sniper_chip_dataset import image_gt  # noqa: E402

#: One colour per scale (RGB), finest first.
SCALE_COLORS = [(0, 160, 255), (255, 200, 0), (230, 0, 230), (0, 220, 220),
                (255, 120, 40), (150, 110, 255)]
VALID = (0, 230, 0)
INVALID = (255, 40, 40)
IGNORED = (150, 150, 150)
IGNORED_IN_CHIP = (255, 150, 0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw the SNIPER chips of a training config')
    parser.add_argument('config', help='training config (SniperChipDataset)')
    parser.add_argument('--out-dir', required=True, help='output folder')
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        '--images', type=int, default=3, help='the first N images')
    which.add_argument(
        '--image-ids', nargs='+', help='img_id values of images to draw')
    parser.add_argument('--epoch', type=int, default=0,
                        help='whose chips (stride jitter, negative draws)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the chip draw and the pipeline')
    parser.add_argument(
        '--max-side', type=int, default=1600,
        help='reduce whole-image drawings to this long side')
    parser.add_argument(
        '--no-chips', action='store_true',
        help='only the whole-image drawings')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def safe_name(path: str) -> str:
    stem = osp.splitext(osp.basename(str(path)))[0] or 'image'
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in stem)


def build_dataset(cfg: Config):
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    ds_cfg = cfg.train_dataloader.dataset
    if ds_cfg.get('type') != 'SniperChipDataset':
        raise SystemExit(
            'browse_chips.py: the training dataset of this config is a '
            f'{ds_cfg.get("type")}, not a SniperChipDataset; see "Add '
            'SNIPER to your config" in the README')
    return DATASETS.build(ds_cfg)


def select_images(dataset, args) -> list:
    wrapped = dataset.dataset
    if args.image_ids:
        wanted = {str(i) for i in args.image_ids}
        found = {}
        for idx in range(len(wrapped)):
            img_id = str(wrapped.get_data_info(idx).get('img_id'))
            if img_id in wanted and img_id not in found:
                found[img_id] = idx
        missing = sorted(wanted - set(found))
        if missing:
            raise SystemExit(f'browse_chips.py: no image with img_id '
                             f'{missing} in the training dataset')
        return [found[str(i)] for i in args.image_ids]
    return list(range(min(args.images, len(wrapped))))


def draw_whole_image(vis, dataset, idx, rows, table, max_side):
    info = dataset.dataset.get_data_info(idx)
    img = mmcv.imread(info['img_path'], channel_order='rgb')
    height, width = img.shape[:2]
    ratio = min(1.0, max_side / max(height, width))
    if ratio < 1.0:
        img = mmcv.imrescale(img, ratio)
    vis.set_image(img)
    line = max(2, round(2 * max(img.shape[:2]) / 800))
    # GT: valid at some scale / at none / ignored
    boxes, ignored, degenerate = image_gt(info)
    used = ~ignored & ~degenerate
    factors = image_scale_factors(dataset.scales, [(height, width)])
    validity = gt_scale_validity(
        boxes[used], np.tile([height, width], (int(used.sum()), 1)),
        np.repeat(factors, int(used.sum()), axis=0), dataset.valid_ranges,
        dataset.chip_size, dataset.stride)
    valid = np.zeros(len(boxes), dtype=bool)
    valid[np.flatnonzero(used)] = validity.valid_anywhere
    for mask, color, style in ((ignored & ~degenerate, IGNORED, '--'),
                               (used & ~valid, INVALID, '-'),
                               (used & valid, VALID, '-')):
        if mask.any():
            vis.draw_bboxes(boxes[mask] * ratio, edge_colors=[color],
                            line_styles=style, line_widths=line)
    chip_counts = []
    for k in range(len(dataset.scales)):
        color = SCALE_COLORS[k % len(SCALE_COLORS)]
        for negative, style in ((False, '-'), (True, '--')):
            sel = rows[(table.scale_idx[rows] == k)
                       & (table.is_negative[rows] == negative)]
            if len(sel):
                vis.draw_bboxes(table.boxes[sel].astype(np.float64) * ratio,
                                edge_colors=[color], line_styles=style,
                                line_widths=line + 1)
        chip_counts.append(
            (int(((table.scale_idx[rows] == k)
                  & ~table.is_negative[rows]).sum()),
             int(((table.scale_idx[rows] == k)
                  & table.is_negative[rows]).sum())))
    factors = compute_scale_factors(dataset.scales, (height, width))
    font = max(9, round(max(img.shape[:2]) / 70))
    lines = [
        f'scale {k} (x{f:.3g}): {pos} chips' +
        (f' + {neg} neg (dashed)' if neg else '')
        for k, (f, (pos, neg)) in enumerate(zip(factors, chip_counts))
    ]
    lines.append(f'GT valid: {int((used & valid).sum())} (green), at no '
                 f'scale: {int((used & ~valid).sum())} (red), ignored: '
                 f'{int((ignored & ~degenerate).sum())} (grey)')
    for k, text in enumerate(lines):
        color = (SCALE_COLORS[k % len(SCALE_COLORS)]
                 if k < len(lines) - 1 else (255, 255, 255))
        vis.draw_texts(
            text, np.array([4, 4 + k * font * 1.6]), colors=[color],
            font_sizes=font,
            bboxes=[dict(facecolor='black', alpha=0.7, pad=1,
                         edgecolor='none')])
    return vis.get_image()


def draw_chip(vis, data: dict, scale_idx: int, chip_no: int) -> np.ndarray:
    img = data['inputs'].numpy().transpose(1, 2, 0)[..., ::-1].copy()
    sample = data['data_samples']
    vis.set_image(img)
    for instances, color, style in (
            (sample.ignored_instances, IGNORED_IN_CHIP, '--'),
            (sample.gt_instances, VALID, '-')):
        if len(instances):
            vis.draw_bboxes(instances.bboxes.tensor if hasattr(
                instances.bboxes, 'tensor') else instances.bboxes,
                            edge_colors=[color], line_styles=style,
                            line_widths=2)
    meta = sample.metainfo
    flip = ' flipped' if meta.get('flip') else ''
    neg = ' negative' if meta.get('chip_is_negative') else ''
    vis.draw_texts(
        f'scale {scale_idx} chip {chip_no}{neg}{flip}: '
        f'{len(sample.gt_instances)} valid, '
        f'{len(sample.ignored_instances)} ignored',
        np.array([3, 3]), colors=[(255, 255, 255)], font_sizes=9,
        bboxes=[dict(facecolor='black', alpha=0.7, pad=1, edgecolor='none')])
    # AutoFocus hook: once the chip pipeline produces FocusPixel labels
    # (AutoFocus configs), draw the label map of this chip here.
    return vis.get_image()


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    set_random_seed(args.seed)
    dataset = build_dataset(cfg)
    images = select_images(dataset, args)
    table = dataset.chip_table(args.epoch, args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    vis = DetLocalVisualizer.get_instance('mmsniper_browse_chips')
    # chips flush with the image edge end exactly on it
    warnings.filterwarnings('ignore', message='.*is out of bounds')
    written = []
    bar = ProgressBar(len(images))
    for idx in images:
        info = dataset.dataset.get_data_info(idx)
        prefix = f'{safe_name(info.get("img_path", ""))}_i{idx}'
        rows = np.flatnonzero(table.img_idx == idx)
        path = osp.join(args.out_dir, f'{prefix}_image.png')
        mmcv.imwrite(
            draw_whole_image(vis, dataset, idx, rows, table,
                             args.max_side)[..., ::-1], path)
        written.append(path)
        if not args.no_chips:
            for k in range(len(dataset.scales)):
                for chip_no, row in enumerate(
                        rows[table.scale_idx[rows] == k]):
                    chip = table.index(row)
                    data = dataset[chip]
                    suffix = '_neg' if chip.is_negative else ''
                    path = osp.join(args.out_dir,
                                    f'{prefix}_s{k}_c{chip_no:03d}'
                                    f'{suffix}.png')
                    mmcv.imwrite(draw_chip(vis, data, k, chip_no)[..., ::-1],
                                 path)
                    written.append(path)
        bar.update()
    print(f'\nbrowse_chips.py: wrote {len(written)} images to '
          f'{args.out_dir}')
    return written


if __name__ == '__main__':
    main()
