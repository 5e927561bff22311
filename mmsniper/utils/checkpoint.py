"""Trust fallback for checkpoints that are not weights-only loadable.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``. The
checkpoints mmengine writes (``tools/train.py``) hold the message hub's
``HistoryBuffer`` and numpy arrays; ``import mmsniper`` allow-lists exactly
those (:mod:`mmsniper._safe_globals`), so they load weights-only everywhere:
our tools, mmdet's ``init_detector`` / ``DetInferencer`` / ``tools/test.py``
(with ``custom_imports=dict(imports=['mmsniper'])``), plain ``torch.load``.

This module is only the fallback for other files (e.g. a checkpoint holding
an ``argparse.Namespace``). ``tools/train.py`` / ``tools/test.py`` run
inside :func:`trusted_checkpoint_loading`, which swaps mmengine's local-file
loader for :func:`load_local_checkpoint` and restores it on exit:

1. every local checkpoint is loaded with ``weights_only=True`` first;
2. only if torch refuses it *and* the file is trusted is it loaded again
   with ``weights_only=False``, with one WARNING line naming it;
3. trusted = under a trusted root (the run's ``work_dir``,
   ``--trust-checkpoint-dir DIR``, ``$MMSNIPER_TRUSTED_CHECKPOINT_DIRS``)
   after resolving symlinks, or named on the command line
   (``--resume PATH``, test.py's ``CHECKPOINT``; the user chose it for this
   run, as they chose the config, which is code anyway);
4. otherwise :class:`UntrustedCheckpointError` says how to trust it.

Remote schemes keep mmengine's loaders. torch's switches keep their meaning:
``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` wins, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
counts as trusting every file (the warning is still logged).
"""
import inspect
import logging
import os
import os.path as osp
import pickle
import re
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'TRUSTED_DIRS_ENV', 'TRUST_DIR_FLAG', 'CheckpointTrustPolicy',
    'UntrustedCheckpointError', 'is_weights_only_error',
    'trusted_dirs_from_env', 'load_local_checkpoint',
    'trusted_checkpoint_loading'
]

#: Environment variable holding extra trusted checkpoint roots
#: (``os.pathsep``-separated, like ``PATH``).
TRUSTED_DIRS_ENV = 'MMSNIPER_TRUSTED_CHECKPOINT_DIRS'
#: Command-line flag of ``tools/train.py`` / ``tools/test.py``.
TRUST_DIR_FLAG = '--trust-checkpoint-dir'

# the key under which mmengine registers its local-file loader
_LOCAL_SCHEME = ''
_WEIGHTS_ONLY_MARKER = 'Weights only load failed'


class UntrustedCheckpointError(RuntimeError):
    """A checkpoint needs full unpickling but is not trusted."""


