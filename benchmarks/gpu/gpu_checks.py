# Copyright (c) mmsniper contributors. All rights reserved.
"""GPU checks of issue 12, item 5: fp16 SNIPER training, chips against full
images, AutoFocus against the full multi-scale test.

Run on the GPU machine by ``benchmarks/gpu/run_gpu_checks.sh`` (which builds
mmcv's CUDA ops first); on a CPU, ``--device cpu --dry-run`` runs every check
in miniature (2 iterations, fp32, 2 images) to verify the logic::

    python benchmarks/gpu/gpu_checks.py --out-dir OUT [--checks amp,...]
    python benchmarks/gpu/gpu_checks.py --device cpu --dry-run --out-dir OUT

Checks, in order of importance (``--checks``, comma separated):

``amp``
    A few training iterations of the Faster R-CNN R50-FPN SNIPER fp16
    config (``AmpOptimWrapper``, dynamic loss scale) on chips of generated
    data: every loss finite?, the loss scale, the dtype the neck computes in.
``chips_vs_full``
    The same detector trained on 512 px chips and on whole images resized
    by the finest scale factor, one after the other in one process, with the
    same warm-up and number of timed iterations: images (chips) per second,
    pixels per second, and peak GPU memory (``max_memory_allocated``).
``autofocus``
    The AutoFocus config's model, trained briefly on the same chips (its
    weights are otherwise random: a random focus head focuses everywhere),
    tested with ``focus=False`` (the full SNIPER multi-scale test) and
    ``focus=True`` on the same validation images: images per second and the
    pixel fractions the TTA model reports.

No pretrained weights (``backbone.init_cfg=None``): the figures are speed
and memory figures; the accuracy of such briefly trained models means
nothing. Each check writes its result at once: ``gpu_results.json`` (merged
with what earlier calls wrote to the same folder) and ``gpu_results.md``
(rendered from the JSON); a failing check records its traceback and the next
one still runs.
"""
import argparse
import copy
import datetime
import gc
import json
import math
import os
import os.path as osp
import platform
import sys
import tempfile
import time
import traceback

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CONFIG_AMP = 'configs/sniper/faster-rcnn_r50_fpn_sniper-amp-1x_coco.py'
CONFIG_AUTOFOCUS = ('configs/sniper/'
                    'faster-rcnn_r50_fpn_sniper-autofocus-1x_coco.py')
CHECKS = ('amp', 'chips_vs_full', 'autofocus')
# The generated data's own scales and ranges (the demo config's): objects of
# 10 to 580 px in 1500 to 2500 px images.
SCALES = [1.5, 0.6, (-1, 512)]
VALID_RANGES = [(-1, 40), (28, 200), (150, -1)]
RESULTS_JSON = 'gpu_results.json'
RESULTS_MD = 'gpu_results.md'

