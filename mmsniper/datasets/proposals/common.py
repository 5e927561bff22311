# Copyright (c) mmsniper contributors. All rights reserved.
"""Shared pieces of the proposal loader: constants, the error type,
:class:`ProposalSet`, image keys and path normalisation, counters."""
import operator
import os
import posixpath
import sys
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np


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


def _image_name(info: dict, i: int) -> str:
    return (f'image #{i} ({info.get("img_path", None)}, '
            f'img_id={info.get("img_id", None)!r})')
