"""benchmarks/bench_epoch_chip_work.py: a tiny run of both paths (2 gloo
ranks each) prints the per-epoch table and the summary, and its json
holds what the docs quote."""
import json
import os.path as osp
import subprocess
import sys

from conftest import ROOT

SCRIPT = osp.join(ROOT, 'benchmarks', 'bench_epoch_chip_work.py')


def test_tiny_run_of_both_paths(tmp_path):
    out = tmp_path / 'res.json'
    res = subprocess.run([
        sys.executable, SCRIPT, '--num-images', '24',
        '--proposals-per-image', '30', '--epochs', '3', '--old-epochs', '1',
        '--train-s', '1', '--procs', '2', '--data-root', str(tmp_path),
        '--out', str(out)
    ], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    text = res.stdout
    assert '[synthetic] 200 distinct images replicated to 24' in text
    assert 'old: every rank all images, on demand (before)' in text
    assert 'new: rank shards, next epoch in the background' in text
    assert 'per epoch: chip work (slowest rank)' in text
    results = json.loads(out.read_text())
    old, new = results['old']['records'], results['new']['records']
    assert len(old) == len(new) == 2
    # before: each rank did every image; now: disjoint halves
    assert [r['epochs'][0]['images'] for r in old] == [24, 24]
    shares = [r['epochs'][0]['images'] for r in new]
    assert sum(shares) == 24 and min(shares) > 0
    hows = [e['how'] for e in new[0]['epochs']]
    assert hows == ['on demand', 'background', 'background']
    # both ranks drew the same number of chips (round_up)
    for path in (old, new):
        counts = [r['epochs'][0]['chips_this_rank'] for r in path]
        assert counts[0] == counts[1] > 0