#: (GPU run, --dry-run) defaults of the sizes.
SIZES = dict(
    amp_iters=(20, 2),
    warmup=(5, 1),
    iters=(30, 2),
    chip_batch_size=(2, 2),
    full_batch_size=(2, 1),
    autofocus_train_iters=(300, 2),
    test_images=(8, 2),
    repeats=(2, 1),
    workers=(8, 0),
    num_train=(24, 2),
    num_val=(8, 2),
    min_size=(1500, 600),
    max_size=(2500, 800),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    parser.add_argument(
        '--dry-run', action='store_true',
        help='tiny sizes (defaults in brackets below), fp32: verifies the '
        'logic, measures nothing')
    parser.add_argument(
        '--checks', default=','.join(CHECKS),
        help=f'comma-separated subset of {",".join(CHECKS)}')
    parser.add_argument(
        '--out-dir', default=os.environ.get('OUT') or osp.join(
            ROOT, 'work_dirs', 'gpu_checks'))
    parser.add_argument(
        '--data-root', default=None,
        help='generated data (tools/generate_demo_data.py layout); made '
        'here with --num-train/--num-val/--min-size/--max-size if absent')
    parser.add_argument('--work-dir', default=None,
                        help='runners\' work dirs (default: a temp dir)')
    for name, (gpu, dry) in SIZES.items():
        parser.add_argument('--' + name.replace('_', '-'), type=int,
                            default=None, help=f'default {gpu} [{dry}]')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch CPU threads (CPU runs)')
    parser.add_argument(
        '--mmcv-ext-fallback', action='store_true',
        default=os.environ.get('MMSNIPER_MMCV_EXT_FALLBACK') == '1',
        help='use benchmarks/gpu/mmcv_ext_fallback.py (torchvision nms and '
        'RoIAlign) when mmcv._ext does not import (default: '
        'MMSNIPER_MMCV_EXT_FALLBACK=1)')
    parser.add_argument(
        '--note-error', default=None, metavar='CHECK=MESSAGE',
        help='only record an error of CHECK (e.g. its time limit) in the '
        'results of --out-dir and re-render them')
    parser.add_argument('--mmcv-build', default=None,
                        help='JSON file from run_gpu_checks.sh: how mmcv '
                        'was built (status, seconds, log tail)')
    args = parser.parse_args(argv)
    for name, (gpu, dry) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, dry if args.dry_run else gpu)
    args.checks = [c.strip() for c in args.checks.split(',') if c.strip()]
    unknown = sorted(set(args.checks) - set(CHECKS))
    if unknown:
        parser.error(f'unknown checks {unknown}; choose from {CHECKS}')
    return args


# ---------------------------------------------------------------- results
def load_results(out_dir):
    path = osp.join(out_dir, RESULTS_JSON)
    if osp.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def save_results(out_dir, results):
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, RESULTS_JSON), 'w') as f:
        json.dump(results, f, indent=2, default=str)
    with open(osp.join(out_dir, RESULTS_MD), 'w') as f:
        f.write(render_markdown(results))


def _fmt(value, spec='.3g', none='-'):
    if value is None:
        return none
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _mib(num_bytes):
    return None if num_bytes is None else num_bytes / 2**20


