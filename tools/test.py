#!/usr/bin/env python
"""Test (and evaluate) a detector with mmsniper.

Same interface as MMDetection 3.x's ``tools/test.py``::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show] [--show-dir DIR] [--wait-time S] [--cfg-options ...]
        [--launcher {none,pytorch,slurm,mpi}] [--tta] [--local_rank N]
        [--trust-checkpoint-dir DIR ...]

It runs from a source checkout without installing mmsniper. CHECKPOINT is
named on the command line, so it is trusted (see
:mod:`mmsniper.utils.checkpoint`).
"""
import argparse
import sys
import warnings
from copy import deepcopy
from pathlib import Path

# Make ``import mmsniper`` work from a plain checkout (no ``pip install``).
REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.config import ConfigDict  # noqa: E402

from mmdet.engine.hooks.utils import trigger_visualization_hook  # noqa: E402
from mmdet.evaluation import DumpDetResults  # noqa: E402
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402

import mmsniper  # noqa: E402,F401  (registers mmsniper's components)
from mmsniper import utils as sniper_utils  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and eval) a detector (mmsniper)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file (named here, so trusted: it may be loaded '
        'with torch.load(weights_only=False))')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    sniper_utils.add_runner_args(
        parser,
        trust_help='trust checkpoints under DIR (e.g. a Pretrained init_cfg '
        'file that is not weights-only).')
    parser.add_argument('--tta', action='store_true', help='test time augment')
    return parser, sniper_utils.parse_runner_args(parser, argv)


#: Steps that change the image size: a SNIPER test loads the original size.
_RESIZING_STEPS = ('Resize', 'RandomResize', 'FixShapeResize', 'RandomFlip',
                   'Pad', 'RandomCrop', 'RandomChoiceResize')


def _is_sniper_tta(tta_model) -> bool:
    return str(tta_model.get('type', '')).split('.')[-1] == 'SniperTTAModel'


def _enable_tta(cfg):
    """Wrap the model in ``tta_model`` and use ``tta_pipeline`` (defaults:
    mmdet's DetTTAModel with horizontal-flip TTA). A ``SniperTTAModel`` (the
    SNIPER configs' multi-scale test) also gets its ``SniperTTAStatsHook``,
    which logs the pixels and time per image next to the metric."""
    if 'tta_model' not in cfg:
        warnings.warn('Cannot find ``tta_model`` in config, '
                      'we will set it as default.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg and _is_sniper_tta(cfg.tta_model):
        # SniperTTAModel resizes per scale itself: the test pipeline
        # without its resizing steps
        warnings.warn('Cannot find ``tta_pipeline`` in config: using the '
                      'test pipeline without its resizing steps.')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        cfg.tta_pipeline = [
            step for step in deepcopy(test_data_cfg.pipeline)
            if str(step['type']).split('.')[-1] not in _RESIZING_STEPS
        ]
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, '
                      'we will set it as default.')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
        flip_tta = dict(
            type='TestTimeAug',
            transforms=[
                [
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ],
                [
                    dict(
                        type='PackDetInputs',
                        meta_keys=('img_id', 'img_path', 'ori_shape',
                                   'img_shape', 'scale_factor', 'flip',
                                   'flip_direction'))
                ],
            ])
        cfg.tta_pipeline[-1] = flip_tta
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    if _is_sniper_tta(cfg.tta_model):
        # log the pixels and time per image next to the metric
        hooks = list(cfg.get('custom_hooks', None) or [])
        if not any(
                str(h.get('type', '')).endswith('SniperTTAStatsHook')
                for h in hooks):
            hooks.append(dict(type='SniperTTAStatsHook'))
        cfg.custom_hooks = hooks


def main(argv=None):
    parser, args = parse_args(argv)

    setup_cache_size_limit_of_dynamo()

    cfg = sniper_utils.load_tool_config(args)

    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:
        _enable_tta(cfg)

    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')

    with sniper_utils.trusted_checkpoint_loading(
            trusted_dirs=[cfg.work_dir, *args.trust_checkpoint_dir],
            trusted_files=[args.checkpoint]):
        sniper_utils.setup_cpu_distributed(cfg, args.launcher)

        runner = sniper_utils.build_tool_runner(cfg, args.launcher)

        # dump predictions with a dummy metric
        if args.out is not None:
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))

        runner.test()


if __name__ == '__main__':
    try:
        main()
    except sniper_utils.UntrustedCheckpointError as exc:
        # the message says what to do; the traceback would only bury it
        sys.exit(f'tools/test.py: error: UntrustedCheckpointError: {exc}')
