# Copyright (c) mmsniper contributors. All rights reserved.
"""Command-line pieces shared by mmsniper's tools."""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.config import Config, DictAction

from .checkpoint import TRUST_DIR_FLAG, TRUST_FILE_FLAG, TRUSTED_DIRS_ENV


def add_image_source_args(parser: argparse.ArgumentParser,
                          what: str = 'check') -> None:
    """``--img-dir`` and ``--splits``: the arguments of
    :func:`mmsniper.datasets.image_list.images_of` after its config or
    annotation file."""
    parser.add_argument(
        '--img-dir',
        default=None,
        help='image directory (with an annotation file)')
    parser.add_argument(
        '--splits',
        nargs='+',
        default=['train'],
        choices=['train', 'val', 'test'],
        help=f'config splits to {what} (default: train)')


def add_trust_checkpoint_arg(parser: argparse.ArgumentParser,
                             what: str = 'CHECKPOINT') -> None:
    """Add ``--trust-checkpoint``: the only way a tool loads the checkpoint
    it names with ``torch.load(weights_only=False)``.

    Args:
        parser (ArgumentParser): The tool's parser.
        what (str): Which checkpoint the flag trusts, for the help.
    """
    parser.add_argument(
        TRUST_FILE_FLAG,
        dest='trust_checkpoint',
        action='store_true',
        help=f'{what} may be loaded with torch.load(weights_only=False) if '
        'it is not weights-only loadable. That runs code from the file: '
        'only for files you trust. Without it such a file is refused '
        '(checkpoints written by tools/train.py load weights-only).')


def add_runner_args(parser: argparse.ArgumentParser,
                    trust_help: str) -> None:
    """Add ``--trust-checkpoint-dir``, ``--cfg-options``, ``--launcher`` and
    ``--local_rank`` as mmdet's tools define them.

    Args:
        parser (ArgumentParser): The tool's parser.
        trust_help (str): What trusting a directory means for this tool.
    """
    parser.add_argument(
        TRUST_DIR_FLAG,
        dest='trust_checkpoint_dir',
        action='append',
        default=[],
        metavar='DIR',
        help=f'{trust_help} Repeatable. Also read from ${TRUSTED_DIRS_ENV} '
        '(os.pathsep-separated).')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank; torchrun only sets $LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: Optional[Sequence[str]] = None):
    """Parse ``argv`` and export ``LOCAL_RANK`` when no launcher did."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_tool_config(args, set_work_dir: bool = True) -> Config:
    """Load ``args.config`` with ``--cfg-options`` and ``--launcher`` applied.

    Args:
        args (Namespace): Parsed arguments with ``config``, ``cfg_options``
            and ``launcher`` (and ``work_dir`` when ``set_work_dir``).
        set_work_dir (bool): Resolve ``cfg.work_dir``: the command line, else
            the config, else ``./work_dirs/<config name>``.

    Returns:
        Config: The config.
    """
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if set_work_dir:
        if getattr(args, 'work_dir', None) is not None:
            cfg.work_dir = args.work_dir
        elif cfg.get('work_dir', None) is None:
            cfg.work_dir = osp.join(
                './work_dirs',
                osp.splitext(osp.basename(args.config))[0])
    return cfg


def build_tool_runner(cfg: Config, launcher: str):
    """Build the runner of ``cfg`` (mmdet's ``runner_type`` honoured) and log
    which mmsniper copy runs and, when distributed, the world size.

    Args:
        cfg (Config): The tool's config.
        launcher (str): The ``--launcher`` value.

    Returns:
        Runner: The runner.
    """
    import mmsniper
    from mmengine.runner import Runner

    from mmdet.registry import RUNNERS
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    # a chip training whose detector would train ignored GT as background
    # stops here (config key ``sniper_ignore_check`` accepts it)
    from mmsniper.engine.hooks.sniper_ignore_check_hook import check_runner
    check_runner(runner)
    # which copy runs matters: a checkout can sit beside an installed one
    runner.logger.info(f'mmsniper {mmsniper.__version__} imported from '
                       f'{list(mmsniper.__path__)[0]}')
    if launcher != 'none':
        runner.logger.info(
            f'launcher: {launcher}, world_size: {runner.world_size}')
    return runner
