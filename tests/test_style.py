# Copyright (c) mmsniper contributors. All rights reserved.
"""The code follows the project's flake8 settings (setup.cfg)."""
import os.path as osp
import importlib.util
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_flake8_is_clean():
    # flake8 is a test requirement (requirements/tests.txt): a missing one
    # fails here instead of skipping the check unseen.
    assert importlib.util.find_spec('flake8') is not None, (
        'flake8 is not installed: pip install -r requirements/tests.txt')
    result = subprocess.run(
        [sys.executable, '-m', 'flake8', 'mmsniper', 'tools', 'tests',
         'benchmarks', 'configs'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
