# Copyright (c) mmsniper contributors. All rights reserved.
"""What ``import mmsniper`` changes in mmengine and mmdet, in one place.

mmsniper is imported before mmdet (``import mmsniper`` stays cheap: no torch,
no mmdet), yet every use of mmsniper from mmdet must work. Three hooks,
installed by :func:`install` through post-import hooks
(:mod:`mmsniper._hooks`, standard library only), do it. Two of them rely on
mmengine beyond its public API; :data:`RELIED_ON` names each private
attribute, and :func:`check_upstream` (run by the tests; the hooks raise
the same message when they meet such a change) says clearly which one a new
mmengine has changed:

1. **Lazy registration** (:func:`register_lazily`, once ``mmdet.registry``
   is imported): ``mmsniper.registration`` is appended to the import
   locations of mmdet's DATASETS, DATA_SAMPLERS, TRANSFORMS, MODELS,
   TASK_UTILS and HOOKS registries (``Registry._locations``, private: the
   public way is ``locations=`` at construction, which mmdet owns), so
   mmengine imports it on the first lookup; a registry that has already
   done its lazy import (``Registry._imported``, private) would not look
   again, so the module is then imported at once.
2. **``mmsniper::`` configs** (:func:`add_config_package`, once
   ``mmengine.config.utils`` is imported): ``mmsniper`` is added to
   ``MODULE2PACKAGE``, the module-level table mmengine reads to resolve
   ``pkg::path`` (public name, no setter).
3. **Editable installs** (:func:`mim_aware_installed_path`, once
   ``mmengine.config.config`` is imported): the ``get_installed_path`` that
   module imported is wrapped: for a PEP 660 editable install mmengine's
   answer (site-packages) holds no ``mmsniper/.mim``, and the folder of the
   imported package is used instead when it has one. Only for mmsniper.

The weights-only allow-list (:mod:`mmsniper._safe_globals`) uses torch's
public ``torch.serialization.add_safe_globals``.
"""
import importlib
import os
from typing import List

__all__ = [
    'RELIED_ON', 'REGISTRIES', 'check_upstream', 'install', 'register_lazily',
    'add_config_package', 'mim_aware_installed_path'
]

#: mmdet registries that hold mmsniper components.
REGISTRIES = ('DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'MODELS',
              'TASK_UTILS', 'HOOKS')
REGISTRATION = 'mmsniper.registration'

#: (module, object, attribute, what mmsniper does with it); object None:
#: a module-level name. Checked by :func:`check_upstream`.
RELIED_ON = (
    ('mmengine.registry', 'Registry', '_locations',
     'a list of modules imported on the first lookup; mmsniper.registration '
     'is appended to it'),
    ('mmengine.registry', 'Registry', '_imported',
     'True once the registry did its lazy import (then mmsniper.registration '
     'is imported at once)'),
    ('mmengine.config.utils', None, 'MODULE2PACKAGE',
     "the dict that resolves 'pkg::' config paths; 'mmsniper' is added"),
    ('mmengine.config.config', None, 'get_installed_path',
     'the function mmengine.config.config calls to find a package\'s .mim '
     'folder; wrapped for editable installs'),
)


def check_upstream() -> List[str]:
    """The attributes of :data:`RELIED_ON` that this mmengine lacks or has
    changed, each as a sentence naming it; empty when all is as expected.
    """
    import mmengine
    problems = []
    for module_name, obj_name, attr, what in RELIED_ON:
        module = importlib.import_module(module_name)
        where = f'{module_name}.{obj_name + "." if obj_name else ""}{attr}'
        if obj_name is None:
            value, ok = getattr(module, attr, None), hasattr(module, attr)
        else:  # instance attributes: look at a fresh instance
            obj = getattr(module, obj_name)(
                'mmsniper_probe', locations=['mmsniper_probe'])
            value, ok = getattr(obj, attr, None), hasattr(obj, attr)
            if attr == '_locations':
                ok = ok and value == ['mmsniper_probe']
            elif attr == '_imported':
                ok = ok and value is False
        if attr == 'MODULE2PACKAGE':
            ok = ok and isinstance(value, dict)
        elif attr == 'get_installed_path':
            ok = ok and callable(value)
        if not ok:
            problems.append(
                f'mmsniper relies on {where} ({what}), which mmengine '
                f'{mmengine.__version__} does not have in that form; '
                'mmsniper is tested with mmengine 0.10.7 (see '
                'mmsniper/_upstream.py)')
    return problems


def register_lazily(registry_module) -> None:
    """Called once ``mmdet.registry`` is imported."""
    eager = False
    for name in REGISTRIES:
        registry = getattr(registry_module, name)
        if not isinstance(getattr(registry, '_locations', None), list) \
                or not hasattr(registry, '_imported'):
            raise RuntimeError('; '.join(check_upstream()) or (
                'mmsniper cannot register its components: mmdet.registry.'
                f'{name} has no _locations list or _imported flag (see '
                'mmsniper/_upstream.py)'))
        locations = registry._locations
        if REGISTRATION not in locations:
            locations.append(REGISTRATION)
        eager |= bool(registry._imported)  # it will not look again
    if eager:
        importlib.import_module(REGISTRATION)


def add_config_package(config_utils) -> None:
    """Let mmengine resolve ``mmsniper::sniper/...`` config paths."""
    config_utils.MODULE2PACKAGE.setdefault('mmsniper', 'mmsniper')


def mim_aware_installed_path(config_module) -> None:
    """Wrap ``get_installed_path`` as ``mmengine.config.config`` uses it
    (see the module docstring, 3)."""
    original = config_module.get_installed_path
    if getattr(original, '_mmsniper', False):
        return
    here = os.path.dirname(os.path.abspath(__file__))

    def get_installed_path(package: str) -> str:
        path = original(package)
        if package == 'mmsniper' and not os.path.isdir(
                os.path.join(path, '.mim')):
            if os.path.isdir(os.path.join(here, '.mim')):
                return here
        return path

    get_installed_path._mmsniper = True
    get_installed_path.__wrapped__ = original
    config_module.get_installed_path = get_installed_path


def install() -> None:
    """Install the three hooks and the weights-only allow-list (each runs
    when its module is imported, at once if it is already)."""
    from . import _safe_globals
    from ._hooks import when_imported
    _safe_globals.install()
    when_imported('mmengine.config.utils', add_config_package)
    when_imported('mmengine.config.config', mim_aware_installed_path)
    when_imported('mmdet.registry', register_lazily)
