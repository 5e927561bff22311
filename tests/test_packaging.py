"""`pip install .` keeps an existing OpenMMLab environment: the install
requirements (requirements/runtime.txt, setup.py's install_requires) accept
every mmcv / mmengine / mmdet version that mmsniper's version check
(mmsniper/registration.py) accepts, and refuse what it refuses; exact pins
stay in requirements/constraints.txt."""
import ast
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def install_requirements():
    reqs = {}
    for line in (ROOT / 'requirements' / 'runtime.txt').read_text().split(
            '\n'):
        line = line.split('#', 1)[0].strip()
        if line:
            req = Requirement(line)
            reqs[req.name] = req
    return reqs


def version_check_bounds():
    """``{package: (minimum, maximum)}`` as registration.py states them."""
    tree = ast.parse((ROOT / 'mmsniper' / 'registration.py').read_text())
    values = {
        node.targets[0].id: node.value.value
        for node in tree.body if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    return {
        pkg: (values[f'{pkg}_minimum_version'],
              values[f'{pkg}_maximum_version'])
        for pkg in ('mmcv', 'mmengine', 'mmdet')
    }


def accepts(req, version):
    return req.specifier.contains(Version(version), prereleases=True)


def test_bounds_read():
    bounds = version_check_bounds()
    assert bounds['mmdet'] == ('3.0.0', '3.4.0')
    assert bounds['mmcv'][1] == '2.2.0'  # mmdet 3.3.0 refuses mmcv 2.2


@pytest.mark.parametrize('pkg', ['mmcv', 'mmengine', 'mmdet'])
def test_install_range_is_the_version_check(pkg):
    req = install_requirements()[pkg]
    low, high = version_check_bounds()[pkg]
    assert accepts(req, low), f'{req} refuses {pkg} {low}'
    assert not accepts(req, high), f'{req} accepts {pkg} {high}'
    below = Version(low)
    assert not accepts(req, f'{below.major}.{below.minor}.0.dev0'
                       if below.micro or below.pre else
                       f'{below.major}.{max(below.minor - 1, 0)}.0'
                       if below.minor else f'{below.major - 1}.99.0')


@pytest.mark.parametrize(
    'pkg,version,ok',
    [('mmdet', '3.2.0', True), ('mmdet', '3.3.0', True),
     ('mmdet', '2.28.2', False), ('mmdet', '3.4.0', False),
     ('mmcv', '2.0.1', True), ('mmcv', '2.1.0', True),
     ('mmcv', '2.2.0', False), ('mmcv', '1.7.2', False),
     ('mmengine', '0.10.7', True), ('mmengine', '0.8.4', True),
     ('mmengine', '1.0.0', False)])
def test_existing_environments(pkg, version, ok):
    # e.g. a user with mmdet 3.2 and a CUDA mmcv 2.0.1 keeps both
    assert accepts(install_requirements()[pkg], version) is ok


def test_make_still_pins_exact_versions():
    pins = {}
    for line in (ROOT / 'requirements' / 'constraints.txt').read_text().split(
            '\n'):
        line = line.split('#', 1)[0].strip()
        if '==' in line:
            name, version = line.split('==')
            pins[name.lower()] = version
    reqs = install_requirements()
    for name in ('mmcv', 'mmdet', 'mmengine', 'tifffile', 'imagecodecs'):
        assert name in pins, f'{name} has no exact pin in constraints.txt'
        assert accepts(reqs[name], pins[name])
