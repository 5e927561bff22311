# Copyright (c) mmsniper contributors. All rights reserved.
"""Load pre-computed proposals and align them with a dataset's images.

SNIPER mines negative chips from proposals computed beforehand (one file for
the whole training set). :func:`load_proposals` reads such a file, matches
its entries to the images of a dataset (``data_list`` entries) and returns
them as flat CSR arrays (:class:`ProposalSet`), one row per image, in the
dataset's order.

Formats (``fmt='auto'`` recognises them from the extension and content):

- ``'dump_proposals'``: mmdet 3.x ``DumpProposals`` pickle, a dict keyed by
  ``<parent dir>/<file name>`` of the image path whose values are
  ``InstanceData`` (or dicts) with ``bboxes`` (N, 4) xyxy and ``scores``
  (N,), as numpy arrays or torch tensors.
- ``'sniper'``: our extraction tool's pickle, keyed the same way, values
  ``dict(bboxes, scores, img_id)``. Matched by ``img_id`` when it is given
  (and known to the dataset), else by key.
- ``'mmdet_results'``: a list of per-image dicts carrying ``img_id`` and / or
  ``img_path`` and either ``bboxes`` / ``scores`` or ``pred_instances`` (what
  ``tools/test.py --out`` writes).
- ``'mmdet2_list'``: mmdet 2.x style, a list aligned with the dataset order,
  each an (N, 5) ``[x1, y1, x2, y2, score]`` (or (N, 4), score 1) array.
- ``'coco_json'``: COCO detection results, a json list of
  ``dict(image_id, bbox=[x, y, w, h], score)``; matched by image id.

Keyed entries are matched, in order of preference, by image id, by the
whole normalised path, by ``<parent dir>/<file name>``, and finally by the
file name alone when that file name is unique in the dataset (a file name
shared by several images is never matched by itself). Backslashes count as
path separators. An image claimed by an id / path / key match is not given
to a file-name-only match; a second entry for an image already claimed is
ignored and counted as a duplicate. An entry whose img_id is unknown to the
dataset is matched by its whole path or key only (counted as ``id_unknown``),
never by its bare file name; a file none of whose img_ids is known raises
(another dataset's file?) unless ``ignore_ids=True``.

Pickles are read with a restricted unpickler (:func:`safe_pickle_load`):
it rebuilds only plain containers, numbers, strings, numpy arrays / dtypes /
scalars, torch tensors (their storage bytes loaded with
``torch.load(weights_only=True)``) and mmengine ``InstanceData``. Anything
else a pickle asks for (``os.system``, ``builtins.eval``, any other class or
function) raises :class:`ProposalFileError` naming the file and that global,
before it is called. ``trust=True`` unpickles the file fully (it may then run
code): only for files you made yourself.
"""
import json
import logging
import operator
import os
import os.path as osp
import importlib
import io
import pickle
import posixpath
import sys
from typing import (Any, Callable, Dict, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from mmsniper.utils.progress import track

__all__ = [
    'FORMATS', 'ProposalFileError', 'ProposalSet', 'load_proposals',
    'proposal_key', 'safe_pickle_load', 'summarize', 'META_KEY'
]

FORMATS = ('auto', 'dump_proposals', 'sniper', 'mmdet_results', 'mmdet2_list',
           'coco_json')
#: Key of the meta entry (checkpoint hash and settings) that
#: ``tools/extract_proposals.py`` adds to its output; not an image.
META_KEY = '__mmsniper_meta__'
_PICKLE_EXTS = ('.pkl', '.pickle')
_JSON_EXTS = ('.json', )
_EXAMPLES_PER_KIND = 3
_MAX_EXAMPLES = 12
_CHUNK = 1 << 18  # proposals staged and validated together
_TRIM_EVERY = 1 << 22  # proposals freed between heap trims
# Entry matched by: (priority, name). Lower priority claims images first.
_BY_ID, _BY_PATH, _BY_KEY, _BY_BASENAME, _BY_ORDER = range(5)
_MATCH_NAMES = ('id', 'path', 'key', 'basename', 'order')


class ProposalFileError(ValueError):
    """A proposal file that cannot be read or does not fit the dataset."""


# --------------------------------------------------------------------------
# restricted unpickling


def _safe_storage_from_bytes(data: bytes):
    """``torch.storage._load_from_bytes`` without its full unpickling.

    Plain-pickled torch tensors keep their storage as bytes of a
    ``torch.save`` archive, which torch reads back with
    ``torch.load(weights_only=False)``; here it is read with torch's own
    weights-only unpickler instead.
    """
    import torch
    return torch.load(io.BytesIO(data), weights_only=True)


# What a proposal pickle may rebuild, as ``module -> names``. Each entry only
# builds data, never calls user-chosen code:
# - ``builtins`` set / frozenset / complex / bytes / bytearray: plain values
#   (protocol 2 pickles, mmengine's default, spell the module
#   ``__builtin__`` and write empty bytes as ``bytes()``).
# - ``collections.OrderedDict``: a dict (the backward-hook dict of a tensor).
# - ``_codecs.encode``: turns a str into bytes (how protocol 2 pickles bytes,
#   e.g. numpy array data); it only looks up a text codec by name.
# - numpy ``_reconstruct`` / ``ndarray`` / ``dtype`` / ``scalar`` /
#   ``_frombuffer``: numpy's own array, dtype and scalar reconstruction
#   (``numpy.core`` before numpy 2, ``numpy._core`` since); an object-dtype
#   array can only hold what the rest of this list allows.
# - ``InstanceData`` / ``BaseDataElement``: what mmdet's ``DumpProposals``
#   writes; rebuilt by ``object.__new__`` plus a ``__dict__`` update.
# - ``torch._utils._rebuild_tensor_v2``: torch's tensor reconstruction from a
#   storage; ``torch.storage._load_from_bytes`` is replaced by
#   :func:`_safe_storage_from_bytes` (weights-only).
_SAFE_GLOBALS = {
    'builtins': ('set', 'frozenset', 'complex', 'bytes', 'bytearray'),
    '__builtin__': ('set', 'frozenset', 'complex', 'bytes', 'bytearray'),
    'collections': ('OrderedDict', ),
    '_codecs': ('encode', ),
    'numpy': ('ndarray', 'dtype'),
    'numpy.core.multiarray': ('_reconstruct', 'scalar'),
    'numpy._core.multiarray': ('_reconstruct', 'scalar'),
    'numpy.core.numeric': ('_frombuffer', ),
    'numpy._core.numeric': ('_frombuffer', ),
    'mmengine.structures.instance_data': ('InstanceData', ),
    'mmengine.structures.base_data_element': ('BaseDataElement', ),
    'torch._utils': ('_rebuild_tensor_v2', ),
}
_REPLACED_GLOBALS = {
    ('torch.storage', '_load_from_bytes'): _safe_storage_from_bytes,
}
# numpy 2 moved numpy.core to numpy._core (numpy.core warns on import)
_MODULE_ALIASES = {
    'numpy.core.multiarray': 'numpy._core.multiarray',
    'numpy.core.numeric': 'numpy._core.numeric',
    '__builtin__': 'builtins',
}


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""

    def __init__(self, module: str, name: str):
        self.global_name = f'{module}.{name}'
        super().__init__(f'forbidden global {self.global_name}')


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``_SAFE_GLOBALS``."""

    def find_class(self, module: str, name: str):
        replaced = _REPLACED_GLOBALS.get((module, name))
        if replaced is not None:
            return replaced
        if name not in _SAFE_GLOBALS.get(module, ()):
            raise ForbiddenGlobalError(module, name)
        target = _MODULE_ALIASES.get(module, module)
        try:
            mod = importlib.import_module(target)
        except ImportError:
            if target == module:
                raise
            mod = importlib.import_module(module)
        return getattr(mod, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(
            f'persistent id {_short(pid)} (not a plain pickle)')


def safe_pickle_load(file, path: str = '<pickle>', trust: bool = False,
                     trust_hint: str = 'trust=True'):
    """Unpickle proposal data without running code from the file.

    Args:
        file: A binary file object open for reading.
        path (str): The file's name, for messages.
        trust (bool): Unpickle fully (``pickle.load``): only for files you
            made yourself, since a pickle can run any code.
        trust_hint (str): How the caller passes ``trust``, for the message.

    Raises:
        ProposalFileError: the pickle needs a global outside the allow-list
            (named in the message; nothing of it was called).
    """
    if trust:
        return pickle.load(file)
    try:
        return _RestrictedUnpickler(file).load()
    except ForbiddenGlobalError as e:
        raise ProposalFileError(
            f'refusing to unpickle {path}: it needs the global '
            f'{e.global_name}, which proposal data (dicts, lists, numbers, '
            f'strings, numpy arrays, torch tensors, InstanceData) never '
            f'needs; a crafted pickle uses such globals to run code. Nothing '
            f'of it was run. If you made this file yourself and trust it, '
            f'pass {trust_hint}') from None


class ProposalSet(NamedTuple):
    """Proposals of every image of a dataset, as CSR arrays (read-only).

    Attributes:
        ptr (np.ndarray): (I + 1,) int64 offsets; row ``i`` (the dataset's
            ``data_list[i]``) owns ``bboxes[ptr[i]:ptr[i + 1]]``.
        bboxes (np.ndarray): (P, 4) float32 xyxy boxes in original image
            pixels, clipped to the image.
        scores (np.ndarray): (P,) float32 scores.
    """
    ptr: np.ndarray
    bboxes: np.ndarray
    scores: np.ndarray

    @property
    def num_images(self) -> int:
        return len(self.ptr) - 1

    def get(self, i) -> Tuple[np.ndarray, np.ndarray]:
        """Boxes (n, 4) and scores (n,) of image ``i`` (read-only views)."""
        n = len(self.ptr) - 1
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f'image index {i} out of range for {n} images')
        a, b = int(self.ptr[i]), int(self.ptr[i + 1])
        return self.bboxes[a:b], self.scores[a:b]


# --------------------------------------------------------------------------
# small helpers


def _short(obj, limit: int = 120) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _short_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _norm_path(p) -> Optional[str]:
    if p is None:
        return None
    p = os.fspath(p) if isinstance(p, os.PathLike) else p
    if not isinstance(p, str) or not p:
        return None
    if '\\' in p:
        p = p.replace('\\', '/')
    if '//' in p or '/.' in p or p.startswith('.') or p.endswith('/'):
        p = posixpath.normpath(p)
        if p in ('.', '/'):
            return None
    return p


def _key_of(norm: str) -> str:
    """``<parent dir>/<file name>`` of a normalised path (as mmdet keys)."""
    parts = norm.rsplit('/', 2)
    return '/'.join(parts[-2:])


def proposal_key(img_path) -> str:
    """The key of an image in proposal files: ``<parent dir>/<file name>``
    of its path, as mmdet's ``DumpProposals`` writes it and this loader
    matches it.

    Args:
        img_path (str | os.PathLike): The image path.

    Returns:
        str: The key.
    """
    norm = _norm_path(img_path)
    if norm is None:
        raise ValueError(f'not an image path: {img_path!r}')
    return _key_of(norm)


def _norm_id(x):
    """Image ids as hashable comparable values: ints where possible."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return int(x) if float(x).is_integer() else float(x)
    if hasattr(x, 'item') and getattr(x, 'ndim', None) == 0:  # 0-d tensor
        return _norm_id(x.item())
    if isinstance(x, str):
        s = x.strip()
        return int(s) if s.isdigit() else s
    return x if isinstance(x, tuple) else str(x)


def _is_mapping(x) -> bool:
    """A dict or an mmengine data element (InstanceData, DetDataSample)."""
    return hasattr(x, 'get') and hasattr(x, 'keys')


def _to_numpy(x) -> np.ndarray:
    """numpy view of an ndarray / torch tensor / mmdet box / nested list."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, 'box_dim') and hasattr(x, 'tensor'):  # mmdet BaseBoxes
        x = x.tensor
    if hasattr(x, 'detach') and hasattr(x, 'cpu') and hasattr(x, 'numpy'):
        x = x.detach().cpu()
        if str(x.dtype) in ('torch.bfloat16', 'torch.float16'):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


_LIBC_TRIM = []


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``).

    Freeing the loaded per-image arrays leaves them in the allocator's heap;
    without this the process keeps the size of the whole file after loading.
    Best effort: a no-op where glibc is not there.
    """
    if not _LIBC_TRIM:
        fn = None
        if sys.platform.startswith('linux'):
            try:
                import ctypes
                fn = ctypes.CDLL('libc.so.6').malloc_trim
                fn.argtypes = [ctypes.c_size_t]
            except (OSError, AttributeError):
                fn = None
        _LIBC_TRIM.append(fn)
    if _LIBC_TRIM[0] is not None:
        try:
            _LIBC_TRIM[0](0)
        except Exception:  # noqa: BLE001 - best effort only
            pass


class _Stats:
    """Counters and examples collected while loading."""

    def __init__(self):
        self.counts = dict(
            dropped_nan=0,
            dropped_inverted=0,
            dropped_outside=0,
            clipped=0,
            dropped_low_score=0,
            dropped_over_max=0)
        self.examples: List[str] = []
        self._per_kind: Dict[str, int] = {}

    def example(self, kind: str, text: str) -> None:
        n = self._per_kind.get(kind, 0)
        if n < _EXAMPLES_PER_KIND and len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f'{kind}: {text}')
        self._per_kind[kind] = n + 1