def _supports_weights_only() -> bool:
    try:
        return 'weights_only' in inspect.signature(torch.load).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def is_weights_only_error(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's "Weights only load failed" error."""
    return (isinstance(exc, pickle.UnpicklingError)
            and _WEIGHTS_ONLY_MARKER in str(exc))


def _short_reason(exc: BaseException) -> str:
    """The offending global of a weights-only failure, in a few words."""
    msg = str(exc)
    match = re.search(r'Unsupported global: GLOBAL (\S+)', msg) or re.search(
        r'GLOBAL (\S+) was not an allowed global', msg)
    if match:
        return f'it needs the non-tensor global {match.group(1)}'
    return 'it holds non-tensor Python objects'


def _torch_opt_out() -> Optional[str]:
    """torch's process-wide opt-out of weights-only loading, if set."""
    value = os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0')
    if value.lower() in ('1', 'y', 'yes', 'true'):
        return 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set'
    return None


def _canonical(path: str) -> str:
    return osp.normcase(osp.realpath(osp.abspath(osp.expanduser(path))))


def _is_within(path: str, root: str) -> bool:
    try:
        return osp.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


def trusted_dirs_from_env(environ: Optional[dict] = None) -> List[str]:
    """Trusted roots listed in ``$MMSNIPER_TRUSTED_CHECKPOINT_DIRS``."""
    environ = os.environ if environ is None else environ
    value = environ.get(TRUSTED_DIRS_ENV, '')
    return [p for p in value.split(os.pathsep) if p.strip()]


class CheckpointTrustPolicy:
    """Which local checkpoint files may be fully unpickled.

    Args:
        trusted_dirs: roots; every file below one of them is trusted.
        trusted_files: individual files the user named explicitly.
        use_env: also trust the roots in ``$MMSNIPER_TRUSTED_CHECKPOINT_DIRS``
            (read once, here).
    """

    def __init__(self,
                 trusted_dirs: Iterable[Optional[str]] = (),
                 trusted_files: Iterable[Optional[str]] = (),
                 use_env: bool = True):
        dirs = [d for d in trusted_dirs if d]
        if use_env:
            dirs += trusted_dirs_from_env()
        self.trusted_dirs: List[str] = []
        for d in dirs:
            c = _canonical(d)
            if c not in self.trusted_dirs:
                self.trusted_dirs.append(c)
        self.trusted_files: List[str] = []
        for f in trusted_files:
            if f:
                c = _canonical(f)
                if c not in self.trusted_files:
                    self.trusted_files.append(c)

    def why_trusted(self, filename: str) -> Optional[str]:
        """A short reason if ``filename`` is trusted, else ``None``."""
        path = _canonical(filename)
        if path in self.trusted_files:
            return 'named on the command line'
        for root in self.trusted_dirs:
            if _is_within(path, root):
                return f'under trusted dir {root}'
        return None

    def is_trusted(self, filename: str) -> bool:
        return self.why_trusted(filename) is not None

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(trusted_dirs={self.trusted_dirs}, '
                f'trusted_files={self.trusted_files})')


def _untrusted_message(filename: str, reason: str,
                       policy: CheckpointTrustPolicy) -> str:
    folder = osp.dirname(osp.abspath(osp.expanduser(filename)))
    roots = ', '.join(policy.trusted_dirs) or '(none)'
    return (
        f'Refusing to fully unpickle checkpoint {filename}: '
        f'torch.load(weights_only=True) failed ({reason}) and the file is '
        f'not trusted. Unpickling can run arbitrary code, so only do this '
        f'for files you trust. To trust it, either pass '
        f'`{TRUST_DIR_FLAG} {folder}` to tools/train.py or tools/test.py, '
        f'or set {TRUSTED_DIRS_ENV}={folder} (several dirs separated by '
        f"'{os.pathsep}'). Files named on the command line "
        f'(`tools/train.py --resume PATH`, `tools/test.py CONFIG PATH`) are '
        f'trusted already. Trusted dirs now: {roots}.')


def load_local_checkpoint(filename: str,
                          map_location=None,
                          policy: Optional[CheckpointTrustPolicy] = None,
                          logger='current'):
    """Load a local checkpoint: weights-only first, full unpickle if trusted.

    Mirrors mmengine's ``load_from_local`` (``~`` expansion, missing-file
    error) with the trust rule of this module's docstring.
    """
    policy = CheckpointTrustPolicy() if policy is None else policy
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if not _supports_weights_only():  # old torch: no weights-only mode
        return torch.load(filename, map_location=map_location)
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not is_weights_only_error(exc):
            raise
        reason = _short_reason(exc)
        why = policy.why_trusted(filename) or _torch_opt_out()
        if why is None:
            raise UntrustedCheckpointError(
                _untrusted_message(filename, reason, policy)) from exc
    print_log(
        f'Checkpoint {filename} is not weights-only ({reason}); it is '
        f'trusted ({why}), so it is loaded with torch.load('
        f'weights_only=False).',
        logger=logger,
        level=logging.WARNING)
    return torch.load(filename, map_location=map_location, weights_only=False)


def _make_local_loader(policy: CheckpointTrustPolicy) -> Callable:

    # The name matters: CheckpointLoader logs ``loader.__name__[10:]`` as
    # the backend name ("Loads checkpoint by local backend ...").
    def load_from_local(filename, map_location):
        return load_local_checkpoint(filename, map_location, policy=policy)

    load_from_local.__qualname__ = 'mmsniper.load_from_local'
    load_from_local.mmsniper_trust_policy = policy  # type: ignore
    return load_from_local


@contextmanager
def trusted_checkpoint_loading(trusted_dirs: Sequence[Optional[str]] = (),
                               trusted_files: Sequence[Optional[str]] = (),
                               use_env: bool = True
                               ) -> Iterator[CheckpointTrustPolicy]:
    """Route mmengine's local checkpoint loading through the trust policy.

    Inside the ``with`` block, every ``mmengine.runner.CheckpointLoader``
    load of a local path (``Runner.resume``, ``Runner.load_checkpoint``,
    ``load_checkpoint``, ``Pretrained`` init of a local file) uses
    :func:`load_local_checkpoint`; the previous local loader is restored on
    exit, even on error. Nested use is fine (the inner policy wins while
    it is active).

    Example::

        with trusted_checkpoint_loading(trusted_dirs=[cfg.work_dir],
                                        trusted_files=[args.resume]):
            runner = Runner.from_cfg(cfg)
            runner.train()
    """
    policy = CheckpointTrustPolicy(trusted_dirs, trusted_files, use_env)
    previous = CheckpointLoader._schemes.get(_LOCAL_SCHEME)
    CheckpointLoader.register_scheme(
        _LOCAL_SCHEME, _make_local_loader(policy), force=True)
    try:
        yield policy
    finally:
        if previous is not None:
            CheckpointLoader.register_scheme(
                _LOCAL_SCHEME, previous, force=True)
        else:  # pragma: no cover - mmengine always registers one
            CheckpointLoader._schemes.pop(_LOCAL_SCHEME, None)


class CheckpointMismatchError(ValueError):
    """A checkpoint holds few of the model's weights (another model's)."""


#: share of the model's weights a checkpoint must hold (same name and
#: shape) unless a partial load is allowed explicitly
MIN_MATCHED_FRACTION = 0.5


def checkpoint_match(model, filename: str,
                     policy: Optional[CheckpointTrustPolicy] = None) -> tuple:
    """How many of ``model``'s weights ``filename`` holds.

    Keys are compared after mmengine's own revision (a leading
    ``module.`` dropped on both sides, as for DDP or a TTA wrapper);
    a weight counts when its name and shape agree.

    Returns:
        tuple[int, int, int]: ``(matched, model weights, file tensors)``.
    """
    ckpt = load_local_checkpoint(filename, map_location='cpu',
                                 policy=policy)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    if not isinstance(state, dict):
        state = {}

    def strip(key: str) -> str:
        return key[len('module.'):] if key.startswith('module.') else key

    file_shapes = {
        strip(k): tuple(v.shape)
        for k, v in state.items() if isinstance(v, torch.Tensor)
    }
    model_shapes = {
        strip(k): tuple(v.shape)
        for k, v in model.state_dict().items()
    }
    matched = sum(
        1 for k, shape in model_shapes.items() if file_shapes.get(k) == shape)
    return matched, len(model_shapes), len(file_shapes)


def check_checkpoint_matches(model, filename: str,
                             policy: Optional[CheckpointTrustPolicy] = None,
                             min_fraction: float = MIN_MATCHED_FRACTION,
                             switch: str = 'allow_partial_checkpoint=True'
                             ) -> tuple:
    """Refuse a checkpoint that holds under ``min_fraction`` of the model's
    weights: mmengine only logs its "do not match exactly" notice, and the
    detector would run with random weights.

    Raises:
        CheckpointMismatchError: Naming the file, the counts and ``switch``.
    """
    matched, total, in_file = checkpoint_match(model, filename, policy)
    if total and matched < min_fraction * total:
        raise CheckpointMismatchError(
            f'{filename}: only {matched} of the {total} weights of '
            f'{type(model).__name__} are in this checkpoint ({in_file} '
            'tensors in the file), so the detector would run mostly with '
            'random weights: is it the checkpoint of another model? To load '
            f'it anyway, pass {switch}')
    return matched, total, in_file
