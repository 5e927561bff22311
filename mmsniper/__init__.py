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

``mmsniper.datasets``, ``mmsniper.models``, ``mmsniper.engine``,
``mmsniper.apis`` and ``mmsniper.utils`` are imported on first attribute
access (or ``import mmsniper.models``).
"""
import importlib
import os

from ._hooks import when_imported
from .version import __version__, version_info

__all__ = ['__version__', 'version_info']

#: mmdet registries that hold mmsniper components.
REGISTRIES = ('DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'MODELS',
              'TASK_UTILS', 'HOOKS')
_REGISTRATION = 'mmsniper.registration'
_SUBMODULES = ('chips', 'datasets', 'models', 'engine', 'apis', 'utils',
               'registration')


def _register_lazily(registry_module) -> None:
    """Called once ``mmdet.registry`` is imported."""
    eager = False
    for name in REGISTRIES:
        registry = getattr(registry_module, name)
        locations = registry._locations
        if _REGISTRATION not in locations:
            locations.append(_REGISTRATION)
        eager |= bool(registry._imported)  # it will not look again
    if eager:
        importlib.import_module(_REGISTRATION)


def _add_config_package(config_utils) -> None:
    """Let mmengine resolve ``mmsniper::sniper/...`` config paths."""
    config_utils.MODULE2PACKAGE.setdefault('mmsniper', 'mmsniper')


def _mim_aware_installed_path(config_module) -> None:
    """Wrap ``get_installed_path`` as ``mmengine.config.config`` uses it.

    mmengine takes a package's configs from ``<dist location>/mmsniper/
    .mim``. For a PEP 660 editable install the dist location is
    site-packages, which holds no ``mmsniper`` folder, so ``mmsniper::``
    failed although ``setup.py`` linked ``.mim`` into the source tree. Only
    for ``mmsniper``, and only when mmengine's answer has no ``.mim``, the
    folder of the imported package is used if it has one.
    """
    original = config_module.get_installed_path
    if getattr(original, '_mmsniper', False):
        return

    def get_installed_path(package: str) -> str:
        path = original(package)
        if package == 'mmsniper' and not os.path.isdir(
                os.path.join(path, '.mim')):
            here = os.path.dirname(os.path.abspath(__file__))
            if os.path.isdir(os.path.join(here, '.mim')):
                return here
        return path

    get_installed_path._mmsniper = True
    get_installed_path.__wrapped__ = original
    config_module.get_installed_path = get_installed_path


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def _install() -> None:
    from . import _safe_globals
    _safe_globals.install()
    when_imported('mmengine.config.utils', _add_config_package)
    when_imported('mmengine.config.config', _mim_aware_installed_path)
    when_imported('mmdet.registry', _register_lazily)


_install()