# --------------------------------------------------------------------------
# reading


def _read_container(path: str, fmt: str, backend_args: Optional[dict],
                    trust: bool = False):
    ext = osp.splitext(path)[1].lower()
    if ext in _PICKLE_EXTS:
        kind = 'pickle'
    elif ext in _JSON_EXTS:
        kind = 'json'
    elif fmt == 'auto':
        raise ProposalFileError(
            f'unsupported proposal file extension {ext!r} for {path}: '
            f'expected one of {_PICKLE_EXTS + _JSON_EXTS}, or pass fmt= '
            f'(one of {FORMATS[1:]})')
    else:
        kind = 'json' if fmt == 'coco_json' else 'pickle'
    try:
        with get_local_path(path, backend_args=backend_args) as local:
            if osp.getsize(local) == 0:
                raise ProposalFileError(f'proposal file {path} is empty')
            with open(local, 'rb') as f:
                if kind == 'pickle':
                    return safe_pickle_load(
                        f, path, trust,
                        'trust=True (neg_proposals=dict(file=..., '
                        'trust=True))')
                return json.load(f)
    except ProposalFileError:
        raise
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f'proposal file not found: {path} ({e})') from e
    except (MemoryError, KeyboardInterrupt):
        raise
    except OSError as e:
        raise OSError(f'cannot read proposal file {path}: {e}') from e
    except json.JSONDecodeError as e:
        raise ProposalFileError(
            f'proposal file {path} is not valid json (broken or truncated '
            f'at line {e.lineno} column {e.colno}): {e.msg}') from e
    except UnicodeDecodeError as e:
        raise ProposalFileError(
            f'proposal file {path} is not valid json text: {e}') from e
    except EOFError as e:
        raise ProposalFileError(
            f'proposal file {path} is truncated (pickle ended early: {e})'
        ) from e
    except Exception as e:  # noqa: BLE001 - unpickling raises anything
        raise ProposalFileError(
            f'cannot unpickle proposal file {path} (truncated, corrupt or '
            f'not a pickle?): {type(e).__name__}: {e}') from e


