"""benchmarks/bench_chip_table_memory.py: the byte count behind
docs/en/user_guides/distributed.md's "30 B per chip plus 4 B per (chip,
valid GT) pair", and a tiny run."""
import os.path as osp
import sys

import numpy as np
from conftest import ROOT

from mmsniper.datasets.chip_table import ChipTable

sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import bench_chip_table_memory as bm  # noqa: E402


def test_table_nbytes_per_chip_and_gt_ref():
    # 3 chips holding 2, 0 and 5 valid GT
    counts = np.array([2, 0, 5])
    table = ChipTable(
        img_idx=[0, 0, 1], scale_idx=[0, 1, 2],
        boxes=np.zeros((3, 4)), is_negative=[False, True, False],
        gt_ptr=np.concatenate([[0], np.cumsum(counts)]),
        gt_index=np.arange(counts.sum()))
    # int32 + int8 + 4 x float32 + bool + int64 offset per chip, one more
    # offset, int32 per GT reference
    assert bm.table_nbytes(table) == 30 * 3 + 8 + 4 * 7
    both = ChipTable.concatenate([table, table])
    assert bm.table_nbytes(both) == 30 * 6 + 8 + 4 * 14


def test_tiny_run_reports_every_table(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, 'argv', [
        'bench_chip_table_memory.py', '--num-images', '12',
        '--proposals-per-image', '20', '--epochs', '1',
        '--data-root', str(tmp_path)  # no COCO file: synthetic workload
    ])
    bm.main()
    out = capsys.readouterr().out
    assert '[synthetic] 12 images' in out
    for key in ("('positive', 0, None)", "('negative', 1, 0)",
                "('with_negatives', 1, 0)"):
        assert key in out
    # at most 20 proposals of 20 B (xyxy + score, float32) per image (the
    # synthetic ones drop degenerate boxes), + 13 int64 offsets
    prop = next(ln for ln in out.splitlines() if 'proposal arrays' in ln)
    assert 300 < int(prop.split()[3]) <= round((12 * 20 * 20 + 13 * 8) / 12)
