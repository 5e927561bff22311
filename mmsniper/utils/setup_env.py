"""Environment helpers shared by ``tools/train.py`` and ``tools/test.py``.

* :func:`check_amp_available` -- fail early and clearly on ``--amp`` without
  an accelerator (mmengine's ``AmpOptimWrapper`` only asserts, late).
* :func:`setup_cpu_distributed` -- let ``tools/dist_train.sh`` /
  ``tools/dist_test.sh`` really run several processes on a CPU-only
  machine. mmengine 0.10.7 does not pick a backend by device: it uses
  ``env_cfg.dist_cfg.backend`` (``'nccl'`` in mmdet's
  ``default_runtime.py``), and its pytorch launcher calls
  ``torch.cuda.set_device(LOCAL_RANK)`` unconditionally (an error on a
  CPU-only torch), and it wraps the model in DDP with
  ``device_ids=[LOCAL_RANK]`` (rejected by DDP for CPU modules). So, when no
  CUDA device is available and ``--launcher pytorch`` is used, we create the
  process group ourselves with ``gloo`` (``nccl`` needs GPUs; any other
  configured backend is replaced with a warning) -- mmengine then sees an
  initialised group and skips its own ``init_dist`` -- and set
  ``device_ids=None`` for the DDP wrapper. Passing
  ``--cfg-options env_cfg.dist_cfg.backend=gloo`` is accepted but not
  needed. With CUDA, nothing here changes anything.
"""
import datetime
import logging
import os
import sys
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

__all__ = [
    'has_amp_device', 'check_amp_available', 'setup_cpu_distributed',
    'finish_distributed', 'exit_distributed_run', 'AMP_NEEDS_GPU_MSG'
]

AMP_NEEDS_GPU_MSG = (
    '--amp / AmpOptimWrapper means fp16 automatic mixed precision, which '
    'needs a GPU (CUDA, or NPU/MLU/MUSA), but none is available on this '
    'machine (torch.cuda.is_available() is False). The config itself loaded '
    'fine and is otherwise usable: drop --amp (or use '
    "optim_wrapper.type='OptimWrapper') to train in fp32 on this machine, "
    'or run on a GPU machine.')

_DDP_TYPES = ('MMDistributedDataParallel', 'DistributedDataParallel')


def has_amp_device() -> bool:
    """Whether a device that mmengine's AmpOptimWrapper accepts exists."""
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def check_amp_available() -> Optional[str]:
    """``None`` if ``--amp`` can work here, else the error message."""
    return None if has_amp_device() else AMP_NEEDS_GPU_MSG


def _cuda_like_available() -> bool:
    from mmengine.device import (is_mlu_available, is_musa_available,
                                 is_npu_available)
    return (torch.cuda.is_available() or is_npu_available()
            or is_mlu_available() or is_musa_available())


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare a CPU-only multi-process run (see the module docstring).

    Call it after the config is final and before the runner is built.

    Returns:
        bool: whether the CPU path was taken (process group initialised
        here with gloo).
    """
    if launcher == 'none' or _cuda_like_available():
        return False
    if torch_dist.is_available() and torch_dist.is_initialized():
        return False
    if launcher != 'pytorch':
        raise RuntimeError(
            f'No GPU is available and --launcher {launcher} was given: on '
            'CPU, mmsniper supports distributed runs only with --launcher '
            'pytorch (tools/dist_train.sh, tools/dist_test.sh), because '
            f"mmengine's {launcher} launcher assumes CUDA devices.")

    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    backend = dist_cfg.pop('backend', 'gloo')
    init_backend = dist_cfg.pop('init_backend', 'torch')
    if init_backend != 'torch':
        raise RuntimeError(
            f'env_cfg.dist_cfg.init_backend={init_backend!r} is not '
            'supported without a GPU; use the default torch init backend.')
    if backend != 'gloo':
        print_log(
            f'No GPU available: using the gloo backend for this distributed '
            f'run instead of the configured "{backend}".',
            logger='current',
            level=logging.WARNING)
        backend = 'gloo'
    timeout = dist_cfg.get('timeout')
    if timeout is not None and not isinstance(timeout, datetime.timedelta):
        dist_cfg['timeout'] = datetime.timedelta(seconds=timeout)
    # torchrun exports RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
    # Logged by every rank: the 'current' logger is created before the
    # process group exists, so it does not silence ranks > 0.
    print_log(
        f'No GPU available: initialising a {backend} process group '
        f"(RANK={os.environ.get('RANK')}, "
        f"WORLD_SIZE={os.environ.get('WORLD_SIZE')}).",
        logger='current')
    torch_dist.init_process_group(backend=backend, **dist_cfg)
    print_log(
        f'CPU distributed run: rank {torch_dist.get_rank()} of world_size '
        f'{torch_dist.get_world_size()}, backend {backend}.',
        logger='current')

    # keep the dumped config truthful
    cfg.merge_from_dict({'env_cfg.dist_cfg.backend': backend})

    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    elif wrapper.get('type', 'MMDistributedDataParallel') in _DDP_TYPES:
        wrapper.setdefault('device_ids', None)
    return True


def finish_distributed() -> None:
    """Wait for every rank, then destroy the process group.

    Call it once a distributed run has ended well on every rank (nothing
    happens without a process group). A tool's ``__main__`` then calls
    :func:`exit_distributed_run`.
    """
    global _FINISHED_GROUP
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
        _FINISHED_GROUP = True


_FINISHED_GROUP = False


def exit_distributed_run(status: int = 0) -> None:
    """End a process whose distributed run :func:`finish_distributed`
    closed: flush the logs and streams, then ``os._exit(status)``.

    With torch 2.13 on CPU, a torchrun worker that has finished its work,
    closed its gloo process group and returned from ``main`` still aborts
    now and then in native code after the interpreter has shut down
    (``terminate called without an active exception``, SIGABRT, no Python
    frame; 3 of 25 ``tools/dist_test.sh`` runs on a loaded 2-core machine),
    and torchrun then reports the whole run as failed. Its results are
    written by then, so the native exit handlers are skipped. Does nothing
    in a process that ran no distributed work.
    """
    if not _FINISHED_GROUP:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
