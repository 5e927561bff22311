# Copyright (c) mmsniper contributors. All rights reserved.
"""Matching proposal entries to the images of a dataset."""
from typing import Optional, Sequence

import numpy as np

from .common import (_BY_BASENAME, _BY_ID, _BY_KEY, _BY_PATH, _image_name,
                     _key_of, _MATCH_NAMES, _norm_id, _norm_path, _Stats,
                     ProposalFileError)
from .readers import _Entries


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
