# Copyright (c) mmsniper contributors. All rights reserved.
"""mmsniper.utils.memory: this process's own peak RSS, and its reset."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

from mmsniper.utils import peak_rss_bytes, reset_peak_rss

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
needs_proc = pytest.mark.skipif(
    not osp.exists('/proc/self/clear_refs'), reason='needs Linux /proc')


@needs_proc
def test_peak_grows_and_resets():
    """In a fresh process: after a whole test session this one's allocator
    holds freed memory that a new block may reuse without growing RSS."""
    code = f"""
import importlib.util as u
import numpy as np
s = u.spec_from_file_location('memory', {osp.join(ROOT, 'mmsniper', 'utils',
                                                  'memory.py')!r})
m = u.module_from_spec(s); s.loader.exec_module(m)
assert m.reset_peak_rss()
base = m.peak_rss_bytes()
block = np.ones(200 * 2**20, np.uint8)  # touch 200 MB
grown = m.peak_rss_bytes()
del block
assert m.reset_peak_rss()
after = m.peak_rss_bytes()
print(base, grown, after)
"""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout
    base, grown, after = (int(v) for v in out.split())
    assert grown - base > 150 * 2**20
    assert after < grown - 150 * 2**20
    # and in this process the calls work
    assert reset_peak_rss() and peak_rss_bytes() > 0


@needs_proc
def test_a_child_reports_its_own_peak_not_its_parents():
    """ru_maxrss would start at this (parent) process's RSS."""
    block = np.ones(300 * 2**20, np.uint8)  # the parent holds 300 MB more
    code = ('import importlib.util as u; '
            's = u.spec_from_file_location("memory", %r); '
            'm = u.module_from_spec(s); s.loader.exec_module(m); '
            'print(m.peak_rss_bytes())' %
            osp.join(ROOT, 'mmsniper', 'utils', 'memory.py'))
    child = int(subprocess.run([sys.executable, '-c', code],
                               capture_output=True, text=True,
                               check=True).stdout)
    assert child < peak_rss_bytes() - 250 * 2**20
    del block
