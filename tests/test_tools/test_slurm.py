"""tools/slurm_train.sh and tools/slurm_test.sh build mmdet's srun command.

A fake ``srun`` first on ``PATH`` records its argv (one per line) and the
``PYTHONPATH`` it was given; in ``run`` mode it then executes the tool
command that follows the srun options, as srun would on each node.
"""
import os
import stat
import sys
from pathlib import Path

import pytest
import tiny_coco as tc
import torch

FAKE_SRUN = r'''#!/usr/bin/env bash
log=$FAKE_SRUN_LOG
: > "$log"
for a in "$@"; do printf '%s\n' "$a" >> "$log"; done
printf 'PYTHONPATH=%s\n' "${PYTHONPATH-<unset>}" > "$log.env"
if [ "${FAKE_SRUN_MODE:-record}" = run ]; then
    # drop the srun options: the task command starts at the interpreter
    while [ "$#" -gt 0 ] && [ "$1" != "$FAKE_SRUN_PYTHON" ]; do shift; done
    exec "$@"
fi
exit "${FAKE_SRUN_RC:-0}"
'''

SRUN_OPTS = ['-p', 'gpu-part', '--job-name=sniper_job']


@pytest.fixture
def fake_srun(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / 'srun_argv.txt'

    def call(script, args, mode='record', **env):
        full_env = tc.tool_env(
            PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
            FAKE_SRUN_LOG=str(log),
            FAKE_SRUN_MODE=mode,
            FAKE_SRUN_PYTHON=sys.executable,
            PYTHON=sys.executable)
        for key in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS'):
            full_env.pop(key, None)
        full_env.update(env)
        res = tc.run(['bash', str(tc.TOOLS / script), *args],
                     env=full_env,
                     timeout=120)
        argv = log.read_text().splitlines() if log.exists() else None
        env_file = Path(f'{log}.env')
        srun_env = (
            dict(line.split('=', 1)
                 for line in env_file.read_text().splitlines())
            if env_file.exists() else None)
        return res, argv, srun_env

    return call


def test_slurm_train_command(fake_srun):
    res, argv, srun_env = fake_srun(
        'slurm_train.sh', [
            'gpu-part', 'sniper_job', 'configs/x.py', 'work_dirs/x',
            '--amp', '--cfg-options', 'a=1', 'name=two words'
        ],
        GPUS='16',
        GPUS_PER_NODE='4',
        CPUS_PER_TASK='3',
        SRUN_ARGS='--time=1:00:00   --qos=high',
        PYTHONPATH='/opt/other')
    assert res.returncode == 0, res.describe()
    assert argv == SRUN_OPTS + [
        '--gres=gpu:4', '--ntasks=16', '--ntasks-per-node=4',
        '--cpus-per-task=3', '--kill-on-bad-exit=1', '--time=1:00:00',
        '--qos=high', sys.executable, '-u',
        str(tc.TOOLS / 'train.py'), 'configs/x.py', '--work-dir=work_dirs/x',
        '--launcher=slurm', '--amp', '--cfg-options', 'a=1', 'name=two words'
    ]
    # the checkout first, the caller's PYTHONPATH kept
    assert srun_env['PYTHONPATH'] == f'{tc.REPO_ROOT}:/opt/other'


def test_slurm_test_command_defaults(fake_srun):
    res, argv, srun_env = fake_srun(
        'slurm_test.sh',
        ['gpu-part', 'sniper_job', 'configs/x.py', 'ckpt.pth', '--tta'])
    assert res.returncode == 0, res.describe()
    # mmdet's defaults: 8 GPUs, 8 per node, 5 CPUs each, no SRUN_ARGS
    assert argv == SRUN_OPTS + [
        '--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', sys.executable, '-u',
        str(tc.TOOLS / 'test.py'), 'configs/x.py', 'ckpt.pth',
        '--launcher=slurm', '--tta'
    ]
    assert srun_env['PYTHONPATH'] == str(tc.REPO_ROOT)


def test_slurm_exit_status_is_srun_s(fake_srun):
    res, argv, _ = fake_srun(
        'slurm_train.sh', ['p', 'j', 'c.py', 'wd'], FAKE_SRUN_RC='3')
    assert res.returncode == 3
    assert argv is not None


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_scripts_usage(fake_srun, script):
    for nargs in (0, 3):
        res, argv, _ = fake_srun(script, ['x'] * nargs)
        assert res.returncode == 2, res.describe()
        assert 'usage:' in res.stderr
        assert 'PARTITION JOB_NAME CONFIG' in res.stderr
        assert argv is None  # srun never called


@pytest.mark.parametrize('var,value', [('GPUS', '0'), ('GPUS_PER_NODE', 'x'),
                                       ('CPUS_PER_TASK', '2.5')])
def test_slurm_bad_counts(fake_srun, var, value):
    res, argv, _ = fake_srun('slurm_train.sh', ['p', 'j', 'c.py', 'wd'],
                             **{var: value})
    assert res.returncode == 2, res.describe()
    assert f'{var} must be a positive integer' in res.stderr
    assert argv is None


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the CPU-only refusal')
def test_slurm_train_runs_tool_and_cpu_refuses(fake_srun, tmp_path):
    """The task command really runs: tools/train.py accepts
    ``--launcher=slurm`` from the checkout (PYTHONPATH) and, without a GPU,
    stops with the clear message rather than mmengine's CUDA error."""
    cfg = tc.write_tiny_config(tmp_path / 'tiny_cfg.py', tmp_path / 'data')
    res, argv, _ = fake_srun(
        'slurm_train.sh', ['p', 'j', str(cfg),
                           str(tmp_path / 'wd')],
        mode='run',
        GPUS='1',
        GPUS_PER_NODE='1')
    assert argv[-2:] == [f'--work-dir={tmp_path / "wd"}', '--launcher=slurm']
    assert res.returncode != 0
    assert 'invalid choice' not in res.stderr, res.describe()
    assert ('No GPU is available and --launcher slurm was given'
            in res.stderr), res.describe()