class _Entries:
    """What a reader found: one entry per image record of the file.

    ``ids`` / ``paths`` say how each entry may be matched (None: not by that);
    ``payloads[j]`` is turned into ``(bboxes, scores)`` by ``fields``;
    ``record(j, k)`` names proposal ``k`` of entry ``j`` in messages.
    """

    def __init__(self, fmt, names, ids, paths, payloads, fields, record):
        self.fmt = fmt
        self.names: List[str] = names
        self.ids: List[Any] = ids
        self.paths: List[Optional[str]] = paths
        self.payloads: List[Any] = payloads
        self.fields: Callable = fields
        self.record: Callable = record

    def __len__(self):
        return len(self.names)


def _mapping_fields(value, name: str, path: str):
    """``(bboxes, scores or None)`` of a dict / InstanceData / array entry."""
    if _is_mapping(value):
        inner = value.get('pred_instances', None)
        if inner is not None and _is_mapping(inner):
            value = inner
        bboxes = value.get('bboxes', None)
        if bboxes is None:
            keys = list(value.keys())
            raise ProposalFileError(
                f'{path}: entry {name} has no \'bboxes\' (fields: {keys})')
        scores = value.get('scores', None)
        if scores is None:
            raise ProposalFileError(
                f'{path}: entry {name} has \'bboxes\' but no \'scores\'')
        return bboxes, scores
    if isinstance(value,
                  (np.ndarray, list, tuple)) or hasattr(value, 'detach'):
        return value, None
    raise ProposalFileError(
        f'{path}: entry {name} is a {type(value).__name__}, expected a dict '
        f'or InstanceData with bboxes/scores, or an (N, 5) array')


def _read_keyed(raw: dict, path: str, use_ids: bool) -> _Entries:
    names, ids, paths, payloads = [], [], [], []
    for key, value in raw.items():
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            ids.append(int(key))
            paths.append(None)
        else:
            if not isinstance(key, str):
                raise ProposalFileError(
                    f'{path}: unsupported key {_short(key)} (expected '
                    f'"<parent dir>/<file name>" strings or image ids)')
            img_id = value.get(
                'img_id', None) if (use_ids and _is_mapping(value)) else None
            ids.append(_norm_id(img_id))
            paths.append(_norm_path(key))
        names.append(repr(key))
        payloads.append(value)
    raw.clear()  # the payload list now holds the only references

    def record(j, k):
        return f'entry {names[j]}, proposal #{k}'

    fmt = 'sniper' if any(i is not None for i in ids) else 'dump_proposals'
    return _Entries(fmt, names, ids, paths, payloads,
                    lambda v, j: _mapping_fields(v, names[j], path), record)


def _read_results(raw: list, path: str) -> _Entries:
    names, ids, paths = [], [], []
    for k, rec in enumerate(raw):
        if not _is_mapping(rec):
            raise ProposalFileError(
                f'{path}: results[{k}] is a {type(rec).__name__}, expected '
                f'a dict with img_id/img_path and pred_instances')
        img_id = _norm_id(rec.get('img_id', None))
        img_path = _norm_path(rec.get('img_path', None))
        if img_id is None and img_path is None:
            raise ProposalFileError(
                f'{path}: results[{k}] has neither img_id nor img_path, so '
                f'it cannot be matched to an image')
        ids.append(img_id)
        paths.append(img_path)
        names.append(f'results[{k}] (img_id={img_id}, {img_path})')
    payloads = list(raw)
    raw.clear()

    def record(j, k):
        return f'{names[j]}, proposal #{k}'

    return _Entries('mmdet_results', names, ids, paths, payloads,
                    lambda v, j: _mapping_fields(v, names[j], path), record)


