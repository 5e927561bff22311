# Copyright (c) mmsniper contributors. All rights reserved.
"""Reading proposal files: containers, the five formats, box and score
checks."""
import json
import os.path as osp
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from mmengine.fileio import get_local_path

from .common import (_is_mapping, _JSON_EXTS, _norm_id, _norm_path,
                     _PICKLE_EXTS, _short, _to_numpy, FORMATS,
                     ProposalFileError)
from .safe_pickle import safe_pickle_load


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
