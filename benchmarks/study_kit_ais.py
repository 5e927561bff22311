# Copyright (c) mmsniper contributors. All rights reserved.
"""SNIPER vs single-scale vs multi-scale training on real aerial images.

    python benchmarks/study_kit_ais.py [--budget-min 8] [--folds 1 2]
        [--variants a b c d] [--work-dir work_dirs/kit_ais]

The study of issue 12 on ``../shared/data/kit_ais_cars`` (KIT AIS, 40 real
aerial images of two sequences; cars of 18-39 px): Faster R-CNN with an
ImageNet MobileNetV2-FPN backbone, each variant trained for the same
wall-clock budget on this machine (``TimeBudgetHook``):

- (a) single-scale training on whole images (mmdet's 1333 x 800 resize);
- (b) multi-scale whole-image training at the SNIPER scales (1.43 or 1.0
  per image);
- (c) SNIPER, positive chips only (scales 1.43 and 1.0);
- (d) SNIPER with negative chips: a short RPN on positive chips (a quarter
  of the budget), its proposals on the training images, then the detector
  with negative chips for what is left of the budget.

Every variant trains the same detector with a FocusPixel head beside it
(AutoFocusDetector), and each is tested four ways on the other sequence:
the single-scale mmdet test (1333 x 800), the SNIPER multi-scale test
(1.43 and 1.0 on the whole image, valid ranges, Soft-NMS) and AutoFocus
(1.0 on the whole image, 1.43 on the FocusChips), with the reference's
focus threshold (0.02) and with 0.2. Fold 1 trains on
``MunichStreet02-MOS*`` and tests on ``MOS*``; fold 2 the other way round.
Car and minibus (20 boxes) are merged into one class, ``vehicle``.

Steps (each is skipped when its result exists, so an interrupted study
resumes): split the annotations, convert the MobileNetV2 weights
(tools/model_converters/torchvision_mobilenetv2_to_mmdet.py), run
tools/analysis_tools/analyze_scales.py, then one subprocess per (fold,
variant) that trains and tests; then ``results.md``, ``results.json`` and
``ap_small_vs_test_pixels.png`` in the work dir.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SHARED = osp.join(osp.dirname(ROOT), 'shared')
DATA = osp.join(SHARED, 'data', 'kit_ais_cars')
WEIGHTS = osp.join(SHARED, 'weights', 'mobilenet_v2-b0353104.pth')
CONFIGS = osp.join(ROOT, 'benchmarks', 'kit_ais')
VARIANTS = {
    'a': ('a_single_scale', 'single-scale whole images (1333x800)'),
    'b': ('b_multi_scale', 'multi-scale whole images (1.43 / 1.0)'),
    'c': ('c_sniper', 'SNIPER, positive chips'),
    'd': ('d_sniper_neg', 'SNIPER, positive + negative chips'),
}
TEST_MODES = ('single', 'sniper', 'autofocus', 'autofocus_t02')
TEST_NAMES = dict(
    single='single-scale test (1333x800)',
    sniper='SNIPER multi-scale test (1.43, 1.0)',
    autofocus='AutoFocus, reference threshold 0.02',
    autofocus_t02='AutoFocus, threshold 0.2')
# (dilation, threshold, min size in cells) of the FocusChips at 1.43
TTA_OVERRIDES = dict(
    sniper=dict(focus=False),
    autofocus=dict(focus=True, chip_params=[(3, 0.02, 16)]),
    autofocus_t02=dict(focus=True, chip_params=[(3, 0.2, 16)]))
SEQUENCES = ('MunichStreet02-MOS', 'MOS')  # fold 1 trains on the first


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                       'kit_ais'))
    parser.add_argument('--budget-min', type=float, default=8.0,
                        help='training wall-clock budget per variant')
    parser.add_argument('--rpn-fraction', type=float, default=0.25,
                        help='(d): share of the budget for the RPN')
    parser.add_argument('--folds', nargs='+', type=int, default=[1, 2])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS))
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--summary-only', action='store_true')
    parser.add_argument('--val-images', type=int,
                        help='test on the first N validation images only '
                        '(a quick check of the script, not the study)')
    parser.add_argument('--run', nargs=2, metavar=('VARIANT', 'FOLD'),
                        help=argparse.SUPPRESS)
    return parser.parse_args()


# ----------------------------------------------------------------------
# data and weights
# ----------------------------------------------------------------------
def split_annotations(work_dir):
    """Per fold: train.json / val.json with one class, ``vehicle``."""
    with open(osp.join(DATA, 'annotations_coco.json')) as f:
        coco = json.load(f)

    def sequence(im):
        name = osp.basename(im['file_name'])
        return 0 if name.startswith(SEQUENCES[0]) else 1

    for fold, train_seq in ((1, 0), (2, 1)):
        out = osp.join(work_dir, 'data', f'fold{fold}')
        os.makedirs(out, exist_ok=True)
        for split, seq in (('train', train_seq), ('val', 1 - train_seq)):
            images = [im for im in coco['images'] if sequence(im) == seq]
            ids = {im['id'] for im in images}
            anns = []
            for ann in coco['annotations']:
                if ann['image_id'] in ids:
                    ann = dict(ann, category_id=1)
                    anns.append(ann)
            with open(osp.join(out, f'{split}.json'), 'w') as f:
                json.dump(dict(images=images, annotations=anns,
                               categories=[dict(id=1, name='vehicle')]), f)


def convert_weights(work_dir):
    out = osp.join(work_dir, 'mobilenet_v2_mmdet.pth')
    if not osp.exists(out):
        subprocess.run([
            sys.executable,
            osp.join(ROOT, 'tools', 'model_converters',
                     'torchvision_mobilenetv2_to_mmdet.py'), WEIGHTS, out
        ], check=True)
    return out


def analyze_scales(work_dir):
    """The scale advisor's output on each fold's training boxes."""
    out = osp.join(work_dir, 'analyze_scales.txt')
    if osp.exists(out):
        return out
    text = []
    tool = osp.join(ROOT, 'tools', 'analysis_tools', 'analyze_scales.py')
    for fold in (1, 2):
        ann = osp.join(work_dir, 'data', f'fold{fold}', 'train.json')
        cmd = [sys.executable, tool, ann, '--scales', '1.43', '1.0',
               '--valid-ranges', '-1,32', '24,-1']
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        text.append(f'$ python tools/analysis_tools/analyze_scales.py '
                    f'{osp.relpath(ann, ROOT)} --scales 1.43 1.0 '
                    f'--valid-ranges -1,32 24,-1\n{res.stdout}')
    with open(out, 'w') as f:
        f.write('\n'.join(text))
    return out


# ----------------------------------------------------------------------
# one (variant, fold): train for the budget, test four ways
# ----------------------------------------------------------------------
def load_config(name, fold, work_dir, budget_s, run_dir, val_images=None):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIGS, name + '.py'))
    data_dir = osp.join(work_dir, 'data', f'fold{fold}')
    train_ann = osp.join(data_dir, 'train.json')
    val_ann = osp.join(data_dir, 'val.json')
    loader = cfg.train_dataloader.dataset
    inner = loader.dataset if loader.type == 'SniperChipDataset' else loader
    inner.data_root = osp.join(DATA, '')
    inner.ann_file = train_ann
    for dl in (cfg.val_dataloader, cfg.test_dataloader):
        dl.dataset.data_root = osp.join(DATA, '')
        dl.dataset.ann_file = val_ann
        if val_images:
            dl.dataset.indices = val_images
    for ev in (cfg.val_evaluator, cfg.test_evaluator):
        ev.ann_file = val_ann
    model = cfg.model.get('detector', cfg.model)
    model.backbone.init_cfg.checkpoint = osp.join(work_dir,
                                                  'mobilenet_v2_mmdet.pth')
    for hook in cfg.custom_hooks:
        if hook.type == 'TimeBudgetHook':
            hook.budget_s = budget_s
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.work_dir = run_dir
    cfg.experiment_name = f'{name}_fold{fold}_{time.strftime("%H%M%S")}'
    return cfg


def _budget_hook(runner):
    from mmsniper.engine.hooks import TimeBudgetHook
    return next(h for h in runner.hooks if isinstance(h, TimeBudgetHook))


def train_rpn_and_extract(fold, work_dir, budget_s, run_dir):
    """(d)'s first stage; returns (proposal file, seconds spent)."""
    from mmengine.runner import Runner
    rpn_dir = osp.join(run_dir, 'rpn')
    cfg = load_config('d_rpn', fold, work_dir, budget_s, rpn_dir)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _budget_hook(runner)
    ckpt = osp.join(rpn_dir, f'iter_{hook.stopped_at_iter}.pth')
    cfg_file = osp.join(rpn_dir, 'rpn_config.py')
    cfg.dump(cfg_file)
    proposals = osp.join(run_dir, 'proposals.pkl')
    start = time.perf_counter()
    subprocess.run([
        sys.executable, osp.join(ROOT, 'tools', 'extract_proposals.py'),
        cfg_file, ckpt, '--out', proposals, '--split', 'train'
    ], check=True)
    extract_s = time.perf_counter() - start
    return proposals, dict(rpn_train_s=hook.elapsed_s,
                           rpn_iters=hook.stopped_at_iter,
                           extract_s=extract_s)


