# Copyright (c) mmsniper contributors. All rights reserved.
"""`make demo`: SNIPER chip training end to end on the embedded dataset.

Generates the synthetic aerial dataset (first run only), trains the demo
config on chips on the CPU, evaluates the trained model with mmdet's
CocoMetric twice, with the single-scale test pipeline and with the SNIPER
multi-scale test (the config's ``tta_model``), draws the predictions on a
validation image and writes the results tables.

    python tools/demo.py [--max-iters N] [--work-dir DIR] [--threads N]

Reproducibility: the generated data are byte-identical from run to run
(whatever the number of rendering threads), and the config seeds every
random draw (``randomness.seed``, dataloader workers, chip sampler): two
trainings with the same settings on one machine give bit-identical losses.
The float arithmetic depends on the kernels torch, oneDNN and MKL pick for
the CPU's widest instructions (AVX-512 vs AVX2) and on the number of torch
threads, and 300 training iterations amplify it into other AP figures
(after 20 iterations of the demo the loss is 0.9380 with AVX2 kernels and 2
threads, 0.9867 with AVX-512 and 0.9484 with 1 thread). The demo therefore
runs the AVX2 kernels (on any x86-64 CPU that has them) with a fixed number
of threads (``--threads``, default 2), set before torch is imported. That
makes runs on one machine repeat; it does not make machines agree (a pinned
run on another x86-64 machine printed AP 0.193 against the README's 0.196):
see docs/en/get_started.md, "Reproducibility".
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_CONFIG = osp.join(
    ROOT, 'configs/sniper/faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py')

#: Environment that makes torch (ATen), oneDNN and MKL use their AVX2 code
#: paths even on CPUs with AVX-512 (each ignores it where AVX2 is missing).
REPRODUCIBLE_CPU_ENV = dict(
    ATEN_CPU_CAPABILITY='avx2', ONEDNN_MAX_CPU_ISA='AVX2', MKL_CBWR='AVX2')
DEFAULT_THREADS = 2


def _dict_action():
    # mmengine's DictAction, imported late: nothing may import torch before
    # pin_cpu_arithmetic() (mmengine.config does not)
    from mmengine.config import DictAction
    return DictAction


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data',
                                                        'sniper_demo'))
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                       'demo'))
    parser.add_argument('--max-iters', type=int, default=None,
                        help='override the config\'s training iterations')
    parser.add_argument(
        '--checkpoint',
        help='skip training: test this checkpoint of the same config '
        '(e.g. WORK_DIR/iter_300.pth of an earlier demo run; loaded '
        'weights-only) with the same test rows')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=_dict_action(),
        help='override config settings (key=value, as tools/test.py), e.g. '
        'tta_model.chip_params="[(3,0.2,12),(3,0.5,14)]"')
    parser.add_argument('--num-train', type=int, default=24)
    parser.add_argument('--num-val', type=int, default=8)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads',
        type=int,
        default=DEFAULT_THREADS,
        help='torch threads; the figures depend on it (default '
        f'{DEFAULT_THREADS}, as for the README)')
    parser.add_argument(
        '--native-cpu-kernels',
        action='store_true',
        help='use the CPU\'s widest kernels (faster on AVX-512 CPUs, '
        'figures then differ between CPUs)')
    return parser.parse_args()


def pin_cpu_arithmetic(threads, native=False):
    """Fix the kernels and the thread count that decide float rounding.

    Must run before torch is imported (the kernel choice is read once);
    variables already set by the user are kept.

    Returns:
        dict: ``threads`` and ``cpu_capability`` actually in use.
    """
    if threads < 1:
        raise ValueError(f'--threads must be >= 1, got {threads}')
    if not native:
        if 'torch' in sys.modules:
            print('demo: torch was imported before the CPU kernels could be '
                  'pinned; figures may differ from the README',
                  file=sys.stderr)
        for key, value in REPRODUCIBLE_CPU_ENV.items():
            os.environ.setdefault(key, value)
    import torch
    torch.set_num_threads(threads)
    return dict(
        threads=torch.get_num_threads(),
        cpu_capability=torch.backends.cpu.get_cpu_capability())


def build_config(args):
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if getattr(args, 'cfg_options', None):
        cfg.merge_from_dict(args.cfg_options)
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
    # The demo evaluates once, after training, with runner.test(); without
    # this the train loop would also validate after its last iteration.
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.work_dir = args.work_dir
    if getattr(args, 'checkpoint', None):
        cfg.load_from = args.checkpoint
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


def single_scale_pixels(cfg, ann_file):
    """Mean px per image of the single-scale test (``Resize`` by the
    config's ``test_scale_factor``)."""
    from mmsniper.chips import scaled_size
    with open(ann_file) as f:
        images = json.load(f)['images']
    factor = cfg.get('test_scale_factor', 1.0)
    return sum(
        int(np.prod(scaled_size((im['height'], im['width']), factor)))
        for im in images) / len(images)


def test_rows_table(rows):
    """Markdown rows of the single-scale vs SNIPER test comparison."""
    lines = [
        '| test | AP | AP_small | AP_medium | AP_large | px per image | '
        'wall time per image |', '|---|---|---|---|---|---|---|'
    ]
    for name, metrics, pixels, seconds in rows:
        aps = ' | '.join(f'{metrics.get("coco/bbox_" + k, float("nan")):.3f}'
                         for k in ('mAP', 'mAP_s', 'mAP_m', 'mAP_l'))
        lines.append(f'| {name} | {aps} | {pixels / 1e6:.2f} M | '
                     f'{seconds:.1f} s |')
    return '\n'.join(lines)


def results_table(stats, metrics, data_stats, timings, max_iters, cpu):
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
        ('training iterations (batch 2 chips)', str(max_iters) +
         (' (loaded, not trained in this run)'
          if timings.get('train', 1) < 1 else '')),
        ('bbox AP / AP50 / AP_small / AP_medium / AP_large',
         ' / '.join(f'{metrics.get("coco/bbox_" + k, float("nan")):.3f}'
                    for k in ('mAP', 'mAP_50', 'mAP_s', 'mAP_m', 'mAP_l'))),
        ('wall time: data / train / test / SNIPER test' +
         (' / AutoFocus test' if 'test_autofocus' in timings else ''),
         ' / '.join(f'{timings[k]:.0f} s'
                    for k in ('data', 'train', 'test', 'test_sniper',
                              'test_autofocus') if k in timings)),
        ('CPU kernels, torch threads',
         f'{cpu["cpu_capability"]}, {cpu["threads"]}'),
    ]
    width = max(len(r[0]) for r in rows)
    lines = ['| what | value |', '|---|---|']
    lines += [f'| {name} | {value} |' for name, value in rows]
    text = '\n'.join(f'{name.ljust(width)}  {value}' for name, value in rows)
    return '\n'.join(lines), text


