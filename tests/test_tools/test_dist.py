"""tools/dist_train.sh and tools/dist_test.sh really start several
processes (torchrun); on CPU they use gloo."""
import sys

import pytest
import tiny_coco as tc


NPROC = 2


def _dist_env():
    return tc.tool_env(
        PYTHON=sys.executable,
        PORT=str(tc.free_port()),
        MASTER_ADDR='127.0.0.1',
        OMP_NUM_THREADS='1')


@pytest.fixture(scope='module')
def dist_trained(tmp_path_factory):
    """(e) ``bash tools/dist_train.sh CONFIG 2 ...``: 2 processes, gloo."""
    root = tmp_path_factory.mktemp('dist')
    tc.make_tiny_coco(root / 'data')
    cfg = tc.write_tiny_config(root / 'tiny_cfg.py', root / 'data')
    work_dir = root / 'work_dir'
    res = tc.run_ok([
        'bash',
        str(tc.TOOLS / 'dist_train.sh'),
        str(cfg),
        str(NPROC), '--work-dir',
        str(work_dir), '--cfg-options', 'env_cfg.dist_cfg.backend=gloo'
    ],
                    env=_dist_env(),
                    timeout=300)
    print(f'dist_train.sh x{NPROC}: {res.seconds:.1f}s')
    return dict(root=root, cfg=cfg, work_dir=work_dir, result=res)


def test_dist_train_runs_two_processes(dist_trained):
    out = dist_trained['result'].output
    work_dir = dist_trained['work_dir']
    # each process reports itself before the runner exists
    for rank in range(NPROC):
        assert (f'CPU distributed run: rank {rank} of world_size {NPROC}, '
                'backend gloo') in out, dist_trained['result'].describe()
    log = tc.read_logs(work_dir)
    assert 'Distributed launcher: pytorch' in log
    assert 'Distributed training: True' in log
    assert f'launcher: pytorch, world_size: {NPROC}' in log
    assert 'Iter(train) [2/2]' in log
    assert (work_dir / 'iter_2.pth').is_file()
    # backend=gloo was given, so no "using gloo instead of nccl" warning
    assert 'instead of the configured' not in out


def test_dist_test_runs_two_processes(dist_trained, tmp_path):
    ckpt = dist_trained['work_dir'] / 'iter_2.pth'
    out_pkl = tmp_path / 'results.pkl'
    res = tc.run_ok([
        'bash',
        str(tc.TOOLS / 'dist_test.sh'),
        str(dist_trained['cfg']),
        str(ckpt),
        str(NPROC), '--work-dir',
        str(tmp_path / 'test_wd'), '--out',
        str(out_pkl)
    ],
                    env=_dist_env(),
                    timeout=300)
    print(f'dist_test.sh x{NPROC}: {res.seconds:.1f}s')
    for rank in range(NPROC):
        assert f'rank {rank} of world_size {NPROC}' in res.output
    # nccl from mmdet's default_runtime is swapped for gloo on CPU
    assert 'using the gloo backend' in res.output
    assert 'coco/bbox_mAP:' in res.output
    assert out_pkl.is_file()


@pytest.mark.parametrize('script,nargs', [('dist_train.sh', 1),
                                          ('dist_test.sh', 2)])
def test_dist_scripts_usage(script, nargs):
    res = tc.run(['bash', str(tc.TOOLS / script)] + ['x'] * nargs, timeout=30)
    assert res.returncode == 2
    assert 'usage:' in res.stderr
