# Copyright (c) mmsniper contributors. All rights reserved.
"""What ``import mmsniper`` costs and does, each case in a fresh interpreter.

The numpy core (``mmsniper.chips``) imports neither torch nor mmdet; every
way of using mmsniper from mmdet still finds its components (issue 7, item
11): ``import mmsniper`` before or after mmdet, after mmdet's registries
were used, and ``custom_imports`` in a config.
"""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK_REGISTERED = '''
from mmdet.registry import (DATA_SAMPLERS, DATASETS, MODELS, TASK_UTILS,
                            TRANSFORMS)
found = [MODELS.get('SniperRoIHead'), DATASETS.get('SniperChipDataset'),
         DATA_SAMPLERS.get('SniperChipSampler'),
         TRANSFORMS.get('SniperChipCrop'),
         TRANSFORMS.get('LoadSniperChipFromFile'),
         TASK_UTILS.get('SniperMaxIoUAssigner')]
print('FOUND', [c.__module__.split('.')[0] for c in found])
'''


def _run(*parts):
    code = '\n'.join(textwrap.dedent(p) for p in parts)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=ROOT,
                          env=env,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc.stdout


def _assert_all_found(out):
    assert "FOUND ['mmsniper', 'mmsniper', 'mmsniper', 'mmsniper', " \
        "'mmsniper', 'mmsniper']" in out, out


def test_numpy_core_imports_without_torch_or_mmdet():
    """Before: ``import mmsniper.chips`` imported mmdet and torch (7 s on an
    idle machine)."""
    out = _run('''
        import sys, time
        t = time.perf_counter()
        import mmsniper.chips
        dt = time.perf_counter() - t
        heavy = [m for m in ('torch', 'mmdet', 'mmengine', 'mmcv')
                 if m in sys.modules]
        print('HEAVY', heavy, 'SECONDS', round(dt, 2))
    ''')
    print(out.strip())
    assert 'HEAVY []' in out


def test_import_mmsniper_then_mmdet_registries():
    out = _run('''
        import sys
        import mmsniper
        assert 'mmdet' not in sys.modules and 'torch' not in sys.modules
    ''', CHECK_REGISTERED, '''
        import mmsniper.datasets  # attribute access to subpackages
        assert mmsniper.models.SniperRoIHead.__name__ == 'SniperRoIHead'
        from mmengine.config.utils import MODULE2PACKAGE
        print('PKG', MODULE2PACKAGE.get('mmsniper'))
    ''')
    _assert_all_found(out)
    assert 'PKG mmsniper' in out


def test_import_mmsniper_after_mmdet_registries_were_used():
    """Registries that already did their lazy import get mmsniper's
    components at ``import mmsniper``."""
    out = _run('''
        from mmdet.registry import MODELS, TRANSFORMS
        MODELS.get('RPN'), TRANSFORMS.get('Resize')
        import mmsniper
    ''', CHECK_REGISTERED)
    _assert_all_found(out)


def test_custom_imports_in_a_config(tmp_path):
    """What mmdet's own tools do: the config names mmsniper, the build goes
    through mmengine's root registry with the mmdet scope."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("custom_imports = dict(imports=['mmsniper'], "
                   "allow_failed_imports=False)\n"
                   "assigner = dict(type='SniperMaxIoUAssigner', "
                   "pos_iou_thr=0.5, neg_iou_thr=0.4)\n")
    out = _run(f'''
        import sys
        import mmdet.utils  # mmdet's tools import it first
        from mmengine.config import Config
        from mmengine.registry import TASK_UTILS, DefaultScope
        cfg = Config.fromfile({str(cfg)!r})
        assert 'mmsniper' in sys.modules
        DefaultScope.get_instance('t', scope_name='mmdet')
        print('BUILT', type(TASK_UTILS.build(cfg.assigner)).__module__)
    ''')
    assert 'BUILT mmsniper.models' in out, out


@pytest.mark.parametrize('name', ['datasets', 'models', 'utils'])
def test_unknown_attribute_is_an_attribute_error(name):
    import mmsniper
    assert getattr(mmsniper, name).__name__ == f'mmsniper.{name}'
    with pytest.raises(AttributeError):
        mmsniper.no_such_thing


def _fake_editable_install(tmp_path):
    """What ``pip install -e .`` (PEP 660) leaves: a dist-info and a .pth in
    site-packages, the package in the source tree with setup.py's ``.mim``
    links (here a copy of the package and a link to configs/)."""
    import shutil
    site = tmp_path / 'site'
    src = tmp_path / 'src'
    dist = site / 'mmsniper-0.1.0.dist-info'
    dist.mkdir(parents=True)
    (dist / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: mmsniper\nVersion: 0.1.0\n')
    (dist / 'top_level.txt').write_text('mmsniper\n')
    (site / '__editable__.mmsniper-0.1.0.pth').write_text(f'{src}\n')
    shutil.copytree(
        os.path.join(ROOT, 'mmsniper'),
        src / 'mmsniper',
        ignore=shutil.ignore_patterns('__pycache__', '.mim'))
    (src / 'mmsniper' / '.mim').mkdir()
    for name in ('configs', 'model-index.yml'):
        (src / 'mmsniper' / '.mim' / name).symlink_to(os.path.join(ROOT, name))
    return site, src


def test_mmsniper_config_paths(tmp_path):
    """``_base_ = 'mmsniper::...'``: (1) with a PEP 660 editable install
    and ``import mmsniper`` first (our tools), it resolves to the source
    tree's .mim (mmengine alone looks in site-packages/mmsniper, which an
    editable install does not have); (2) with only ``custom_imports`` (mmdet's
    tools) it cannot work: mmengine resolves ``_base_`` before it runs
    ``custom_imports``."""
    site, src = _fake_editable_install(tmp_path)
    child = tmp_path / 'child.py'
    child.write_text(
        "_base_ = 'mmsniper::sniper/rpn_r18-slim_fpn_sniper-demo_synthetic"
        ".py'\ncustom_imports = dict(imports=['mmsniper'])\n")
    out = _run(f'''
        import os, site, sys
        sys.path[:] = [p for p in sys.path
                       if p not in ('', os.getcwd(), {ROOT!r})]
        site.addsitedir({str(site)!r})
        sys.path.insert(0, {str(src)!r})  # as the editable finder would
        sys.path.insert(0, {str(site)!r})  # this dist-info comes first
        from mmengine.config import Config
        try:
            Config.fromfile({str(child)!r})
        except AssertionError as e:
            print('WITHOUT IMPORT:', e)
        import mmsniper
        print('FROM', mmsniper.__file__)
        import mmengine.config.config as cc
        print('MMENGINE ALONE', cc.get_installed_path.__wrapped__('mmsniper'))
        cfg = Config.fromfile({str(child)!r})
        print('MODEL', cfg.model.type, cfg.train_dataloader.dataset.type)
    ''')
    assert f'FROM {src}' in out, out
    assert 'WITHOUT IMPORT: mmengine does not support to load mmsniper ' \
        'config' in out, out
    assert f'MMENGINE ALONE {site}/mmsniper' in out, out
    assert not (site / 'mmsniper').exists()
    assert 'MODEL RPN SniperChipDataset' in out, out