def render_markdown(results):
    env = results.get('env', {})
    lines = ['# GPU checks (benchmarks/gpu/gpu_checks.py)', '']
    if env:
        lines.append(
            f"{env.get('date_utc', '?')}: {env.get('device_name', '?')} "
            f"(compute capability {env.get('capability', '-')}, "
            f"{env.get('cpu_count', '?')} CPU cores); Python "
            f"{env.get('python', '?')}, torch {env.get('torch', '?')} (CUDA "
            f"{env.get('torch_cuda', '-')}), mmcv {env.get('mmcv', '?')} "
            f"(ops: {env.get('mmcv_ops', '?')}), mmengine "
            f"{env.get('mmengine', '?')}, mmdet {env.get('mmdet', '?')}."
            + (' **Dry run: tiny sizes, fp32 on CPU; the figures measure '
               'nothing.**' if env.get('dry_run') else ''))
        lines.append('')
    build = results.get('mmcv_build')
    if build:
        lines += ['## mmcv 2.1.0 build', '',
                  f"status: **{build.get('status')}** in "
                  f"{_fmt(build.get('seconds'), '.0f')} s "
                  f"(TORCH_CUDA_ARCH_LIST={build.get('arch', '?')}, "
                  f"MAX_JOBS={build.get('jobs', '?')}, patches: "
                  f"{build.get('patches') or 'none'})", '']
        if build.get('would_take'):
            lines += ['What it would take: ' + build.get(
                'would_take', 'see the log tail below'), '', '```',
                build.get('log_tail', '').rstrip(), '```', '']

    def partial(result):
        if result.get('partial'):
            return ['*Partial: the check stopped before its end (see '
                    'Errors).*', '']
        return []

    amp = results.get('amp')
    if amp:
        lines += [
            '## (a) fp16 training on chips', '',
            f"`{amp['config']}`, {amp['optim_wrapper']}, batch "
            f"{amp['batch_size']} chips of {amp['chip_size']} px, lr "
            f"{amp['lr']}, random init; neck output dtype "
            f"{amp.get('neck_dtype')}; scales {amp['scales']}.", '',
            f"**{amp['finite_iters']} of {amp['num_iters']} iterations with "
            f"every loss finite** (loss scale: {amp.get('loss_scales')}).",
            '', '| iter | loss | loss_rpn_cls | loss_rpn_bbox | loss_cls | '
            'loss_bbox | finite | step s |',
            '|---|---|---|---|---|---|---|---|'
        ]
        for rec in amp['records']:
            los = rec['losses']
            lines.append('| ' + ' | '.join([
                str(rec['iter']), *(_fmt(los.get(k), '.4f') for k in (
                    'loss', 'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls',
                    'loss_bbox')),
                str(rec['loss_finite']), _fmt(rec['step_s'], '.3f')]) + ' |')
        lines.append('')
    cvf = results.get('chips_vs_full')
    if cvf:
        lines += [
            '## (b) training on chips vs on whole images at the finest scale',
            '', *partial(cvf),
            f"Same detector (`{cvf['config']}`, {cvf['optim_wrapper']}), "
            f"{cvf['warmup']} warm-up then {cvf['iters']} timed iterations "
            'each, one after the other in one process. Chips: '
            f"{cvf['chip_size']} px, batch augment pads to it; full: "
            f"whole image x{cvf['finest_scale']} (keep ratio, padded to 32), "
            f"SniperRoIHead's valid-range filter off (no chip ranges). "
            '"step" excludes the time waiting for the data loader '
            f"({cvf['workers']} workers).", '',
            '| training on | batch | model input Mpx / image | images '
            '(chips)/s, wall | images (chips)/s, step | Mpx/s, step | '
            'peak GPU MiB allocated (before the run) | peak MiB reserved '
            '| losses finite |',
            '|---|---|---|---|---|---|---|---|---|'
        ]
        for key, name in (('chips', 'chips'), ('full', 'whole images')):
            run = cvf.get(key)
            if not run:
                continue
            lines.append('| ' + ' | '.join([
                name, str(run['batch_size']),
                _fmt(run['input_px_per_image'] / 1e6, '.2f'),
                _fmt(run['images_per_s_wall'], '.2f'),
                _fmt(run['images_per_s_step'], '.2f'),
                _fmt(run['mpx_per_s_step'], '.3g'),
                _fmt(_mib(run['peak_allocated']), '.0f') + ' (' +
                _fmt(_mib(run.get('baseline_allocated')), '.0f') + ')',
                _fmt(_mib(run['peak_reserved']), '.0f'),
                f"{run['finite_iters']}/{run['num_iters']}"]) + ' |')
        epoch = cvf.get('epoch')
        if epoch:
            lines += [
                '', f"One epoch of the {epoch['num_images']} generated "
                f"training images: {epoch['num_chips']} chips "
                f"({epoch['chips_per_image']:.1f} per image, "
                f"{epoch['chip_mpx_per_image']:.2f} Mpx) vs whole images at "
                f"the finest scale ({epoch['finest_mpx_per_image']:.2f} Mpx "
                f"per image): {_fmt(epoch.get('chips_epoch_s'), '.1f')} s vs "
                f"{_fmt(epoch.get('full_epoch_s'), '.1f')} s at the step "
                'rates above.']
        lines.append('')
    af = results.get('autofocus')
    if af:
        lines += [
            '## (c) AutoFocus vs the full SNIPER multi-scale test', '',
            *partial(af), f"`{af['config']}` model (random init, then trained "
            f"{af['train_iters']} iterations on the generated chips, "
            f"{af['optim_wrapper']}; loss finite: {af['train_finite']}), "
            f"fp32 inference on {af['num_images']} validation images, "
            f"scales {af['scales']}, batch 1; pass {af['report_pass']} of "
            f"{af['repeats']} reported (earlier passes warm up).", '',
            '| test | images/s (wall, whole test loop) | images/s (in '
            'test_step) | Mpx / image | px fraction of full | per scale, '
            'finest first |', '|---|---|---|---|---|---|'
        ]
        for key, name in (('full', 'SNIPER multi-scale (focus=False)'),
                          ('focus', 'AutoFocus (focus=True)')):
            run = af.get(key)
            if not run:
                continue
            lines.append('| ' + ' | '.join([
                name, _fmt(run['images_per_s_wall'], '.2f'),
                _fmt(run['images_per_s_model'], '.2f'),
                _fmt(run['mpx_per_img'], '.2f'),
                _fmt(run.get('px_fraction_of_full'), '.3f'),
                ', '.join(_fmt(v, '.3f') for v in run.get(
                    'px_fraction_per_scale', []))]) + ' |')
        if af.get('full') and af.get('focus'):
            lines += ['', 'AutoFocus speed-up (images/s, test_step): '
                      f"{af['focus']['images_per_s_model'] / max(af['full']['images_per_s_model'], 1e-9):.2f}x."]  # noqa: E501
        lines.append('')
    errors = results.get('errors', {})
    if errors:
        lines += ['## Errors', '']
        for name, text in errors.items():
            lines += [f'### {name}', '', '```', text.rstrip()[-4000:], '```',
                      '']
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------- setup
def _cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return 'CPU: ' + line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'CPU: ' + (platform.processor() or platform.machine())