def _read_aligned(raw: list, path: str, num_images: int) -> _Entries:
    if len(raw) != num_images:
        raise ProposalFileError(
            f'{path}: mmdet 2.x style proposal list has {len(raw)} entries '
            f'but the dataset has {num_images} images; the list must be '
            f'aligned with the dataset\'s data_list (after any filtering)')
    n = len(raw)
    names = [f'entry #{i}' for i in range(n)]
    payloads = list(raw)
    raw.clear()

    def fields(v, j):
        if _is_mapping(v):
            return _mapping_fields(v, names[j], path)
        return v, None

    return _Entries('mmdet2_list', names, [None] * n, [None] * n, payloads,
                    fields, lambda j, k: f'entry #{j}, proposal #{k}')


def _json_column(recs: list, field: str, path: str) -> list:
    try:
        return [r[field] for r in recs]
    except (KeyError, TypeError, IndexError):
        for k, r in enumerate(recs):
            if not isinstance(r, dict) or field not in r:
                raise ProposalFileError(
                    f'{path}: record #{k} has no {field!r} (a COCO result '
                    f'needs image_id, bbox and score): {_short(r)}') from None
        raise


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and \
        not isinstance(x, bool)


def _bad_json_record(recs: list, field: str, path: str, width: int):
    """Raise naming the first record whose ``field`` is malformed."""
    for k, r in enumerate(recs):
        v = r[field]
        if width:
            ok = isinstance(v, (list, tuple)) and len(v) == width and all(
                _is_number(c) for c in v)
            what = f'a list of {width} numbers'
        else:
            ok = _is_number(v)
            what = 'a number'
        if not ok:
            raise ProposalFileError(
                f'{path}: record #{k} {field} is not {what}: {_short(r)}')
    raise ProposalFileError(f'{path}: malformed {field!r} values')


def _read_coco(recs: list, path: str) -> _Entries:
    """COCO results list -> entries grouped by image id (vectorised)."""
    n = len(recs)
    col = _json_column(recs, 'bbox', path)
    try:
        xywh = np.array(col)
    except (ValueError, TypeError):
        xywh = None
    del col
    if (xywh is None or xywh.dtype.kind not in 'iuf' or xywh.ndim != 2
            or xywh.shape[1] != 4):
        _bad_json_record(recs, 'bbox', path, 4)
    col = _json_column(recs, 'score', path)
    try:
        score = np.array(col)
    except (ValueError, TypeError):
        score = None
    del col
    if score is None or score.dtype.kind not in 'iuf' or score.ndim != 1:
        _bad_json_record(recs, 'score', path, 0)
    col = _json_column(recs, 'image_id', path)
    try:
        ids = np.array(col)
    except (ValueError, TypeError):
        ids = np.empty(0)
    if ids.ndim == 1 and ids.dtype.kind in 'iu':
        uniq, inverse = np.unique(ids, return_inverse=True)
        uniq = [int(u) for u in uniq]
    else:  # string / mixed ids: factorize in Python
        table: Dict[Any, int] = {}
        inverse = np.empty(n, dtype=np.int64)
        for k, v in enumerate(col):
            v = _norm_id(v)
            if v is None or isinstance(v, float):
                raise ProposalFileError(
                    f'{path}: record #{k} has an invalid image_id: '
                    f'{_short(recs[k])}')
            inverse[k] = table.setdefault(v, len(table))
        uniq = list(table)
    del col, ids
    # Everything needed is in arrays now: let the json objects go.
    recs.clear()

    boxes = np.empty((n, 4), dtype=np.float32)
    with np.errstate(over='ignore', invalid='ignore'):
        boxes[:, :2] = xywh[:, :2]
        boxes[:, 2:] = xywh[:, :2] + xywh[:, 2:]
    del xywh
    inverse = np.asarray(inverse).ravel()
    order = np.argsort(inverse, kind='stable')
    boxes = boxes[order]
    with np.errstate(over='ignore'):
        score = score[order].astype(np.float32)
    starts = np.zeros(len(uniq) + 1, dtype=np.int64)
    np.cumsum(np.bincount(inverse, minlength=len(uniq)), out=starts[1:])
    del inverse
    payloads = [(boxes[a:b], score[a:b])
                for a, b in zip(starts[:-1].tolist(), starts[1:].tolist())]
    names = [f'image_id={u!r}' for u in uniq]

    def record(j, k):
        return f'record #{int(order[starts[j] + k])} (image_id={uniq[j]!r})'

    return _Entries('coco_json', names, uniq, [None] * len(uniq), payloads,
                    lambda v, j: v, record)


def _looks_like_coco_result(x) -> bool:
    return isinstance(x, dict) and 'image_id' in x and 'bbox' in x


def _looks_like_result(x) -> bool:
    return _is_mapping(x) and ('pred_instances' in x or 'img_id' in x
                               or 'img_path' in x)


def _entries_from(raw, path: str, fmt: str, num_images: int) -> _Entries:
    if isinstance(raw, dict):
        if 'images' in raw and 'annotations' in raw:
            raise ProposalFileError(
                f'{path} looks like a COCO annotation file, not proposals')
        if fmt not in ('auto', 'dump_proposals', 'sniper'):
            raise ProposalFileError(
                f'{path}: fmt={fmt!r} expects a list, the file holds a dict')
        if not raw:
            raise ProposalFileError(f'{path} holds no proposal entries')
        return _read_keyed(raw, path, use_ids=fmt != 'dump_proposals')
    if isinstance(raw, tuple):
        raw = list(raw)
    if not isinstance(raw, list):
        raise ProposalFileError(
            f'{path}: unsupported proposal file structure '
            f'{type(raw).__name__} (expected a dict keyed by image or a list)')
    if fmt in ('dump_proposals', 'sniper'):
        raise ProposalFileError(
            f'{path}: fmt={fmt!r} expects a dict keyed by image, the file '
            f'holds a list')
    if not raw:
        raise ProposalFileError(f'{path} holds no proposal entries')
    first = raw[0]
    if fmt == 'coco_json' or (fmt == 'auto'
                              and _looks_like_coco_result(first)):
        if not _looks_like_coco_result(first):
            raise ProposalFileError(
                f'{path}: fmt=\'coco_json\' expects a list of dict(image_id, '
                f'bbox, score); record #0 is {_short(first)}')
        return _read_coco(raw, path)
    if fmt == 'mmdet_results' or (fmt == 'auto' and _looks_like_result(first)):
        return _read_results(raw, path)
    return _read_aligned(raw, path, num_images)


