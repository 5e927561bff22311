# Copyright (c) mmsniper contributors. All rights reserved.
"""Run a callback once a module has been imported (a post-import hook).

``import mmsniper`` must stay cheap (``mmsniper.chips`` is numpy only), yet
mmsniper has to register its components into mmdet's registries and its
weights-only allow-list into torch whenever those are used. So
:func:`when_imported` runs the callback at once if the module is imported
already, and otherwise from a small :data:`sys.meta_path` finder that wraps
the module's loader and calls it right after the module has executed.
Standard library only.
"""
import importlib.abc
import sys
import threading
from typing import Callable, Dict, List

__all__ = ['when_imported']

_callbacks: Dict[str, List[Callable]] = {}
_lock = threading.RLock()
_busy = threading.local()


class _Loader(importlib.abc.Loader):
    """Delegates to the real loader, then runs the module's callbacks."""

    def __init__(self, loader, name: str):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # the module's loader is the real one (resources, source, reload)
        module.__loader__ = self._loader
        if getattr(module, '__spec__', None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _fire(self._name, module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds watched modules with the other finders and wraps their loader.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname not in _callbacks or getattr(_busy, 'on', False):
            return None
        _busy.on = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, 'find_spec'):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            _busy.on = False
        if spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        spec.loader = _Loader(spec.loader, fullname)
        return spec


_FINDER = _Finder()


def _fire(name: str, module) -> None:
    with _lock:
        callbacks = _callbacks.pop(name, [])
    for callback in callbacks:
        callback(module)


def when_imported(name: str, callback: Callable) -> None:
    """Call ``callback(module)`` once module ``name`` is imported (now if it
    is already)."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _callbacks.setdefault(name, []).append(callback)
            if _FINDER not in sys.meta_path:
                sys.meta_path.insert(0, _FINDER)
            return
    callback(module)