def environment(args):
    import mmdet
    import mmengine
    import torch

    import mmcv
    try:
        import mmcv._ext  # noqa: F401
        ops = 'compiled'
        if getattr(mmcv, '_mmsniper_ext_fallback', False):
            ops = 'torchvision fallback (build failed)'
    except ImportError as exc:
        ops = f'missing ({exc})'
    env = dict(
        date_utc=datetime.datetime.now(
            datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        dry_run=args.dry_run,
        python=platform.python_version(),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        mmcv=mmcv.__version__,
        mmcv_ops=ops,
        mmengine=mmengine.__version__,
        mmdet=mmdet.__version__,
        cpu_count=os.cpu_count(),
        device_name=_cpu_name(),
        capability=None)
    if args.device == 'cuda':
        env['device_name'] = torch.cuda.get_device_name(0)
        env['capability'] = '%d.%d' % torch.cuda.get_device_capability(0)
        env['gpu_memory_mib'] = torch.cuda.get_device_properties(
            0).total_memory / 2**20
    return env


def ensure_data(args):
    """Generated data (tools/generate_demo_data.py) in ``args.data_root``."""
    if args.data_root is None:
        args.data_root = osp.join(args.work_dir, 'data')
    if not osp.exists(osp.join(args.data_root, 'annotations', 'val.json')):
        sys.path.insert(0, osp.join(ROOT, 'tools'))
        import generate_demo_data
        generate_demo_data.main([
            '--out-dir', args.data_root, '--num-train', str(args.num_train),
            '--num-val', str(args.num_val), '--min-size', str(args.min_size),
            '--max-size', str(args.max_size)])
    return args.data_root


def load_config(path):
    from mmengine.config import Config
    return Config.fromfile(osp.join(ROOT, path))


def detector_cfg(cfg):
    """The detector's config (inside an AutoFocusDetector's)."""
    model = cfg.model
    return model.detector if model.type == 'AutoFocusDetector' else model


def setup_model(cfg):
    from mmsniper.testing.synthetic import SYNTHETIC_CLASSES
    det = detector_cfg(cfg)
    det.backbone.init_cfg = None  # nothing can be downloaded there
    det.roi_head.bbox_head.num_classes = len(SYNTHETIC_CLASSES)


def setup_train(cfg, args, work_dir, max_iters, batch_size, amp):
    from mmsniper.testing.synthetic import SYNTHETIC_CLASSES
    setup_model(cfg)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.load_from = None
    cfg.resume = False
    cfg.randomness = dict(seed=0)
    cfg.train_cfg = dict(
        type='IterBasedTrainLoop', max_iters=max_iters,
        val_interval=max_iters + 1)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.param_scheduler = None  # a constant learning rate
    # the config's lr is for 16 images per batch (linear scaling rule)
    cfg.optim_wrapper.optimizer.lr = 0.02 * batch_size / 16
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    else:
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(type='LogProcessor', window_size=1,
                             by_epoch=False)
    cfg.auto_scale_lr = dict(enable=False)
    loader = cfg.train_dataloader
    loader.batch_size = batch_size
    loader.num_workers = args.workers
    loader.persistent_workers = args.workers > 0
    inner = loader.dataset.dataset
    inner.data_root = osp.join(args.data_root, '')
    inner.ann_file = 'annotations/train.json'
    inner.data_prefix = dict(img='train/')
    inner.metainfo = dict(classes=SYNTHETIC_CLASSES)
    inner.filter_cfg = dict(filter_empty_gt=False)
    loader.dataset.scales = SCALES
    loader.dataset.valid_ranges = VALID_RANGES
    return cfg


def to_full_images(cfg, args, finest):
    """Train on whole images resized by ``finest`` instead of chips."""
    from mmengine.config import ConfigDict
    inner = cfg.train_dataloader.dataset.dataset
    cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=True)
    cfg.train_dataloader.batch_sampler = dict(type='AspectRatioBatchSampler')
    cfg.train_dataloader.batch_size = args.full_batch_size
    cfg.optim_wrapper.optimizer.lr = 0.02 * args.full_batch_size / 16
    cfg.train_dataloader.dataset = ConfigDict(
        type='CocoDataset',
        data_root=inner.data_root,
        ann_file=inner.ann_file,
        data_prefix=inner.data_prefix,
        metainfo=inner.metainfo,
        filter_cfg=inner.filter_cfg,
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale_factor=finest, keep_ratio=True),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackDetInputs')
        ])
    # no chip padding, no chip valid range to filter proposals by
    cfg.model.data_preprocessor.batch_augments = None
    detector_cfg(cfg).roi_head.filter_proposals_by_valid_range = False
    return cfg