def run_one(args, variant, fold):
    import torch
    torch.set_num_threads(args.threads)
    import mmsniper  # noqa: F401  registers the components
    from mmengine.runner import Runner

    from mmsniper.chips import resize_pixels
    name = VARIANTS[variant][0]
    run_dir = osp.join(args.work_dir, f'fold{fold}', variant)
    os.makedirs(run_dir, exist_ok=True)
    budget = args.budget_min * 60
    record = dict(variant=variant, fold=fold, config=name,
                  budget_s=budget, threads=args.threads)
    if variant == 'd':
        proposals, stage1 = train_rpn_and_extract(
            fold, args.work_dir, budget * args.rpn_fraction, run_dir)
        record.update(stage1)
        det_budget = budget - stage1['rpn_train_s'] - stage1['extract_s']
        if det_budget < 1:  # the RPN stage alone spent the budget
            record['over_budget_s'] = 1 - det_budget
            print(f'(d): the RPN and its proposals took {-det_budget:.0f} s '
                  'more than the budget; the detector trains for 1 s',
                  flush=True)
            det_budget = 1.0
    else:
        det_budget = budget
    cfg = load_config(name, fold, args.work_dir, det_budget, run_dir,
                      args.val_images)
    if variant == 'd':
        cfg.train_dataloader.dataset.neg_proposals.file = proposals
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _budget_hook(runner)
    record.update(
        train_s=hook.elapsed_s + record.get('rpn_train_s', 0) +
        record.get('extract_s', 0),
        det_train_s=hook.elapsed_s,
        iters=hook.stopped_at_iter,
        s_per_iter=hook.elapsed_s / hook.stopped_at_iter,
        batch_size=cfg.train_dataloader.batch_size)
    # training pixels per image (per pass over the data)
    dataset = runner.train_dataloader.dataset
    if hasattr(dataset, 'chip_stats'):
        stats = dataset.chip_stats()
        record['train_px_per_img'] = stats['chip_pixels_per_image']
        record['chip_stats'] = stats
    else:
        sizes = np.array([(d['height'], d['width'])
                          for d in dataset.load_data_list()], float)
        if variant == 'a':
            px = resize_pixels(sizes).mean()
        else:  # one of the SNIPER scales per visit, drawn uniformly
            factors = np.asarray(cfg.sniper_scales, dtype=float)
            px = (sizes.prod(axis=1) * np.mean(factors**2)).mean()
        record['train_px_per_img'] = float(px)

    from mmsniper.apis import sniper_tta_config
    num_val = len(runner.test_dataloader.dataset)
    val_sizes = np.array(
        [(d['height'], d['width'])
         for d in runner.test_dataloader.dataset.load_data_list()], float)
    start = time.perf_counter()
    metrics = runner.test()
    tests = dict(single=dict(
        metrics=metrics, s_per_img=(time.perf_counter() - start) / num_val,
        px_per_img=float(resize_pixels(val_sizes).mean())))
    state = runner.model.state_dict()
    for mode in TEST_MODES[1:]:
        overrides = dict(TTA_OVERRIDES[mode])
        if mode.startswith('autofocus'):
            overrides['vis_dir'] = osp.join(run_dir, f'{mode}_vis')
        tta_cfg = sniper_tta_config(cfg, overrides)
        tta_runner = Runner.from_cfg(tta_cfg)
        tta_runner.model.module.load_state_dict(state)
        start = time.perf_counter()
        m = tta_runner.test()
        tests[mode] = dict(
            metrics=m, s_per_img=(time.perf_counter() - start) / num_val,
            px_per_img=m['sniper/Mpx_per_img'] * 1e6)
    record['tests'] = tests
    with open(osp.join(run_dir, 'result.json'), 'w') as f:
        json.dump(record, f, indent=2, default=float)


