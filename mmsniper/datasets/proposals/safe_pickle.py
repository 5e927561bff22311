# Copyright (c) mmsniper contributors. All rights reserved.
"""Restricted unpickling of proposal files (:func:`safe_pickle_load`)."""
import importlib
import io
import pickle

from .common import _short, ProposalFileError


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