def main():
    args = parse_args()
    cpu = pin_cpu_arithmetic(args.threads, args.native_cpu_kernels)
    os.makedirs(args.work_dir, exist_ok=True)
    timings = {}

    start = time.perf_counter()
    from mmsniper.testing.synthetic import (dataset_stats,
                                            ensure_synthetic_dataset)
    ensure_synthetic_dataset(
        args.data_root, num_train=args.num_train, num_val=args.num_val,
        seed=args.seed)
    timings['data'] = time.perf_counter() - start

    import mmsniper  # noqa: F401  registers the components
    from mmengine.runner import Runner
    from mmsniper.apis import sniper_tta_config
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)

    start = time.perf_counter()
    if args.checkpoint:  # runner.test() loads cfg.load_from
        print(f'--checkpoint: no training, testing {args.checkpoint}')
    else:
        runner.train()
    timings['train'] = time.perf_counter() - start

    start = time.perf_counter()
    metrics = runner.test()
    timings['test'] = time.perf_counter() - start

    # The same trained weights, tested with SNIPER's multi-scale inference
    # (for an AutoFocus config: focusing off, then on).
    autofocus = cfg.tta_model.get('type') == 'AutoFocusTTAModel'
    tta_runner = Runner.from_cfg(
        sniper_tta_config(cfg, dict(focus=False) if autofocus else None))
    tta_runner.model.module.load_state_dict(runner.model.state_dict())
    start = time.perf_counter()
    tta_metrics = tta_runner.test()
    timings['test_sniper'] = time.perf_counter() - start
    num_val = len(runner.test_dataloader.dataset)
    val_ann = osp.join(args.data_root, 'annotations', 'val.json')
    scales = ', '.join(str(s) for s in cfg.tta_model.scales)
    test_rows = [
        (f'single scale ({cfg.get("test_scale_factor", 1.0)}x, mmdet '
         'pipeline)', metrics, single_scale_pixels(cfg, val_ann),
         timings['test'] / num_val),
        (f'SNIPER multi-scale ({scales}; valid ranges, Soft-NMS)',
         tta_metrics, tta_metrics['sniper/Mpx_per_img'] * 1e6,
         timings['test_sniper'] / num_val),
    ]
    if autofocus:
        af_runner = Runner.from_cfg(
            sniper_tta_config(
                cfg,
                dict(focus=True,
                     vis_dir=osp.join(args.work_dir, 'autofocus_vis'))))
        af_runner.model.module.load_state_dict(runner.model.state_dict())
        start = time.perf_counter()
        af_metrics = af_runner.test()
        timings['test_autofocus'] = time.perf_counter() - start
        test_rows.append(
            ('AutoFocus (FocusChips at the finer scales, '
             f'{af_metrics["sniper/px_fraction_of_full"]:.0%} of the '
             'multi-scale pixels)', af_metrics,
             af_metrics['sniper/Mpx_per_img'] * 1e6,
             timings['test_autofocus'] / num_val))
    test_table = test_rows_table(test_rows)

    val_dir = osp.join(args.data_root, 'val')
    first_val = sorted(os.listdir(val_dir))[0]
    picture = osp.join(args.work_dir, 'predictions.jpg')
    num_drawn = draw_predictions(runner.model, cfg,
                                 osp.join(val_dir, first_val), picture)

    stats = runner.train_dataloader.dataset.chip_stats()
    data_stats = dataset_stats(
        osp.join(args.data_root, 'annotations', 'train.json'))
    markdown, text = results_table(stats, metrics, data_stats, timings,
                                   cfg.train_cfg.max_iters, cpu)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(markdown + '\n\n' + test_table + '\n')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(chips=stats, metrics=metrics,
                       sniper_test_metrics=tta_metrics, timings=timings,
                       dataset=data_stats, cpu=cpu), f, indent=2,
                  default=float)
    print('\n' + '=' * 72)
    print('mmsniper demo: SNIPER chip training on the synthetic aerial set')
    print('=' * 72)
    print(text)
    print('\n' + test_table)
    print(f'\npredictions ({num_drawn} boxes, score >= 0.3): {picture}')
    print(f'results: {osp.join(args.work_dir, "results.md")}')


if __name__ == '__main__':
    main()
