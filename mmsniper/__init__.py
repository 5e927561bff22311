# Copyright (c) mmsniper contributors. All rights reserved.
"""mmsniper: SNIPER and AutoFocus for MMDetection 3.x.

``import mmsniper`` is cheap: it imports neither torch nor mmdet, so the
numpy-only chip geometry (:mod:`mmsniper.chips`) loads in a fraction of a
second. It still makes every use of mmsniper from mmdet work:

- mmsniper's components are registered into mmdet's registries the first
  time one of them (DATASETS, DATA_SAMPLERS, TRANSFORMS, MODELS,
  TASK_UTILS, HOOKS) looks a name up: ``mmsniper.registration`` is added
  to their import ``locations`` as soon as ``mmdet.registry`` is imported
  (now, or later through a post-import hook), and imported at once for a
  registry that has already done its lazy import. So ``import mmsniper``
  followed by ``MODELS.build(...)``, and
  ``custom_imports=dict(imports=['mmsniper'])`` in a config run by mmdet's
  or our tools, both find ``SniperRoIHead`` and the rest;
- the weights-only allow-list of :mod:`mmsniper._safe_globals` is added to
  torch once torch and mmengine are imported, so mmdet's own loaders read
  checkpoints written by ``tools/train.py``;
- ``mmsniper::`` is added to mmengine's table of config packages once
  ``mmengine.config`` is imported, and mmengine looks for mmsniper's
  ``.mim/configs`` beside the imported package when the installed location
  it computes has none (a PEP 660 editable install, ``pip install -e``).

All of it lives in :mod:`mmsniper._upstream`, which names each private
attribute of mmengine it relies on.

``mmsniper.datasets``, ``mmsniper.models``, ``mmsniper.engine``,
``mmsniper.apis`` and ``mmsniper.utils`` are imported on first attribute
access (or ``import mmsniper.models``).
"""
import importlib

from . import _upstream
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']

_SUBMODULES = ('chips', 'datasets', 'models', 'engine', 'apis', 'utils',
               'registration', 'testing')


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


_upstream.install()
