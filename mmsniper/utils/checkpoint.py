"""Weights-only checkpoint loading, an explicit trust switch, clear errors.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``. The
checkpoints mmengine writes (``tools/train.py``) hold the message hub's
``HistoryBuffer`` and numpy arrays; ``import mmsniper`` allow-lists exactly
those (:mod:`mmsniper._safe_globals`), so they load weights-only everywhere:
our tools, mmdet's ``init_detector`` / ``DetInferencer`` / ``tools/test.py``
(with ``custom_imports=dict(imports=['mmsniper'])``), plain ``torch.load``.

Any other file (e.g. a checkpoint holding an ``argparse.Namespace``, or a
crafted one whose pickle runs a command) is refused: unpickling it fully
would run code from the file. Naming a file is not consent to run it. Our
tools and :func:`mmsniper.apis.init_sniper_detector` run inside
:func:`trusted_checkpoint_loading`, which swaps mmengine's local-file loader
for :func:`load_local_checkpoint` and restores it on exit:

1. every local checkpoint is loaded with ``weights_only=True`` first;
2. only if torch refuses it *and* the user trusted the file explicitly is
   it loaded again with ``weights_only=False``, with one WARNING line
   naming it;
3. trusted explicitly = the checkpoint named on the command line *with*
   ``--trust-checkpoint`` (``trust_checkpoint=True`` in the API), or a file
   under a trusted root (``--trust-checkpoint-dir DIR``,
   ``$MMSNIPER_TRUSTED_CHECKPOINT_DIRS``) after resolving symlinks;
4. otherwise :class:`UntrustedCheckpointError` names the file, says it is
   not weights-only loadable and that loading it would run code from it,
   and names the switch that allows it.

A file torch cannot read at all (empty, truncated, not a checkpoint) raises
:class:`CorruptCheckpointError` naming it. Remote schemes keep mmengine's
loaders. torch's switches keep their meaning:
``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` wins, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
counts as trusting every file (the warning is still logged).
"""
import inspect
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'TRUSTED_DIRS_ENV', 'TRUST_DIR_FLAG', 'TRUST_FILE_FLAG',
    'TRUST_FILE_ARG', 'CheckpointTrustPolicy', 'UntrustedCheckpointError',
    'CorruptCheckpointError', 'is_weights_only_error',
    'trusted_dirs_from_env', 'load_local_checkpoint',
    'trusted_checkpoint_loading'
]

#: Environment variable holding extra trusted checkpoint roots
#: (``os.pathsep``-separated, like ``PATH``).
TRUSTED_DIRS_ENV = 'MMSNIPER_TRUSTED_CHECKPOINT_DIRS'
#: Command-line flag of ``tools/train.py`` / ``tools/test.py``.
TRUST_DIR_FLAG = '--trust-checkpoint-dir'
#: Command-line flag trusting the checkpoint a tool names.
TRUST_FILE_FLAG = '--trust-checkpoint'
#: The same switch in the Python API (``init_sniper_detector``).
TRUST_FILE_ARG = 'trust_checkpoint=True'

# the key under which mmengine registers its local-file loader
_LOCAL_SCHEME = ''
_WEIGHTS_ONLY_MARKER = 'Weights only load failed'


class UntrustedCheckpointError(RuntimeError):
    """A checkpoint needs full unpickling but is not trusted."""


