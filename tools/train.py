#!/usr/bin/env python
"""Train a detector with mmsniper.

Same interface as MMDetection 3.x's ``tools/train.py``::

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
        [--resume [CHECKPOINT]] [--cfg-options KEY=VALUE ...]
        [--launcher {none,pytorch,slurm,mpi}] [--local_rank N]
        [--trust-checkpoint] [--trust-checkpoint-dir DIR ...]

It runs from a source checkout without installing mmsniper. Checkpoint
loading (``--resume``, ``load_from``, a local ``Pretrained`` init) goes
through :mod:`mmsniper.utils.checkpoint`: weights-only, unless the file is
trusted explicitly (``--trust-checkpoint`` for the checkpoint the run starts
from, ``--trust-checkpoint-dir DIR`` for a folder).
"""
import argparse
import logging
import sys
from pathlib import Path

# Make ``import mmsniper`` work from a plain checkout (no ``pip install``).
REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmengine.logging import print_log  # noqa: E402

from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402

import mmsniper  # noqa: E402,F401  (registers mmsniper's components)
from mmsniper import utils as sniper_utils  # noqa: E402
from mmsniper.utils.setup_env import (  # noqa: E402
    exit_distributed_run, finish_distributed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a detector (mmsniper)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision (fp16) training; needs a GPU')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint; without a path, resume from the '
        'latest checkpoint in the work dir. Loaded weights-only (see '
        '--trust-checkpoint).')
    sniper_utils.add_trust_checkpoint_arg(
        parser, what='the checkpoint the run starts from (--resume PATH or '
        'load_from; with --resume alone, those in the work dir)')
    sniper_utils.add_runner_args(
        parser,
        trust_help='trust checkpoints under DIR: if they are not '
        'weights-only they may be loaded with torch.load(weights_only=False), '
        'which runs code from the file.')
    return parser, sniper_utils.parse_runner_args(parser, argv)


def main(argv=None):
    parser, args = parse_args(argv)

    # Reduce the number of repeated compilations and improve training speed
    # (only matters with ``compile=True``).
    setup_cache_size_limit_of_dynamo()

    cfg = sniper_utils.load_tool_config(args)

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
        elif optim_wrapper != 'OptimWrapper':
            parser.error('--amp is only supported when the optimizer wrapper '
                         f'type is OptimWrapper, but got {optim_wrapper}.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    # fail now, not after building datasets and the model
    if cfg.get('optim_wrapper', {}).get('type') == 'AmpOptimWrapper':
        amp_error = sniper_utils.check_amp_available()
        if amp_error is not None:
            parser.error(amp_error)

    if args.auto_scale_lr:
        if ('auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr
                and 'base_batch_size' in cfg.auto_scale_lr):
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('Can not find "auto_scale_lr" or '
                               '"auto_scale_lr.enable" or '
                               '"auto_scale_lr.base_batch_size" in your '
                               'configuration file.')

    # resume priority: explicit checkpoint > auto resume from work_dir
    explicit_ckpt = None
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = explicit_ckpt = args.resume

    # weights-only unless trusted explicitly (the checkpoints this tool
    # writes load weights-only, so resuming needs no trust)
    start_ckpt = explicit_ckpt or cfg.get('load_from', None)
    trusted_dirs = list(args.trust_checkpoint_dir)
    if args.trust_checkpoint and args.resume == 'auto':
        trusted_dirs.append(cfg.work_dir)
    with sniper_utils.trusted_checkpoint_loading(
            trusted_dirs=trusted_dirs,
            trusted_files=[start_ckpt] if args.trust_checkpoint else [],
            named_files=[start_ckpt]):
        # CPU-only multi-process runs: gloo + DDP without device_ids
        sniper_utils.setup_cpu_distributed(cfg, args.launcher)

        runner = sniper_utils.build_tool_runner(cfg, args.launcher)
        runner.train()
        # every rank done: close the process group cleanly
        finish_distributed()


if __name__ == '__main__':
    try:
        main()
    except sniper_utils.UntrustedCheckpointError as exc:
        # the message says what to do; the traceback would only bury it
        sys.exit(f'tools/train.py: error: UntrustedCheckpointError: {exc}')
    except sniper_utils.CorruptCheckpointError as exc:
        sys.exit(f'tools/train.py: error: {exc}')
    else:
        # skip the native exit handlers of a finished distributed run
        exit_distributed_run()