# ----------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------
def _fmt_pair(values, fmt='{:.3f}'):
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt.format(np.mean(values)) + ' (' +
            ' / '.join(fmt.format(v) for v in values) + ')')


def summarize(args):
    results = []
    for fold in (1, 2):
        for variant in VARIANTS:
            path = osp.join(args.work_dir, f'fold{fold}', variant,
                            'result.json')
            if osp.exists(path):
                with open(path) as f:
                    results.append(json.load(f))
    if not results:
        print('no results yet')
        return
    rows = []
    header = ('| training | test | AP | AP50 | AP_small | train Mpx/img | '
              'test Mpx/img | train s/iter (iters in budget) | '
              'test s/img |\n|' + '---|' * 9)
    for variant, (_, vname) in VARIANTS.items():
        runs = [r for r in results if r['variant'] == variant]
        if not runs:
            continue
        all_runs = runs
        for mode in TEST_MODES:
            runs = [r for r in all_runs if mode in r['tests']]
            if not runs:
                continue

            def get(key, runs=runs, mode=mode):
                return [r['tests'][mode]['metrics'].get(key) for r in runs]
            rows.append('| ' + ' | '.join([
                f'({variant}) {vname}', TEST_NAMES[mode],
                _fmt_pair(get('coco/bbox_mAP')),
                _fmt_pair(get('coco/bbox_mAP_50')),
                _fmt_pair(get('coco/bbox_mAP_s')),
                _fmt_pair([r['train_px_per_img'] / 1e6 for r in runs],
                          '{:.2f}'),
                _fmt_pair([r['tests'][mode]['px_per_img'] / 1e6
                           for r in runs], '{:.2f}'),
                _fmt_pair([r['s_per_iter'] for r in runs], '{:.2f}') +
                ' [' + '/'.join(str(r['iters']) for r in runs) + ']',
                _fmt_pair([r['tests'][mode]['s_per_img'] for r in runs],
                          '{:.2f}'),
            ]) + ' |')
    # training cost: the same detector, seconds per iteration and per pass
    # over the training data (images for (a), (b); chips for (c), (d))
    cost = ['| training | s/iter | iterations per epoch | s/epoch | '
            'iterations in the budget | epochs in the budget |',
            '|' + '---|' * 6]
    for variant, (_, vname) in VARIANTS.items():
        runs = [r for r in results if r['variant'] == variant]
        if not runs:
            continue
        per_epoch = []
        for r in runs:
            if 'chip_stats' in r:
                samples = r['chip_stats']['num_chips']
            else:
                with open(osp.join(args.work_dir, 'data', f'fold{r["fold"]}',
                                   'train.json')) as f:
                    samples = len(json.load(f)['images'])
            per_epoch.append(samples / r['batch_size'])
        cost.append('| ' + ' | '.join([
            f'({variant}) {vname}',
            _fmt_pair([r['s_per_iter'] for r in runs], '{:.2f}'),
            _fmt_pair(per_epoch, '{:.1f}'),
            _fmt_pair([r['s_per_iter'] * n for r, n in zip(runs, per_epoch)],
                      '{:.0f}'),
            _fmt_pair([r['iters'] for r in runs], '{:.0f}'),
            _fmt_pair([r['iters'] / n for r, n in zip(runs, per_epoch)],
                      '{:.1f}'),
        ]) + ' |')
    folds = sorted({r['fold'] for r in results})
    budget = results[0]['budget_s']
    note = (f'Folds {folds}: mean (fold 1 / fold 2). Each training ran '
            f'{budget / 60:.0f} min of wall time on this machine '
            f'({results[0]["threads"]} threads).')
    table = header + '\n' + '\n'.join(rows) + '\n\n' + '\n'.join(cost)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(note + '\n\n' + table + '\n')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2, default=float)
    plot(args, results)
    print(note + '\n\n' + table)