class CorruptCheckpointError(RuntimeError):
    """torch cannot read a checkpoint file: empty, truncated or corrupt."""


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
    match = (re.search(r'Unsupported global: GLOBAL (\S+)', msg)
             or re.search(r'GLOBAL (\S+) was not an allowed global', msg)
             or re.search(r'unsupported GLOBAL (\S+)', msg))
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

    Nothing is trusted unless the user says so: a file named on the command
    line is only *named* (``named_files``), it is trusted with the tool's
    ``--trust-checkpoint`` flag (then it is in ``trusted_files``).

    Args:
        trusted_dirs: roots; every file below one of them is trusted.
        trusted_files: individual files the user trusted explicitly.
        use_env: also trust the roots in ``$MMSNIPER_TRUSTED_CHECKPOINT_DIRS``
            (read once, here).
        named_files: the files the user named (e.g. test.py's CHECKPOINT);
            the refusal for one of them names ``file_switch``.
        file_switch (str): How the caller trusts a named file, for the
            message: ``'--trust-checkpoint'`` or ``'trust_checkpoint=True'``.
        dir_switch (str, optional): How the caller trusts a folder
            (``'--trust-checkpoint-dir'``); ``None`` where there is no such
            option (the API), then only the environment variable is named.
        reuse (bool): Keep the last checkpoint loaded and give it, once, to
            the next load of the same file (same size, mtime and
            ``map_location``), so that a check and the load that follows it
            read the file once. Only for callers whose first reader does not
            change the checkpoint.
    """

    def __init__(self,
                 trusted_dirs: Iterable[Optional[str]] = (),
                 trusted_files: Iterable[Optional[str]] = (),
                 use_env: bool = True,
                 named_files: Iterable[Optional[str]] = (),
                 file_switch: str = TRUST_FILE_FLAG,
                 dir_switch: Optional[str] = TRUST_DIR_FLAG,
                 reuse: bool = False):
        dirs = [str(d) for d in trusted_dirs if d]
        if use_env:
            dirs += trusted_dirs_from_env()
        self.trusted_dirs: List[str] = []
        for d in dirs:
            c = _canonical(d)
            if c not in self.trusted_dirs:
                self.trusted_dirs.append(c)
        self.trusted_files = self._canonical_list(trusted_files)
        self.named_files = self._canonical_list(named_files)
        self.file_switch = file_switch
        self.dir_switch = dir_switch
        self.reuse = reuse
        self._kept = None  # (key, checkpoint) of the last load, if reuse

    @staticmethod
    def _canonical_list(files: Iterable[Optional[str]]) -> List[str]:
        out: List[str] = []
        for f in files:
            if f:
                c = _canonical(str(f))
                if c not in out:
                    out.append(c)
        return out

    def why_trusted(self, filename: str) -> Optional[str]:
        """A short reason if ``filename`` is trusted, else ``None``."""
        path = _canonical(filename)
        if path in self.trusted_files:
            return f'trusted explicitly with {self.file_switch}'
        for root in self.trusted_dirs:
            if _is_within(path, root):
                return f'under trusted dir {root}'
        return None

    def is_trusted(self, filename: str) -> bool:
        return self.why_trusted(filename) is not None

    def is_named(self, filename: str) -> bool:
        """Whether the user named ``filename`` (trusted or not)."""
        path = _canonical(filename)
        return path in self.named_files or path in self.trusted_files

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(trusted_dirs={self.trusted_dirs}, '
                f'trusted_files={self.trusted_files}, '
                f'named_files={self.named_files})')


def _untrusted_message(filename: str, reason: str,
                       policy: CheckpointTrustPolicy) -> str:
    folder = osp.dirname(osp.abspath(osp.expanduser(filename)))
    env = f'{TRUSTED_DIRS_ENV}={folder}'
    if policy.dir_switch:
        folder_hint = f'pass `{policy.dir_switch} {folder}` or set {env}'
    else:
        folder_hint = f'set {env}'
    if policy.is_named(filename):
        how = (f'pass {policy.file_switch} (or, for every file of its '
               f'folder, {folder_hint})')
    else:
        how = f'{folder_hint} (several dirs separated by {os.pathsep!r})'
    return (
        f'Refusing to load checkpoint {filename}: the file is not '
        f'weights-only loadable ({reason}), and loading it would run code '
        f'from it (torch.load(weights_only=False) unpickles it fully, and a '
        f'crafted checkpoint runs any command that way). Load it only if '
        f'you trust the file and where it came from: to allow it, {how}.')


def _diagnose_unreadable(filename: str,
                         exc: BaseException) -> Optional[str]:
    """Why torch could not read ``filename``, if the file is damaged."""
    try:
        size = osp.getsize(filename)
        with open(filename, 'rb') as f:
            head = f.read(4)
    except OSError:
        return None
    if size == 0:
        return 'it is empty (0 bytes)'
    if head == b'PK\x03\x04':  # torch's zip format (torch >= 1.6)
        try:
            with zipfile.ZipFile(filename) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return (f'it is truncated or corrupt ({size} bytes; its zip '
                    'archive is incomplete, e.g. an interrupted download or '
                    'copy)')
        if bad is not None:
            return f'it is corrupt (zip member {bad} fails its CRC check)'
        return None
    text = str(exc)
    if isinstance(exc, EOFError) or 'unexpected EOF' in text or (
            'truncated' in text):
        return (f'it is truncated or corrupt ({size} bytes; the data ends '
                'early)')
    if isinstance(exc, (pickle.UnpicklingError, KeyError, ValueError)) or (
            'magic number' in text) or _is_not_a_pickle(exc):
        return (f'it is not a torch checkpoint or is corrupt ({size} bytes, '
                f'starting with {head!r})')
    return None


def _is_not_a_pickle(exc: BaseException) -> bool:
    """Whether torch's weights-only unpickler met a byte that is no pickle
    opcode at all (a damaged file or another format, not a Python object
    that full unpickling would build)."""
    match = re.search(r'Unsupported operand (\d+)', str(exc))
    if not match:
        return False
    import pickletools
    code = int(match.group(1))
    return not any(
        ord(op.code) == code for op in pickletools.opcodes)


def _first_line(exc: BaseException) -> str:
    match = re.search(r'Unsupported operand \d+', str(exc))
    if match:
        return f'{type(exc).__name__}: {match.group(0)}'
    text = str(exc).strip().splitlines()
    line = text[0].rstrip('.') if text else ''
    return f'{type(exc).__name__}: {line}'.rstrip(': ')


def _torch_load(filename: str, map_location, weights_only: bool):
    """``torch.load`` whose damaged-file errors name the file."""
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=weights_only)
    except Exception as exc:
        if is_weights_only_error(exc) and not _is_not_a_pickle(exc):
            raise
        why = _diagnose_unreadable(filename, exc)
        if why is None:
            if hasattr(exc, 'add_note'):
                exc.add_note(f'(while loading checkpoint {filename})')
            raise
        raise CorruptCheckpointError(
            f'Cannot read checkpoint {filename}: {why}. torch said: '
            f'{_first_line(exc)}. Download or save it again.') from exc


def _reuse_key(filename: str, map_location) -> Optional[tuple]:
    if map_location is not None and not isinstance(map_location, str):
        return None
    try:
        stat = os.stat(filename)
    except OSError:
        return None
    return (_canonical(filename), stat.st_size, stat.st_mtime_ns,
            map_location)


def load_local_checkpoint(filename: str,
                          map_location=None,
                          policy: Optional[CheckpointTrustPolicy] = None,
                          logger='current'):
    """Load a local checkpoint: weights-only, full unpickle only if trusted.

    Mirrors mmengine's ``load_from_local`` (``~`` expansion, missing-file
    error) with the trust rule of this module's docstring.

    Raises:
        UntrustedCheckpointError: The file is not weights-only loadable and
            not trusted (the message names the file and the switch).
        CorruptCheckpointError: The file is empty, truncated or not a
            checkpoint (the message names it).
    """
    policy = CheckpointTrustPolicy() if policy is None else policy
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    key = _reuse_key(filename, map_location) if policy.reuse else None
    if key is not None and policy._kept is not None:
        kept_key, kept = policy._kept
        policy._kept = None
        if kept_key == key:
            return kept
    ckpt = _load_local_checkpoint(filename, map_location, policy, logger)
    if key is not None:
        policy._kept = (key, ckpt)
    return ckpt


def _load_local_checkpoint(filename, map_location, policy, logger):
    if not _supports_weights_only():  # old torch: no weights-only mode
        return torch.load(filename, map_location=map_location)
    try:
        return _torch_load(filename, map_location, weights_only=True)
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
    return _torch_load(filename, map_location, weights_only=False)


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
                               use_env: bool = True,
                               **policy_kwargs
                               ) -> Iterator[CheckpointTrustPolicy]:
    """Route mmengine's local checkpoint loading through the trust policy.

    Inside the ``with`` block, every ``mmengine.runner.CheckpointLoader``
    load of a local path (``Runner.resume``, ``Runner.load_checkpoint``,
    ``load_checkpoint``, ``Pretrained`` init of a local file) uses
    :func:`load_local_checkpoint`; the previous local loader is restored on
    exit, even on error. Nested use is fine (the inner policy wins while
    it is active). ``policy_kwargs`` go to :class:`CheckpointTrustPolicy`
    (``named_files``, ``file_switch``, ``dir_switch``, ``reuse``).

    Example::

        ckpt = args.checkpoint
        with trusted_checkpoint_loading(
                trusted_files=[ckpt] if args.trust_checkpoint else [],
                named_files=[ckpt]):
            runner = Runner.from_cfg(cfg)
            runner.test()
    """
    policy = CheckpointTrustPolicy(trusted_dirs, trusted_files, use_env,
                                   **policy_kwargs)
    previous = CheckpointLoader._schemes.get(_LOCAL_SCHEME)
    CheckpointLoader.register_scheme(
        _LOCAL_SCHEME, _make_local_loader(policy), force=True)
    try:
        yield policy
    finally:
        policy._kept = None
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
