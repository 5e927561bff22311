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

The package holds one concept per module: ``common`` (constants, the error
type, :class:`ProposalSet`, image keys), ``safe_pickle`` (the restricted
unpickler), ``readers`` (the file formats and box checks), ``matching``
(entries to dataset images), ``assemble`` (cleaning and CSR assembly) and
``loading`` (:func:`load_proposals`, :func:`summarize`). Import from the
package: the module layout is not an API.
"""
from .common import (FORMATS, META_KEY, ProposalFileError, ProposalSet,
                     proposal_key)
from .loading import load_proposals, summarize
from .safe_pickle import ForbiddenGlobalError, safe_pickle_load

__all__ = [
    'FORMATS', 'ProposalFileError', 'ProposalSet', 'load_proposals',
    'proposal_key', 'safe_pickle_load', 'summarize', 'META_KEY',
    'ForbiddenGlobalError'
]