def _hook_base():
    from mmengine.hooks import Hook
    return Hook


class _Sync:

    def __init__(self, device):
        import torch
        self.cuda = device == 'cuda'
        self.torch = torch

    def now(self):
        if self.cuda:
            self.torch.cuda.synchronize()
        return time.perf_counter()


def make_iter_stats(warmup, device):
    """A hook that times each training iteration (data wait and step),
    counts images and pixels, keeps the losses and resets the peak memory
    counter at the first timed iteration."""
    import torch
    Hook = _hook_base()
    sync = _Sync(device)

    class IterStats(Hook):
        priority = 'VERY_LOW'

        def __init__(self):
            self.records = []
            self.neck_dtype = None
            self.baseline_allocated = None

        def before_train(self, runner):
            model = runner.model
            det = getattr(model, 'detector', model)
            if hasattr(det, 'neck'):
                det.neck.register_forward_hook(self._neck_dtype)
            self.last_end = sync.now()

        def _neck_dtype(self, module, inputs, outputs):
            if self.neck_dtype is None:
                self.neck_dtype = str(outputs[0].dtype)

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            now = sync.now()
            if runner.iter == warmup and sync.cuda:
                torch.cuda.reset_peak_memory_stats()
                self.baseline_allocated = torch.cuda.memory_allocated()
            self.data_s = now - self.last_end
            self.start = now

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            now = sync.now()
            inputs = data_batch['inputs']
            losses = {
                k: float(v.detach()) if hasattr(v, 'detach') else float(v)
                for k, v in (outputs or {}).items() if 'loss' in k
            }
            scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
            self.records.append(dict(
                iter=runner.iter,
                data_s=self.data_s,
                step_s=now - self.start,
                images=len(inputs),
                raw_px=int(sum(x.shape[-2] * x.shape[-1] for x in inputs)),
                # the batch is padded to its tallest and widest image
                batch_shape=[len(inputs),
                             max(int(x.shape[-2]) for x in inputs),
                             max(int(x.shape[-1]) for x in inputs)],
                losses=losses,
                loss_finite=bool(losses) and all(
                    math.isfinite(v) for v in losses.values()),
                loss_scale=float(scaler.get_scale())
                if scaler is not None else None))
            self.last_end = now

    return IterStats()


