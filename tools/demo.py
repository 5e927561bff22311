# Copyright (c) mmsniper contributors. All rights reserved.
"""`make demo`: SNIPER chip training end to end on the embedded dataset.

Generates the synthetic aerial dataset (first run only), trains the demo
config on chips on the CPU, evaluates with mmdet's CocoMetric, draws the
predictions on a validation image and writes a results table.

    python tools/demo.py [--max-iters N] [--work-dir DIR]
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_CONFIG = osp.join(
    ROOT, 'configs/sniper/faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data',
                                                        'sniper_demo'))
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                       'demo'))
    parser.add_argument('--max-iters', type=int, default=None,
                        help='override the config\'s training iterations')
    parser.add_argument('--num-train', type=int, default=24)
    parser.add_argument('--num-val', type=int, default=8)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def build_config(args):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    data_root = osp.join(args.data_root, '')
    train_inner = cfg.train_dataloader.dataset.dataset
    train_inner.data_root = data_root
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = data_root
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = osp.join(data_root, 'annotations', 'val.json')
    if args.max_iters is not None:
        cfg.train_cfg.max_iters = args.max_iters
        cfg.default_hooks.checkpoint.interval = args.max_iters
        warmup = min(50, max(1, args.max_iters // 4))
        cfg.param_scheduler[0].end = warmup
        cfg.param_scheduler[1].begin = warmup
        cfg.param_scheduler[1].end = args.max_iters
    # The demo evaluates once, after training, with runner.test().
    cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1
    cfg.work_dir = args.work_dir
    return cfg


def draw_predictions(model, cfg, img_path, out_file, score_thr=0.3):
    """Run the trained model on one image and save the drawing."""
    import mmcv
    from mmdet.apis import inference_detector
    from mmdet.registry import VISUALIZERS
    model.cfg = cfg
    result = inference_detector(model, img_path)
    visualizer = VISUALIZERS.build(
        dict(type='DetLocalVisualizer', name='mmsniper_demo'))
    visualizer.dataset_meta = dict(classes=tuple(cfg.classes))
    image = mmcv.imread(img_path, channel_order='rgb')
    visualizer.add_datasample(
        'prediction', image, data_sample=result, draw_gt=False,
        pred_score_thr=score_thr, out_file=out_file)
    return int((result.pred_instances.scores >= score_thr).sum())


def results_table(stats, metrics, data_stats, timings, max_iters):
    rows = [
        ('training images', f'{stats["num_images"]} '
         f'({data_stats["num_boxes"]} boxes, '
         f'{100 * data_stats["frac_small"]:.0f}% under 32 px)'),
        ('positive chips (per scale)', f'{stats["num_chips"]} '
         f'{stats["chips_per_scale"]}, {stats["chips_per_image"]:.1f}/image'),
        ('px per training image: chips / whole image at the finest scale '
         '/ one 800x1333 resize', ' / '.join(
             f'{stats[k] / 1e6:.2f} M'
             for k in ('chip_pixels_per_image',
                       'finest_scale_pixels_per_image',
                       'resize_800x1333_pixels_per_image'))),
        ('training iterations (batch 2 chips)', str(max_iters)),
        ('bbox AP / AP50 / AP_small / AP_medium / AP_large',
         ' / '.join(f'{metrics.get("coco/bbox_" + k, float("nan")):.3f}'
                    for k in ('mAP', 'mAP_50', 'mAP_s', 'mAP_m', 'mAP_l'))),
        ('wall time: data / train / test', ' / '.join(
            f'{timings[k]:.0f} s' for k in ('data', 'train', 'test'))),
    ]
    width = max(len(r[0]) for r in rows)
    lines = ['| what | value |', '|---|---|']
    lines += [f'| {name} | {value} |' for name, value in rows]
    text = '\n'.join(f'{name.ljust(width)}  {value}' for name, value in rows)
    return '\n'.join(lines), text


def main():
    args = parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    timings = {}

    start = time.perf_counter()
    from mmsniper.datasets.synthetic import (dataset_stats,
                                             ensure_synthetic_dataset)
    ensure_synthetic_dataset(
        args.data_root, num_train=args.num_train, num_val=args.num_val,
        seed=args.seed)
    timings['data'] = time.perf_counter() - start

    import mmsniper  # noqa: F401  registers the components
    from mmengine.runner import Runner
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)

    start = time.perf_counter()
    runner.train()
    timings['train'] = time.perf_counter() - start

    start = time.perf_counter()
    metrics = runner.test()
    timings['test'] = time.perf_counter() - start

    val_dir = osp.join(args.data_root, 'val')
    first_val = sorted(os.listdir(val_dir))[0]
    picture = osp.join(args.work_dir, 'predictions.jpg')
    num_drawn = draw_predictions(runner.model, cfg,
                                 osp.join(val_dir, first_val), picture)

    stats = runner.train_dataloader.dataset.chip_stats()
    data_stats = dataset_stats(
        osp.join(args.data_root, 'annotations', 'train.json'))
    markdown, text = results_table(stats, metrics, data_stats, timings,
                                   cfg.train_cfg.max_iters)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(markdown + '\n')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(chips=stats, metrics=metrics, timings=timings,
                       dataset=data_stats), f, indent=2, default=float)
    print('\n' + '=' * 72)
    print('mmsniper demo: SNIPER chip training on the synthetic aerial set')
    print('=' * 72)
    print(text)
    print(f'\npredictions ({num_drawn} boxes, score >= 0.3): {picture}')
    print(f'results: {osp.join(args.work_dir, "results.md")}')


if __name__ == '__main__':
    main()
