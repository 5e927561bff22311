# Copyright (c) mmsniper contributors. All rights reserved.
"""The weights-only allow-list that mmengine training checkpoints need.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which
rebuilds only tensors, plain containers and the globals allow-listed with
``torch.serialization.add_safe_globals``. A checkpoint written by
``tools/train.py`` (mmengine's ``CheckpointHook``) also holds the message
hub's ``HistoryBuffer`` objects, which hold numpy arrays and scalars; so
mmdet's ``init_detector``, ``DetInferencer`` and ``tools/test.py`` failed
with ``Unsupported global: GLOBAL mmengine.logging.history_buffer.
HistoryBuffer``. :func:`register` allow-lists exactly what
``torch.serialization.get_unsafe_globals_in_checkpoint`` reports for such a
checkpoint (torch 2.13, numpy 2.4, mmengine 0.10.7), each entry reviewed:

- ``mmengine.logging.history_buffer.HistoryBuffer``: rebuilt by
  ``object.__new__`` plus a ``__dict__`` update (it has no
  ``__setstate__``); its methods only compute statistics of its arrays.
- ``builtins.getattr``: NOT the real one. HistoryBuffer keeps its
  statistic functions (``HistoryBuffer.min`` ...) in a dict, which pickle
  writes as ``getattr(HistoryBuffer, 'min')``. The real ``getattr`` would
  let a file reach any attribute of any allowed object, so the name is
  bound to :func:`_history_buffer_method`, which returns only public
  methods of ``HistoryBuffer`` and raises for anything else. (torch calls
  reduce functions only if they are allow-listed themselves, so what it
  returns can be stored, not called, by the file.)
- ``numpy.ndarray``, ``numpy.dtype``, ``numpy._core.multiarray.
  _reconstruct`` and ``numpy._core.multiarray.scalar`` (also under their
  numpy < 2 names ``numpy.core.multiarray.*``): numpy's own array, dtype
  and scalar reconstruction from bytes; they build data only (an
  object-dtype array can hold only what the rest of the list allows).
- the numeric ``numpy.dtypes.*DType`` classes (bool, ints, floats,
  complex): torch sets a dtype's state only if its exact class is allowed;
  their ``__setstate__`` is numpy's C code reading byte order and flags.
  Object, string, void and datetime dtypes are left out.

Registration is process-wide (that is how torch's allow-list works) and
happens once both torch and mmengine's ``history_buffer`` are imported, so
``import mmsniper`` (or ``custom_imports=dict(imports=['mmsniper'])``) makes
plain ``torch.load(path)`` of our checkpoints work. Everything else still
fails weights-only loading as torch intends (see
:mod:`mmsniper.utils.checkpoint` for the explicit trust fallback).
"""
import sys

from ._hooks import when_imported

__all__ = ['register', 'SAFE_GLOBAL_NAMES']

#: The names added to torch's weights-only allow-list.
SAFE_GLOBAL_NAMES = (
    'mmengine.logging.history_buffer.HistoryBuffer',
    'builtins.getattr',
    'numpy.ndarray',
    'numpy.dtype',
    'numpy._core.multiarray._reconstruct',
    'numpy._core.multiarray.scalar',
    'numpy.core.multiarray._reconstruct',
    'numpy.core.multiarray.scalar',
    'numpy.dtypes.<numeric>DType',
)
_NUMERIC_DTYPE_CODES = '?bBhHiIlLqQefdgFDG'
_done = []


def _history_buffer_method(obj, name):
    """``getattr`` restricted to the public methods of ``HistoryBuffer``."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if (obj is HistoryBuffer and isinstance(name, str)
            and not name.startswith('_')
            and callable(HistoryBuffer.__dict__.get(name))):
        return getattr(HistoryBuffer, name)
    import pickle
    raise pickle.UnpicklingError(
        f'mmsniper weights-only allow-list: getattr({obj!r}, {name!r}) is '
        f'not allowed (only public methods of HistoryBuffer are)')


def register() -> bool:
    """Add the allow-list to torch (once). Returns whether it is added."""
    if _done:
        return True
    torch = sys.modules.get('torch')
    serialization = getattr(torch, 'serialization', None)
    add = getattr(serialization, 'add_safe_globals', None)
    if add is None:  # torch < 2.4: no weights-only allow-list to extend
        return False
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        multiarray = np._core.multiarray
    except AttributeError:  # numpy < 2
        multiarray = np.core.multiarray
    add([
        HistoryBuffer,
        (_history_buffer_method, 'builtins.getattr'),
        np.ndarray,
        np.dtype,
        (multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy._core.multiarray.scalar'),
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
    ] + sorted({type(np.dtype(c))
                for c in _NUMERIC_DTYPE_CODES} - {np.dtype},
               key=lambda t: t.__name__))
    _done.append(True)
    return True


def _maybe_register(_module=None) -> None:
    if ('torch' in sys.modules and hasattr(sys.modules['torch'],
                                           'serialization')
            and 'mmengine.logging.history_buffer' in sys.modules):
        register()


def install() -> None:
    """Register now if torch and mmengine are imported, else once they
    are."""
    when_imported('torch', _maybe_register)
    when_imported('mmengine.logging.history_buffer', _maybe_register)
