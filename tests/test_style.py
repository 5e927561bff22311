# Copyright (c) mmsniper contributors. All rights reserved.
"""The code follows the project's flake8 settings (setup.cfg)."""
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_flake8_is_clean():
    pytest.importorskip('flake8')
    result = subprocess.run(
        [sys.executable, '-m', 'flake8', 'mmsniper', 'tools', 'tests',
         'benchmarks', 'configs'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
