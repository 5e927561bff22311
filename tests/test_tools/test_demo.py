# Copyright (c) mmsniper contributors. All rights reserved.
"""tools/demo.py: the settings that make its figures reproducible."""
import argparse
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'tools', 'demo.py')


def load_demo():
    spec = importlib.util.spec_from_file_location('mmsniper_demo_tool', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_config_evaluates_once_and_is_seeded(tmp_path):
    demo = load_demo()
    args = argparse.Namespace(
        config=demo.DEFAULT_CONFIG,
        data_root=str(tmp_path / 'data'),
        work_dir=str(tmp_path / 'work'),
        max_iters=8,
        num_train=2,
        num_val=1,
        seed=0)
    cfg = demo.build_config(args)
    # no validation loop: mmengine's IterBasedTrainLoop would otherwise
    # validate after the last iteration, before runner.test() does
    assert cfg.val_dataloader is None and cfg.val_cfg is None
    assert cfg.val_evaluator is None
    assert cfg.test_dataloader.dataset.data_root == osp.join(
        str(tmp_path / 'data'), '')
    assert cfg.train_cfg.max_iters == 8
    assert cfg.param_scheduler[0].end == cfg.param_scheduler[1].begin == 2
    assert cfg.randomness.seed == 0
    assert cfg.load_from is None
    # --checkpoint: the runner loads it and the demo skips training
    args.checkpoint = str(tmp_path / 'iter_300.pth')
    assert demo.build_config(args).load_from == args.checkpoint
    # --cfg-options reach the config (e.g. the test's settings)
    args.cfg_options = {'tta_model.valid_ranges': [(-1, 60), (20, 250),
                                                   (100, -1)]}
    cfg = demo.build_config(args)
    assert cfg.tta_model.valid_ranges == [(-1, 60), (20, 250), (100, -1)]


def _pin_in_fresh_interpreter(env, threads=2):
    code = ('import importlib.util, json, sys\n'
            f'spec = importlib.util.spec_from_file_location("d", {DEMO!r})\n'
            'm = importlib.util.module_from_spec(spec)\n'
            'spec.loader.exec_module(m)\n'
            'assert "torch" not in sys.modules\n'
            f'print(json.dumps(m.pin_cpu_arithmetic({threads})))\n')
    out = subprocess.run([sys.executable, '-c', code],
                         env=env,
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pin_cpu_arithmetic_before_torch():
    """The AVX2 kernels (never AVX-512) and the thread count are in force
    once torch is imported."""
    pinned = load_demo().REPRODUCIBLE_CPU_ENV
    env = {k: v for k, v in os.environ.items() if k not in pinned}
    got = _pin_in_fresh_interpreter(env, threads=2)
    assert got['threads'] == 2
    import torch
    native = torch.backends.cpu.get_cpu_capability()
    if native in ('AVX2', 'AVX512'):
        assert got['cpu_capability'] == 'AVX2'
    else:  # no AVX2 (or not x86): nothing wider to turn off
        assert got['cpu_capability'] == native
    # a user's own setting wins
    env['ATEN_CPU_CAPABILITY'] = 'default'
    got = _pin_in_fresh_interpreter(env, threads=1)
    assert got == dict(threads=1, cpu_capability='DEFAULT')


def test_pin_cpu_arithmetic_rejects_zero_threads():
    with pytest.raises(ValueError, match='--threads'):
        load_demo().pin_cpu_arithmetic(0)