# --------------------------------------------------------------------------
# shapes


def _numeric(x, what: str, where: Callable[[], str]) -> np.ndarray:
    try:
        arr = _to_numpy(x)
    except (ValueError, TypeError) as e:
        raise ProposalFileError(
            f'{where()}: {what} is not a numeric array ({e})') from e
    if arr.dtype.kind not in 'iuf':
        raise ProposalFileError(
            f'{where()}: {what} is not numeric (dtype {arr.dtype}): '
            f'{_short(x)}')
    return arr


def _checked(bboxes, scores, where: Callable[[], str]):
    """Validate shapes: -> (bboxes (N, 4), scores (N,)) numpy views."""
    b = _numeric(bboxes, 'bboxes', where)
    if b.size == 0:
        b = b.reshape(0, b.shape[-1] if b.ndim == 2 else 4)
    if scores is None:  # (N, 5) [x1, y1, x2, y2, score] or (N, 4)
        if b.ndim != 2 or b.shape[1] not in (4, 5):
            raise ProposalFileError(
                f'{where()}: expected an (N, 5) [x1, y1, x2, y2, score] or '
                f'(N, 4) array, got shape {b.shape}')
        if b.shape[1] == 5:
            return b[:, :4], b[:, 4]
        return b, np.ones(len(b), dtype=np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ProposalFileError(
            f'{where()}: bboxes must have shape (N, 4), got {b.shape}')
    s = _numeric(scores, 'scores', where)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1 or len(s) != len(b):
        raise ProposalFileError(
            f'{where()}: scores must have shape ({len(b)},) to match bboxes '
            f'{b.shape}, got {s.shape}')
    return b, s


# --------------------------------------------------------------------------
# matching


class _Index:
    """Lookups from image id / path / key / file name to dataset rows."""

    def __init__(self, data_infos: Sequence[dict]):
        self.infos = data_infos
        self._ids = self._paths = None

    @staticmethod
    def _add(table: dict, k, i: int) -> None:
        old = table.get(k)
        if old is None:
            table[k] = i
        elif isinstance(old, list):
            old.append(i)
        else:
            table[k] = [old, i]

    def norm_path(self, i: int) -> Optional[str]:
        return _norm_path(self.infos[i].get('img_path', None))

    def by_id(self, img_id):
        if self._ids is None:
            self._ids = {}
            for i, info in enumerate(self.infos):
                v = _norm_id(info.get('img_id', None))
                if v is not None:
                    self._add(self._ids, v, i)
        return self._resolve(self._ids.get(img_id))

    def _build_paths(self):
        self._full, self._key, self._base = {}, {}, {}
        for i in range(len(self.infos)):
            p = self.norm_path(i)
            if p is None:
                continue
            self._add(self._full, p, i)
            self._add(self._key, _key_of(p), i)
            self._add(self._base, p.rsplit('/', 1)[-1], i)
        self._paths = True

    def _resolve(self, hit):
        """Rows of a hit, or 'ambiguous' when they are different images."""
        if hit is None or isinstance(hit, int):
            return hit
        if len({self.norm_path(i) for i in hit}) == 1:
            return hit  # the same image listed more than once
        return 'ambiguous'

    def by_path(self, norm: str):
        """-> (rows or None or 'ambiguous', match kind)."""
        if self._paths is None:
            self._build_paths()
        hit = self._full.get(norm)
        if hit is not None:
            return self._resolve(hit), _BY_PATH
        key = _key_of(norm)
        if '/' in key:
            hit = self._resolve(self._key.get(key))
            if hit is not None:
                return hit, _BY_KEY
        hit = self._resolve(self._base.get(norm.rsplit('/', 1)[-1]))
        return hit, _BY_BASENAME


def _match(entries: _Entries, index: _Index, num_images: int, stats: _Stats,
           path: str):
    """-> (src (I,) entry of each row or -1, uses (J,), matched_by, counts)."""
    matched_by = dict.fromkeys(_MATCH_NAMES, 0)
    counts = dict(
        unknown_entries=0,
        ambiguous_entries=0,
        duplicate_entries=0,
        id_path_mismatch=0,
        id_unknown=0)
    if entries.fmt == 'mmdet2_list':
        matched_by['order'] = num_images
        return (np.arange(num_images, dtype=np.int64),
                np.ones(num_images, dtype=np.int64), matched_by, counts)
    resolved = []  # (j, rows, kind)
    with_ids = known_ids = 0
    for j in range(len(entries)):
        rows, kind = None, None
        img_id, norm = entries.ids[j], entries.paths[j]
        id_unknown = False
        if img_id is not None:
            with_ids += 1
            rows, kind = index.by_id(img_id), _BY_ID
            id_unknown = rows is None
            known_ids += not id_unknown
            if rows == 'ambiguous':  # one id, several images: try the path
                rows = None
            elif rows is not None and norm is not None:
                # sanity: the id's image should carry the entry's file name
                i0 = rows if isinstance(rows, int) else rows[0]
                p0 = index.norm_path(i0)
                if p0 is not None and _key_of(p0) != _key_of(norm):
                    counts['id_path_mismatch'] += 1
                    stats.example(
                        'id/path mismatch',
                        f'{entries.names[j]} has img_id={img_id!r} which is '
                        f'{p0} in the dataset')
        if rows is None and norm is not None:
            rows, kind = index.by_path(norm)
            if id_unknown and rows is not None:
                if kind == _BY_BASENAME:
                    # a foreign id and a bare file name in common: nothing
                    # says it is this dataset's image
                    rows = None
                else:
                    counts['id_unknown'] += 1
                    stats.example(
                        'unknown id',
                        f'{entries.names[j]} has img_id={img_id!r}, unknown '
                        f'to the dataset; matched by its path')
        if rows == 'ambiguous':
            counts['ambiguous_entries'] += 1
            stats.example(
                'ambiguous', f'{entries.names[j]} (its file name is shared '
                f'by several images; only a full path or id can match it)')
        elif rows is None:
            counts['unknown_entries'] += 1
            stats.example('unknown', entries.names[j])
        else:
            resolved.append(
                (j, [rows] if isinstance(rows, int) else rows, kind))
    if with_ids and not known_ids:
        raise ProposalFileError(
            f'{path}: none of the {with_ids} img_ids of its entries is an '
            f'img_id of the dataset (e.g. {entries.names[0]} has img_id='
            f'{entries.ids[0]!r}; the dataset has e.g. '
            f'{_image_name(index.infos[0], 0)}): a proposal file of another '
            f'dataset, or of the same images with other ids? Pass '
            f'ignore_ids=True (neg_proposals=dict(file=..., ignore_ids=True)) '
            f'to match by path only')
    # exact matches claim images before file-name-only matches
    resolved.sort(key=lambda t: t[2] == _BY_BASENAME)
    src = [-1] * num_images
    uses = np.zeros(len(entries), dtype=np.int64)
    for j, rows, kind in resolved:
        free = [i for i in rows if src[i] < 0]
        if not free:
            counts['duplicate_entries'] += 1
            stats.example(
                'duplicate', f'{entries.names[j]} (image already given '
                f'{entries.names[src[rows[0]]]})')
            continue
        for i in free:
            src[i] = j
        uses[j] = len(free)
        matched_by[_MATCH_NAMES[kind]] += 1
    return np.array(src, dtype=np.int64), uses, matched_by, counts


# --------------------------------------------------------------------------
# cleaning and CSR assembly


def _image_name(info: dict, i: int) -> str:
    return (f'image #{i} ({info.get("img_path", None)}, '
            f'img_id={info.get("img_id", None)!r})')


class _Assembler:
    """Appends the proposals of rows (in increasing order) to the CSR output.

    Rows are staged, cast to float32, in a chunk buffer; each full chunk is
    validated, filtered and clipped with vectorised numpy and appended to
    the output, so the per-row Python work is one copy.
    """

    def __init__(self, cap: int, num_images: int, stats: _Stats,
                 on_bad_box: str, min_score: Optional[float],
                 max_per_image: Optional[int], describe: Callable):
        self.out_b = np.empty((cap, 4), dtype=np.float32)
        self.out_s = np.empty(cap, dtype=np.float32)
        self.counts = np.zeros(num_images, dtype=np.int64)
        self.pos = 0
        self.stats = stats
        self.on_bad_box = on_bad_box
        self.min_score = min_score
        self.max_per_image = max_per_image
        self.describe = describe  # (row, k) -> names file, image, record
        size = min(_CHUNK, max(cap, 1))
        self.stage_b = np.empty((size, 4), dtype=np.float32)
        self.stage_s = np.empty(size, dtype=np.float32)
        self._reset()

    def _reset(self):
        self.n = 0
        self.rows: List[int] = []
        self.sizes: List[int] = []
        self.widths: List[float] = []
        self.heights: List[float] = []

    def add(self, row: int, b: np.ndarray, s: np.ndarray, width: float,
            height: float) -> None:
        n = len(b)
        if self.n + n > len(self.stage_s):
            self.flush()
            if n > len(self.stage_s):
                self.stage_b = np.empty((n, 4), dtype=np.float32)
                self.stage_s = np.empty(n, dtype=np.float32)
        # (float64 -> float32 overflow gives inf: counted as such; the
        # caller holds np.errstate(over='ignore'))
        self.stage_b[self.n:self.n + n] = b
        self.stage_s[self.n:self.n + n] = s
        self.n += n
        self.rows.append(row)
        self.sizes.append(n)
        self.widths.append(width)
        self.heights.append(height)

    def _bad(self, kind, k, b, s, width, height, local, starts) -> str:
        r = int(local[k])
        return (f'{self.describe(self.rows[r], k - int(starts[r]))}: box '
                f'{b[k].tolist()} score {float(s[k])!r} is {kind} (image '
                f'{float(width[k]):g}x{float(height[k]):g})')

    def flush(self) -> None:
        n = self.n
        if not n:
            return
        counts = self.stats.counts
        sizes = np.asarray(self.sizes, dtype=np.int64)
        num_rows = len(sizes)
        starts = np.zeros(num_rows, dtype=np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        local = np.repeat(np.arange(num_rows, dtype=np.int32), sizes)
        width = np.repeat(np.asarray(self.widths, np.float32), sizes)
        height = np.repeat(np.asarray(self.heights, np.float32), sizes)
        b, s = self.stage_b[:n], self.stage_s[:n]
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        with np.errstate(invalid='ignore'):
            finite = np.isfinite(b).all(axis=1)
            finite &= np.isfinite(s)
            inverted = finite & ((x2 <= x1) | (y2 <= y1))
            keep = finite & ~inverted
            outside = keep & ((x2 <= 0) | (y2 <= 0) | (x1 >= width) |
                              (y1 >= height))
            keep &= ~outside
        n_keep = int(keep.sum())
        if n_keep < n:
            n_nan = n - int(finite.sum())
            n_inv = int(inverted.sum())
            n_out = n - n_keep - n_nan - n_inv
            if self.on_bad_box == 'error':
                k = int(np.argmin(keep))
                kind = ('NaN/inf' if not finite[k] else 'inverted/zero-size'
                        if inverted[k] else 'outside the image')
                raise ProposalFileError(
                    self._bad(kind, k, b, s, width, height, local, starts))
            for kind, mask, cnt in (('NaN/inf', ~finite, n_nan),
                                    ('inverted/zero-size', inverted, n_inv),
                                    ('outside the image', outside, n_out)):
                if cnt:
                    k = int(np.argmax(mask))
                    self.stats.example(
                        f'dropped {kind}',
                        self._bad(kind, k, b, s, width, height, local, starts))
            counts['dropped_nan'] += n_nan
            counts['dropped_inverted'] += n_inv
            counts['dropped_outside'] += n_out
        if self.min_score is not None:
            low = keep & (s < self.min_score)
            n_low = int(low.sum())
            if n_low:
                keep &= ~low
                counts['dropped_low_score'] += n_low
        top = self.max_per_image
        if top is not None:
            per_row = np.bincount(local[keep], minlength=num_rows)
            if (per_row > top).any():
                idx = np.flatnonzero(keep)
                rows_k = local[idx]
                # by row, then score descending; lexsort is stable
                order = np.lexsort((-s[idx], rows_k))
                first = np.zeros(num_rows, dtype=np.int64)
                np.cumsum(per_row[:-1], out=first[1:])
                rank = np.arange(len(idx)) - first[rows_k[order]]
                over = idx[order[rank >= top]]
                keep[over] = False
                counts['dropped_over_max'] += len(over)
        kept_rows = local[keep]
        m = len(kept_rows)
        self.counts[self.rows] = np.bincount(kept_rows, minlength=num_rows)
        dst_b = self.out_b[self.pos:self.pos + m]
        np.compress(keep, b, axis=0, out=dst_b)
        np.compress(keep, s, out=self.out_s[self.pos:self.pos + m])
        width, height = width[keep], height[keep]
        partly = ((dst_b[:, 0] < 0) | (dst_b[:, 1] < 0) | (dst_b[:, 2] > width)
                  | (dst_b[:, 3] > height))
        n_clip = int(partly.sum())
        if n_clip:
            counts['clipped'] += n_clip
            # kept boxes overlap the image: x1 < w, y1 < h, x2 > 0, y2 > 0
            np.maximum(dst_b[:, :2], 0, out=dst_b[:, :2])
            np.minimum(dst_b[:, 2], width, out=dst_b[:, 2])
            np.minimum(dst_b[:, 3], height, out=dst_b[:, 3])
        self.pos += m
        self._reset()


def _image_size(info: dict, i: int):
    w, h = info.get('width', None), info.get('height', None)
    try:
        w, h = float(w), float(h)
    except (TypeError, ValueError):
        w = h = 0.0
    if not (w > 0 and h > 0):
        raise ValueError(
            f'data_infos[{i}] ({info.get("img_path", None)}) has no valid '
            f'width/height ({info.get("width", None)!r}, '
            f'{info.get("height", None)!r}): proposals cannot be clipped')
    return w, h


# --------------------------------------------------------------------------
# public API


def summarize(report: dict) -> str:
    """The one-line summary of a :func:`load_proposals` report."""
    r = report
    text = (f'proposals from {r.get("file", "?")} '
            f'[{r.get("format", "?")}]: {r["proposals_used"]} proposals used '
            f'for {r["images_with_proposals"]}/{r["images"]} images; '
            f'{r["images_missing"]} images had no entry (skipped)')
    dropped = [(r.get(k, 0), what)
               for k, what in (('dropped_nan', 'NaN/inf'), ('dropped_inverted',
                                                            'inverted/empty'),
                               ('dropped_outside', 'outside the image'),
                               ('dropped_low_score', 'below min_score'),
                               ('dropped_over_max', 'over max_per_image'))]
    if any(c for c, _ in dropped):
        text += '; dropped ' + ', '.join(f'{c} {w}' for c, w in dropped if c)
    if r.get('clipped', 0):
        text += f'; clipped {r["clipped"]} to the image'
    extra = [(r.get(k, 0), what)
             for k, what in (('unknown_entries',
                              'entries for images not in the dataset'),
                             ('ambiguous_entries',
                              'entries with an ambiguous file name'),
                             ('duplicate_entries',
                              'duplicate entries ignored'),
                             ('id_path_mismatch',
                              'entries whose img_id and path disagree'),
                             ('id_unknown',
                              'entries with an unknown img_id matched by '
                              'path'))]
    if any(c for c, _ in extra):
        text += '; ' + ', '.join(f'{c} {w}' for c, w in extra if c)
    by = {k: v for k, v in r.get('matched_by', {}).items() if v}
    if by:
        text += '; matched by ' + ', '.join(f'{k}: {v}' for k, v in by.items())
    if r.get('examples'):
        text += '; e.g. ' + ' | '.join(
            _short_text(e, 160) for e in r['examples'][:3])
    return text


def load_proposals(
        path,
        data_infos: Sequence[dict],
        on_missing: str = 'skip',
        on_bad_box: str = 'drop',
        max_per_image: Optional[int] = None,
        min_score: Optional[float] = None,
        fmt: str = 'auto',
        logger: Union[logging.Logger, str, None] = 'current',
        backend_args: Optional[dict] = None,
        trust: bool = False,
        ignore_ids: bool = False) -> Tuple[ProposalSet, dict]:
    """Read a proposal file and align it with ``data_infos``.

    Args:
        path (str): The proposal file (see the module doc for formats).
        data_infos (Sequence[dict]): The dataset's ``data_list`` entries,
            with ``img_id``, ``img_path``, ``height`` and ``width``.
        on_missing (str): ``'skip'``: an image without an entry gets no
            proposals (counted); ``'error'``: raise naming the image.
        on_bad_box (str): ``'drop'``: NaN/inf, inverted or zero-size boxes
            and boxes entirely outside the image are dropped (counted);
            ``'error'``: such a box raises naming the file, image and
            record. Boxes partly outside are clipped (counted) either way.
        max_per_image (int, optional): Keep the top-scoring N of an image.
        min_score (float, optional): Drop proposals scoring below it.
        fmt (str): One of :data:`FORMATS`; ``'auto'`` detects it.
        logger: Where the summary line goes (mmengine ``print_log``).
        backend_args (dict, optional): mmengine file backend arguments.
        trust (bool): Unpickle a pickle fully (``pickle.load``; it may run
            code) instead of with the restricted unpickler. Only for files
            you made yourself. Defaults to False.
        ignore_ids (bool): Match entries by path only, ignoring the file's
            img_ids (the same images with renumbered ids). Defaults to
            False: an entry's img_id is matched first, and a file none of
            whose img_ids is known to the dataset raises.

    Returns:
        tuple[ProposalSet, dict]: The proposals (one CSR row per entry of
        ``data_infos``) and a report with ``images``,
        ``images_with_proposals``, ``images_missing``, ``proposals_used``,
        ``dropped_nan``, ``dropped_inverted``, ``dropped_outside``,
        ``clipped``, ``dropped_low_score``, ``dropped_over_max``,
        ``unknown_entries``, ``ambiguous_entries``, ``duplicate_entries``,
        ``id_path_mismatch``, ``id_unknown``, ``entries``,
        ``proposals_in_file``, ``matched_by``, ``format``, ``file`` and
        ``examples``; plus ``extraction`` (checkpoint hash and settings)
        for ``tools/extract_proposals.py`` output.
    """
    if on_missing not in ('skip', 'error'):
        raise ValueError(f'on_missing must be "skip" or "error", got '
                         f'{on_missing!r}')
    if on_bad_box not in ('drop', 'error'):
        raise ValueError(f'on_bad_box must be "drop" or "error", got '
                         f'{on_bad_box!r}')
    if fmt not in FORMATS:
        raise ValueError(f'fmt must be one of {FORMATS}, got {fmt!r}')
    if max_per_image is not None:
        max_per_image = operator.index(max_per_image)
        if max_per_image < 1:
            raise ValueError(f'max_per_image must be >= 1, got '
                             f'{max_per_image}')
    if min_score is not None:
        min_score = float(min_score)
    path = os.fspath(path)
    num_images = len(data_infos)
    if num_images == 0:
        raise ValueError(f'cannot align {path} with a dataset of 0 images')

    raw = _read_container(path, fmt, backend_args, trust=bool(trust))
    meta = raw.pop(META_KEY, None) if isinstance(raw, dict) else None
    entries = _entries_from(raw, path, fmt, num_images)
    del raw
    if fmt != 'auto':
        entries.fmt = fmt
    stats = _Stats()

    # Validate every entry's shapes (cheap views), so a broken file is
    # reported even when the broken entry is not used.
    num_entries = len(entries)
    sizes = np.zeros(num_entries, dtype=np.int64)
    for j in track(range(num_entries), task=f'checking {path}'):
        payload = entries.payloads[j]
        b, s = entries.fields(payload, j)
        b, s = _checked(b, s, lambda: f'{path}: {entries.names[j]}')
        entries.payloads[j] = (b, s)
        sizes[j] = len(b)
        del payload

    if ignore_ids:
        if entries.fmt == 'coco_json':
            raise ValueError(f'ignore_ids=True cannot be used with {path}: '
                             f'COCO result json is matched by image_id only')
        entries.ids = [None] * len(entries)
    src, uses, matched_by, match_counts = _match(entries, _Index(data_infos),
                                                 num_images, stats, path)
    if not uses.any():
        raise ProposalFileError(
            f'no entry of {path} ({num_entries} entries, e.g. '
            f'{", ".join(entries.names[:3])}) matches any of the '
            f'{num_images} dataset images (e.g. '
            f'{_image_name(data_infos[0], 0)}): wrong file or split?')
    unused = np.flatnonzero(uses == 0)
    unknown_proposals = int(sizes[unused].sum())
    for j in unused:  # free what will not be used
        entries.payloads[j] = None
    missing = np.flatnonzero(src < 0)
    if len(missing) and on_missing == 'error':
        i = int(missing[0])
        raise ProposalFileError(
            f'{path} has no proposals for {_image_name(data_infos[i], i)} '
            f'({len(missing)} of {num_images} images have none); pass '
            f'on_missing="skip" to train those images without negatives')
    for i in missing[:_EXAMPLES_PER_KIND]:
        stats.example('missing', _image_name(data_infos[int(i)], int(i)))

    # Upper bound of the output, then one pass writing into it.
    per_row = np.where(src >= 0, sizes[np.maximum(src, 0)], 0)
    if max_per_image is not None:
        np.minimum(per_row, max_per_image, out=per_row)
    cap = int(per_row.sum())
    del per_row

    def describe(row, k):
        return (f'{path}: {entries.record(int(src[row]), k)} of '
                f'{_image_name(data_infos[row], row)}')

    asm = _Assembler(cap, num_images, stats, on_bad_box, min_score,
                     max_per_image, describe)
    uses_left = uses.tolist()
    payloads = entries.payloads
    freed = 0
    with np.errstate(over='ignore', invalid='ignore'):
        for i, j in enumerate(track(src.tolist(), task=f'reading {path}')):
            if j < 0:
                continue
            b, s = payloads[j]
            if len(b):
                asm.add(i, b, s, *_image_size(data_infos[i], i))
                freed += len(b)
            del b, s
            uses_left[j] -= 1
            if not uses_left[j]:
                payloads[j] = None  # free the source as we go
                if freed >= _TRIM_EVERY:
                    _release_freed_memory()
                    freed = 0
        asm.flush()
    out_b, out_s, pos = asm.out_b, asm.out_s, asm.pos
    ptr = np.zeros(num_images + 1, dtype=np.int64)
    np.cumsum(asm.counts, out=ptr[1:])
    del asm, payloads
    entries.payloads = None
    if pos < cap:  # shrink in place (realloc), no second copy
        out_b.resize((pos, 4), refcheck=False)
        out_s.resize((pos, ), refcheck=False)
    if sizes.sum() >= _TRIM_EVERY // 8:  # a big file was freed
        _release_freed_memory()
    for arr in (ptr, out_b, out_s):
        arr.flags.writeable = False
    proposals = ProposalSet(ptr, out_b, out_s)

    counts = np.diff(ptr)
    report = dict(
        file=path,
        format=entries.fmt,
        images=num_images,
        images_with_proposals=int((counts > 0).sum()),
        images_missing=int(len(missing)),
        entries=num_entries,
        proposals_in_file=int(sizes.sum()),
        proposals_used=int(pos),
        unknown_proposals=unknown_proposals,
        **stats.counts,
        **match_counts,
        matched_by=matched_by,
        examples=stats.examples)
    if isinstance(meta, dict):  # written by tools/extract_proposals.py
        report['extraction'] = meta
    problems = (
        report['images_missing'] or report['unknown_entries']
        or report['ambiguous_entries'] or report['duplicate_entries']
        or report['id_path_mismatch'] or report['id_unknown']
        or report['dropped_nan']
        or report['dropped_inverted'] or report['dropped_outside'])
    print_log(
        summarize(report),
        logger=logger,
        level=logging.WARNING if problems else logging.INFO)
    return proposals, report
