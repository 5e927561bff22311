"""benchmarks/bench_chip_pipeline.py: the report (medians, per-run ratios
to naive) and the decoder probe, on hand-made runs
and tiny JPEGs (the timed runs themselves are the benchmark, not a test)."""
import os.path as osp
import sys

import cv2
import numpy as np
from conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import bench_chip_pipeline as bcp  # noqa: E402


def run(chips_per_s, rss=300., kib=10.):
    """A run's record: 10 chips per scale at the given rates (wall = CPU)."""
    return dict(
        per_scale=[dict(n=10, t=10. / r, cpu_n=10, cpu=10. / r)
                   for r in chips_per_s],
        bytes=[kib * 1024] * 10,
        rss=rss)


def test_tables_give_medians_and_per_run_ratios(capsys):
    rows = {
        (0, 'naive'): [run([10, 10]), run([20, 20]), run([10, 10])],
        # run i against naive's run i: 3x, 2x, 6x -> median 3x, range 2-6
        (0, 'store'): [run([30, 30], rss=250), run([40, 40], rss=280),
                       run([60, 60], rss=260)],
    }
    bcp.print_tables(rows, [1.0, 0.5], [0], ['naive', 'store'])
    lines = capsys.readouterr().out.splitlines()
    wall = [ln.split() for ln in lines[:4] if ln.strip().startswith('0 ')]
    assert wall[0][:5] == ['0', 'naive', '10.0', '10.0', '10.0']
    assert wall[1][:7] == ['0', 'store', '40.0', '40.0', '40.0', '3.00x',
                           '[2.00-6.00]']
    assert wall[1][7:] == ['280', '10']  # the most RSS over the runs


def test_tables_overall_weighs_scales_by_time(capsys):
    # 10 chips at 10/s and 10 chips at 40/s: 20 chips in 1.25 s = 16/s
    rows = {(2, 'naive'): [run([10, 40])]}
    bcp.print_tables(rows, [1.0, 0.5], [2], ['naive'])
    first = capsys.readouterr().out.splitlines()[2].split()
    assert first[:5] == ['2', 'naive', '10.0', '40.0', '16.0']


def test_decoder_probe_times_every_case(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        path = str(tmp_path / f'{i}.jpg')
        cv2.imwrite(path, rng.integers(0, 255, (120, 160, 3), np.uint8))
        files.append(path)
    ms = bcp.decoder_probe(files, reps=2)
    assert set(ms) == {('full', 'cv2')} | {(f'1/{d}', lib)
                                           for d in (2, 4, 8)
                                           for lib in ('cv2', 'PIL')}
    assert all(v > 0 for v in ms.values())