def run_training(cfg, warmup, device, inspect=None):
    """Train with mmengine's Runner, then free it (so that the next run's
    peak memory holds nothing of this one).

    Returns:
        tuple: the stats hook, ``inspect(runner)`` (None without it) and
        the name of the optimizer wrapper's class.
    """
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    stats = make_iter_stats(warmup, device)
    runner.register_hook(stats)
    runner.train()
    seen = inspect(runner) if inspect is not None else None
    wrapper = type(runner.optim_wrapper).__name__
    del runner
    release()
    return stats, seen, wrapper


def summarize(stats, warmup, device, padded_px=None, divisor=32):
    import torch
    timed = stats.records[warmup:] or stats.records
    images = sum(r['images'] for r in timed)
    step = sum(r['step_s'] for r in timed)
    wall = step + sum(r['data_s'] for r in timed)
    if padded_px is None:
        # whole images: the batch is padded to its largest image, then to a
        # multiple of the divisor (mmdet's DetDataPreprocessor)
        def pad(v):
            return int(math.ceil(v / divisor) * divisor)
        input_px = sum(
            r['images'] * pad(r['batch_shape'][1]) * pad(r['batch_shape'][2])
            for r in timed)
    else:
        input_px = images * padded_px
    out = dict(
        num_iters=len(stats.records),
        timed_iters=len(timed),
        finite_iters=sum(r['loss_finite'] for r in stats.records),
        images=images,
        step_s=step,
        wall_s=wall,
        images_per_s_step=images / step if step else None,
        images_per_s_wall=images / wall if wall else None,
        input_px_per_image=input_px / max(images, 1),
        raw_px_per_image=sum(r['raw_px'] for r in timed) / max(images, 1),
        mpx_per_s_step=input_px / step / 1e6 if step else None,
        peak_allocated=None,
        peak_reserved=None,
        baseline_allocated=stats.baseline_allocated,
        last_losses=stats.records[-1]['losses'] if stats.records else {},
        neck_dtype=stats.neck_dtype)
    if device == 'cuda':
        out['peak_allocated'] = torch.cuda.max_memory_allocated()
        out['peak_reserved'] = torch.cuda.max_memory_reserved()
    return out


def release():
    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- checks
def check_amp(args):
    amp = args.device == 'cuda'
    cfg = setup_train(load_config(CONFIG_AMP), args,
                      osp.join(args.work_dir, 'amp'), args.amp_iters,
                      args.chip_batch_size, amp)
    stats, _, wrapper = run_training(cfg, 0, args.device)
    summary = summarize(stats, 0, args.device, padded_px=512 * 512)
    result = dict(
        config=CONFIG_AMP,
        optim_wrapper=wrapper,
        batch_size=args.chip_batch_size,
        chip_size=cfg.train_dataloader.dataset.chip_size,
        lr=cfg.optim_wrapper.optimizer.lr,
        scales=SCALES,
        num_iters=summary['num_iters'],
        finite_iters=summary['finite_iters'],
        neck_dtype=stats.neck_dtype,
        loss_scales=sorted({r['loss_scale'] for r in stats.records
                            if r['loss_scale'] is not None}),
        records=stats.records,
        peak_allocated=summary['peak_allocated'])
    return result


