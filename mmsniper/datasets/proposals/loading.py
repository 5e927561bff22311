# Copyright (c) mmsniper contributors. All rights reserved.
"""The public entry points: :func:`load_proposals` and :func:`summarize`."""
import logging
import operator
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.logging import print_log

from mmsniper.utils.progress import track
from .common import (_EXAMPLES_PER_KIND, _image_name, _release_freed_memory,
                     _short_text, _Stats, _TRIM_EVERY, FORMATS, META_KEY,
                     ProposalFileError, ProposalSet)
from .readers import _checked, _entries_from, _read_container
from .matching import _Index, _match
from .assemble import _Assembler, _image_size


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