def plot(args, results):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    markers = dict(single='o', sniper='s', autofocus='^', autofocus_t02='v')
    colors = dict(a='tab:gray', b='tab:blue', c='tab:orange', d='tab:red')
    for variant, (_, vname) in VARIANTS.items():
        for mode in TEST_MODES:
            runs = [r for r in results
                    if r['variant'] == variant and mode in r['tests']]
            xs = [r['tests'][mode]['px_per_img'] / 1e6 for r in runs]
            ys = [r['tests'][mode]['metrics']['coco/bbox_mAP_s']
                  for r in runs]
            if not xs:
                continue
            ax.scatter(xs, ys, marker=markers[mode], color=colors[variant],
                       alpha=0.45, s=22)
            ax.scatter([np.mean(xs)], [np.mean(ys)], marker=markers[mode],
                       color=colors[variant], s=70,
                       label=f'({variant}) {vname}: {mode}')
    ax.set_xlabel('test pixels per image (M)')
    ax.set_ylabel('AP_small')
    ax.set_title('KIT AIS cars, equal training time: mean of the folds '
                 '(large), each fold (small)', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc='best', ncol=1)
    fig.tight_layout()
    fig.savefig(osp.join(args.work_dir, 'ap_small_vs_test_pixels.png'))


def main():
    args = parse_args()
    args.work_dir = osp.abspath(args.work_dir)
    if args.run:
        run_one(args, args.run[0], int(args.run[1]))
        return
    if not osp.isdir(DATA) or not osp.isfile(WEIGHTS):
        sys.exit(f'study_kit_ais.py: needs {DATA} and {WEIGHTS} '
                 '(../shared beside the repository)')
    os.makedirs(args.work_dir, exist_ok=True)
    if not args.summary_only:
        split_annotations(args.work_dir)
        convert_weights(args.work_dir)
        print(open(analyze_scales(args.work_dir)).read())
        for fold in args.folds:
            for variant in args.variants:
                result = osp.join(args.work_dir, f'fold{fold}', variant,
                                  'result.json')
                if osp.exists(result):
                    print(f'fold {fold} ({variant}): done, {result}')
                    continue
                log = osp.join(args.work_dir, f'fold{fold}_{variant}.log')
                print(f'fold {fold} ({variant}) '
                      f'{VARIANTS[variant][1]}: training '
                      f'{args.budget_min:g} min, log {log}', flush=True)
                start = time.perf_counter()
                with open(log, 'w') as f:
                    subprocess.run([
                        sys.executable, __file__, '--run', variant,
                        str(fold), '--work-dir', args.work_dir,
                        '--budget-min', str(args.budget_min),
                        '--rpn-fraction', str(args.rpn_fraction),
                        '--threads', str(args.threads)
                    ] + (['--val-images', str(args.val_images)]
                         if args.val_images else []),
                                   check=True,
                                   stdout=f,
                                   stderr=subprocess.STDOUT)
                print(f'  done in {time.perf_counter() - start:.0f} s',
                      flush=True)
    summarize(args)


if __name__ == '__main__':
    main()