def check_chips_vs_full(args):
    amp = args.device == 'cuda'
    total = args.warmup + args.iters
    chip_cfg = setup_train(load_config(CONFIG_AMP), args,
                           osp.join(args.work_dir, 'chips'), total,
                           args.chip_batch_size, amp)
    full_cfg = to_full_images(
        setup_train(load_config(CONFIG_AMP), args,
                    osp.join(args.work_dir, 'full'), total,
                    args.full_batch_size, amp), args, SCALES[0])
    chip_size = chip_cfg.train_dataloader.dataset.chip_size
    result = dict(config=CONFIG_AMP, warmup=args.warmup, iters=args.iters,
                  chip_size=chip_size, finest_scale=SCALES[0],
                  workers=args.workers)
    stats, chip_stats, wrapper = run_training(
        chip_cfg, args.warmup, args.device,
        inspect=lambda runner: runner.train_dataloader.dataset.chip_stats())
    result['optim_wrapper'] = wrapper
    result['chips'] = summarize(stats, args.warmup, args.device,
                                padded_px=chip_size**2)
    result['chips']['batch_size'] = args.chip_batch_size
    args.save_partial(result)
    stats, _, _ = run_training(full_cfg, args.warmup, args.device)
    result['full'] = summarize(stats, args.warmup, args.device)
    result['full']['batch_size'] = args.full_batch_size
    chips_rate = result['chips']['images_per_s_step']
    full_rate = result['full']['images_per_s_step']
    result['epoch'] = dict(
        num_images=chip_stats['num_images'],
        num_chips=chip_stats['num_chips'],
        chips_per_image=chip_stats['chips_per_image'],
        chip_mpx_per_image=chip_stats['chip_pixels_per_image'] / 1e6,
        finest_mpx_per_image=chip_stats['finest_scale_pixels_per_image'] /
        1e6,
        chips_epoch_s=chip_stats['num_chips'] / chips_rate
        if chips_rate else None,
        full_epoch_s=chip_stats['num_images'] / full_rate
        if full_rate else None)
    return result


def _tta_pass(cfg, state, focus, work_dir, device):
    from mmengine.runner import Runner
    from mmsniper.apis import sniper_tta_config  # as tools/test.py --tta
    tta_cfg = sniper_tta_config(cfg, dict(focus=focus))
    tta_cfg.work_dir = work_dir
    runner = Runner.from_cfg(tta_cfg)
    runner.model.module.load_state_dict(state)
    sync = _Sync(device)
    start = sync.now()
    metrics = runner.test()
    wall = sync.now() - start
    model = runner.model
    images = metrics['sniper/images']
    seconds = float(model.sniper_stats['seconds'])
    num_scales = len(model.scales)
    out = dict(
        focus=focus,
        images=images,
        wall_s=wall,
        model_s=seconds,
        images_per_s_wall=images / wall if wall else None,
        images_per_s_model=images / seconds if seconds else None,
        mpx_per_img=metrics['sniper/Mpx_per_img'],
        mpx_per_img_per_scale=[
            metrics[f'sniper/Mpx_per_img_scale{i}']
            for i in range(num_scales)
        ],
        px_fraction_of_full=metrics.get('sniper/px_fraction_of_full'),
        px_fraction_per_scale=[
            metrics.get(f'sniper/px_fraction_scale{i}')
            for i in range(num_scales)
        ],
        bbox_mAP=metrics.get('coco/bbox_mAP'))
    del runner, model
    release()
    return out


