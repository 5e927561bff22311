#!/usr/bin/env python
"""Test (and evaluate) a detector with mmsniper.

Same interface as MMDetection 3.x's ``tools/test.py``::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show] [--show-dir DIR] [--wait-time S] [--cfg-options ...]
        [--launcher {none,pytorch,slurm,mpi}] [--tta] [--local_rank N]
        [--trust-checkpoint] [--trust-checkpoint-dir DIR ...]

It runs from a source checkout without installing mmsniper. CHECKPOINT is
loaded weights-only; a file that is not weights-only loadable is refused
unless ``--trust-checkpoint`` is given (see :mod:`mmsniper.utils.checkpoint`).
"""
import argparse
import sys
from pathlib import Path

# Make ``import mmsniper`` work from a plain checkout (no ``pip install``).
REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmdet.engine.hooks.utils import trigger_visualization_hook  # noqa: E402
from mmdet.evaluation import DumpDetResults  # noqa: E402
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402

import mmsniper  # noqa: E402,F401  (registers mmsniper's components)
from mmsniper import utils as sniper_utils  # noqa: E402
from mmsniper.utils.setup_env import (  # noqa: E402
    exit_distributed_run, finish_distributed)
from mmsniper.apis import enable_tta  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and eval) a detector (mmsniper)')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file (loaded weights-only; see --trust-checkpoint)')
    sniper_utils.add_trust_checkpoint_arg(parser)
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
    parser.add_argument(
        '--allow-partial-checkpoint',
        action='store_true',
        help='test with a checkpoint that holds under half of the '
        "detector's weights (refused by default: most likely another "
        "model's, and the rest would be random)")
    return parser, sniper_utils.parse_runner_args(parser, argv)


def main(argv=None):
    parser, args = parse_args(argv)

    setup_cache_size_limit_of_dynamo()

    cfg = sniper_utils.load_tool_config(args)

    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:
        enable_tta(cfg)

    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')

    # weights-only unless trusted explicitly; the checkpoint is read once
    # (the match check, then the runner's load reuses it)
    with sniper_utils.trusted_checkpoint_loading(
            trusted_dirs=args.trust_checkpoint_dir,
            trusted_files=[args.checkpoint] if args.trust_checkpoint else [],
            named_files=[args.checkpoint],
            reuse=True) as policy:
        sniper_utils.setup_cpu_distributed(cfg, args.launcher)

        runner = sniper_utils.build_tool_runner(cfg, args.launcher)
        if not args.allow_partial_checkpoint:
            model = runner.model
            model = getattr(model, 'module', model)  # DDP
            model = getattr(model, 'module', model)  # the --tta wrapper
            sniper_utils.check_checkpoint_matches(
                model, args.checkpoint, policy,
                switch='--allow-partial-checkpoint')

        # dump predictions with a dummy metric
        if args.out is not None:
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))

        runner.test()
        # every rank done: close the process group cleanly
        finish_distributed()


if __name__ == '__main__':
    try:
        main()
    except sniper_utils.UntrustedCheckpointError as exc:
        # the message says what to do; the traceback would only bury it
        sys.exit(f'tools/test.py: error: UntrustedCheckpointError: {exc}')
    except (sniper_utils.CheckpointMismatchError,
            sniper_utils.CorruptCheckpointError) as exc:
        sys.exit(f'tools/test.py: error: {exc}')
    else:
        # skip the native exit handlers of a finished distributed run
        exit_distributed_run()
