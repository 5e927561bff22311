#!/usr/bin/env python
"""SNIPER multi-scale inference on an image or a folder of images.

    python demo/image_demo.py IMAGE_OR_FOLDER CONFIG CHECKPOINT
        [--out-dir DIR] [--device cpu] [--score-thr 0.3]
        [--cfg-options ...]

Draws the detections with mmdet's ``DetLocalVisualizer`` and writes one
picture per image to ``--out-dir`` (same file name). CHECKPOINT is named
here, so it is trusted (see :mod:`mmsniper.utils.checkpoint`).
"""
import argparse
import os
import os.path as osp
import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='SNIPER multi-scale inference on an image or a folder')
    parser.add_argument('inputs', help='image file or folder of images')
    parser.add_argument('config', help='config file (with a tta_model)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-dir', default='outputs', help='where the pictures go')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--score-thr', type=float, default=0.3, help='drawn score threshold')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import mmcv

    from mmdet.registry import VISUALIZERS
    from mmsniper.apis import inference_sniper, init_sniper_detector
    from mmsniper.models.test_time_augs import format_sniper_stats
    model = init_sniper_detector(
        args.config,
        args.checkpoint,
        device=args.device,
        cfg_options=args.cfg_options)
    results = inference_sniper(model, args.inputs)
    if not isinstance(results, list):
        results = [results]
    visualizer = VISUALIZERS.build(
        dict(type='DetLocalVisualizer', name='mmsniper_image_demo'))
    visualizer.dataset_meta = model.dataset_meta
    os.makedirs(args.out_dir, exist_ok=True)
    for result in results:
        img_path = result.img_path
        image = mmcv.imread(img_path, channel_order='rgb')
        out_file = osp.join(args.out_dir, osp.basename(img_path))
        visualizer.add_datasample(
            osp.basename(img_path),
            image,
            data_sample=result,
            draw_gt=False,
            pred_score_thr=args.score_thr,
            out_file=out_file)
        num = int((result.pred_instances.scores >= args.score_thr).sum())
        print(f'{img_path}: {num} detections (score >= {args.score_thr}) '
              f'-> {out_file}')
    for line in format_sniper_stats(model.sniper_stats, model.scales):
        print(line)


if __name__ == '__main__':
    main()