def check_autofocus(args):
    from mmsniper.testing.synthetic import SYNTHETIC_CLASSES
    amp = args.device == 'cuda'
    cfg = setup_train(load_config(CONFIG_AUTOFOCUS), args,
                      osp.join(args.work_dir, 'autofocus'),
                      args.autofocus_train_iters, args.chip_batch_size, amp)
    stats, state, wrapper = run_training(
        cfg, 0, args.device,
        inspect=lambda runner: copy.deepcopy(runner.model.state_dict()))
    result = dict(
        config=CONFIG_AUTOFOCUS,
        optim_wrapper=wrapper,
        train_iters=len(stats.records),
        train_finite=f"{sum(r['loss_finite'] for r in stats.records)}/"
        f'{len(stats.records)}',
        train_last_losses=stats.records[-1]['losses']
        if stats.records else {},
        repeats=args.repeats,
        report_pass=0)

    # test config: the generated validation images, the config's TTA model
    test_cfg = load_config(CONFIG_AUTOFOCUS)
    setup_model(test_cfg)
    data_root = osp.join(args.data_root, '')
    loader = test_cfg.test_dataloader
    loader.num_workers = min(args.workers, 2)
    loader.persistent_workers = False
    loader.dataset.data_root = data_root
    loader.dataset.ann_file = 'annotations/val.json'
    loader.dataset.data_prefix = dict(img='val/')
    loader.dataset.metainfo = dict(classes=SYNTHETIC_CLASSES)
    loader.dataset.indices = args.test_images
    test_cfg.test_evaluator.ann_file = osp.join(data_root, 'annotations',
                                                'val.json')
    test_cfg.val_cfg = test_cfg.val_dataloader = None
    test_cfg.val_evaluator = None
    test_cfg.default_hooks.checkpoint = None
    test_cfg.launcher = 'none'
    test_cfg.load_from = None
    tta = test_cfg.tta_model
    result.update(scales=[list(s) if isinstance(s, (list, tuple)) else s
                          for s in tta.scales],
                  chip_params=[list(p) for p in tta.chip_params],
                  num_images=args.test_images)
    result['passes'] = []
    args.save_partial(result)
    for rep in range(args.repeats):
        for focus in (False, True):
            run = _tta_pass(
                test_cfg, state, focus,
                osp.join(args.work_dir, f'tta_{rep}_{int(focus)}'),
                args.device)
            result['passes'].append(run)
            result['focus' if focus else 'full'] = run
            result['report_pass'] = rep + 1
            args.save_partial(result)
    return result


CHECK_FUNCS = dict(
    amp=check_amp, chips_vs_full=check_chips_vs_full,
    autofocus=check_autofocus)


def main(argv=None):
    args = parse_args(argv)
    if args.note_error:
        name, _, message = args.note_error.partition('=')
        results = load_results(args.out_dir)
        results.setdefault('errors', {})[name] = message
        save_results(args.out_dir, results)
        return
    if args.device == 'cpu':
        # before torch is imported: a GPU, if any, stays unused
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('gpu_checks.py: --device cuda but torch sees no GPU; use '
                 '--device cpu --dry-run to check the logic on a CPU')
    if args.device == 'cpu':
        torch.set_num_threads(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    if args.work_dir is None:
        args.work_dir = tempfile.mkdtemp(prefix='mmsniper_gpu_checks_')
    if args.mmcv_ext_fallback:
        sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
        import mmcv_ext_fallback
        if mmcv_ext_fallback.install():
            print('gpu_checks: mmcv._ext missing: torchvision nms and '
                  'RoIAlign stand in (mmcv_ext_fallback.py)', flush=True)
    import mmsniper  # noqa: F401  (registers the components)

    results = load_results(args.out_dir)
    results['env'] = environment(args)
    if args.mmcv_build and osp.exists(args.mmcv_build):
        with open(args.mmcv_build) as f:
            results['mmcv_build'] = json.load(f)
    results.setdefault('errors', {})
    save_results(args.out_dir, results)
    print(f'gpu_checks: data in {ensure_data(args)}', flush=True)
    failed = []
    for name in args.checks:
        print(f'gpu_checks: [{name}] start', flush=True)
        start = time.perf_counter()

        def save_partial(result, name=name):
            # what a check has so far, should it be stopped at its limit
            results[name] = dict(result, partial=True)
            save_results(args.out_dir, results)

        args.save_partial = save_partial
        try:
            result = CHECK_FUNCS[name](args)
        except Exception:  # record it, run the next check
            text = traceback.format_exc()
            print(text, file=sys.stderr, flush=True)
            results['errors'][name] = text
            failed.append(name)
        else:
            result['check_seconds'] = time.perf_counter() - start
            results[name] = result
            results['errors'].pop(name, None)
        save_results(args.out_dir, results)
        print(f'gpu_checks: [{name}] done in '
              f'{time.perf_counter() - start:.1f} s', flush=True)
    print(render_markdown(results))
    if failed:
        sys.exit(f'gpu_checks: failed: {", ".join(failed)}')


if __name__ == '__main__':
    main()
