# Copyright (c) mmsniper contributors. All rights reserved.
import itertools
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
_SCOPE_IDS = itertools.count()
SHARED = osp.abspath(osp.join(ROOT, '..', 'shared'))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def shared_path(*parts):
    """Path inside ``../shared``; skips the test when it is absent."""
    path = osp.join(SHARED, *parts)
    if not osp.exists(path):
        pytest.skip(f'needs {path} (../shared is not beside the project)')
    return path


@pytest.fixture(autouse=True)
def _mmdet_scope():
    """Every test runs with mmdet's default registry scope, as the tools do."""
    from mmengine.registry import DefaultScope
    import mmsniper  # noqa: F401
    name = f'mmsniper_test_{next(_SCOPE_IDS)}'
    DefaultScope.get_instance(name, scope_name='mmdet')
    yield
