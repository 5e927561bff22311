"""tools/train.py and tools/test.py, run as users run them (subprocesses
from the repo root) on a tiny COCO set with a tiny plain-mmdet Faster R-CNN.
"""
import pickle

import pytest
import torch
import tiny_coco as tc


WEIGHTS_ONLY_ERROR = 'Weights only load failed'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(a) 2 training iterations, checkpoint every iteration."""
    root = tmp_path_factory.mktemp('tools')
    tc.make_tiny_coco(root / 'data')
    cfg = tc.write_tiny_config(root / 'tiny_cfg.py', root / 'data')
    work_dir = root / 'work_dir'
    res = tc.run_ok(tc.train_cmd(cfg, work_dir))
    print(f'train 2 iters: {res.seconds:.1f}s')
    return dict(root=root, cfg=cfg, work_dir=work_dir, result=res)


def test_train_writes_checkpoints(trained):
    work_dir = trained['work_dir']
    assert (work_dir / 'iter_1.pth').is_file()
    assert (work_dir / 'iter_2.pth').is_file()
    assert tc.last_checkpoint(work_dir) == work_dir / 'iter_2.pth'
    log = tc.read_logs(work_dir)
    assert 'Iter(train) [2/2]' in log
    assert 'Saving checkpoint at 2 iterations' in log
    # run from the checkout without PYTHONPATH: the tool put the checkout
    # first on sys.path (an installed copy may sit in site-packages)
    assert f"imported from {tc.REPO_ROOT / 'mmsniper'}" in log
    # the dumped config records our tiny model
    assert (work_dir / 'tiny_cfg.py').is_file()
    ckpt = torch.load(
        work_dir / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 2
    assert ckpt['state_dict']['roi_head.bbox_head.fc_cls.weight'].shape[
        0] == len(tc.CLASSES) + 1


def test_resume_continues_from_iter_2(trained):
    """(b) auto ``--resume`` loads the mmengine checkpoint (not weights-only)
    from the trusted work_dir and trains iteration 3."""
    work_dir = trained['work_dir']
    res = tc.run_ok(
        tc.train_cmd(trained['cfg'], work_dir, '--resume', '--cfg-options',
                     'train_cfg.max_iters=3'))
    print(f'resume to 3 iters: {res.seconds:.1f}s')
    assert WEIGHTS_ONLY_ERROR not in res.output
    log = tc.read_logs(work_dir)
    ckpt2 = work_dir / 'iter_2.pth'
    assert f'Auto resumed from the latest checkpoint {ckpt2}' in log
    assert 'resumed epoch: 0, iter: 2' in log
    # the allow-list registered by ``import mmsniper`` loads it
    # weights-only: the trust fallback is not needed
    assert 'is not weights-only' not in log
    assert 'Iter(train) [3/3]' in log
    assert 'Iter(train) [1/3]' not in log
    assert (work_dir / 'iter_3.pth').is_file()
    assert tc.last_checkpoint(work_dir) == work_dir / 'iter_3.pth'


def test_test_py_evaluates_and_dumps(trained, tmp_path):
    """(c) ``tools/test.py CONFIG CKPT --out results.pkl``."""
    ckpt = trained['work_dir'] / 'iter_2.pth'
    out = tmp_path / 'results.pkl'
    res = tc.run_ok(
        tc.eval_cmd(trained['cfg'], ckpt, tmp_path / 'test_wd', '--out',
                    str(out)))
    print(f'test.py: {res.seconds:.1f}s')
    assert WEIGHTS_ONLY_ERROR not in res.output
    assert 'bbox_mAP' in res.output
    assert 'coco/bbox_mAP:' in res.output
    # loaded weights-only (allow-list), no trust fallback
    assert 'is not weights-only' not in res.output
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 4
    assert {'pred_instances', 'img_id'} <= set(results[0])


@pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the CPU-only --amp error')
def test_amp_without_gpu_fails_early(tmp_path):
    cfg = tc.write_tiny_config(tmp_path / 'cfg.py', tmp_path / 'no_data')
    res = tc.run(tc.train_cmd(cfg, tmp_path / 'wd', '--amp'), timeout=120)
    assert res.returncode == 2, res.describe()
    assert 'needs a GPU' in res.stderr
    assert 'fp16' in res.stderr
    assert 'config itself loaded fine' in res.stderr
    # nothing was built: no work dir, no runner
    assert not (tmp_path / 'wd').exists()


def test_mmdet_init_detector_loads_the_checkpoint(trained, tmp_path):
    """Before: on torch >= 2.6 mmdet's init_detector failed on our
    checkpoint (HistoryBuffer is not weights-only safe). Now a config that
    names mmsniper in custom_imports is enough, in a fresh interpreter that
    never imports mmsniper itself."""
    import subprocess
    import sys
    cfg = tmp_path / 'with_mmsniper.py'
    cfg.write_text(f"_base_ = {str(trained['cfg'])!r}\n"
                   "custom_imports = dict(imports=['mmsniper'], "
                   "allow_failed_imports=False)\n")
    ckpt = trained['work_dir'] / 'iter_2.pth'
    code = ('import sys\n'
            'from mmdet.apis import init_detector\n'
            f'model = init_detector({str(cfg)!r}, {str(ckpt)!r}, '
            "device='cpu')\n"
            "print('LOADED', type(model).__name__, 'mmsniper' in sys.modules)")
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=str(tmp_path),
                          env=tc.tool_env(PYTHONPATH=str(tc.REPO_ROOT)),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'LOADED FasterRCNN True' in proc.stdout
    assert WEIGHTS_ONLY_ERROR not in proc.stdout


def test_test_py_tta_sniper_model_on_a_plain_config(trained, tmp_path):
    """``--tta`` with a SniperTTAModel given only on the command line: the
    tool uses the test pipeline without its Resize (the model resizes) and
    adds the stats hook, which logs the pixels next to the metric."""
    ckpt = trained['work_dir'] / 'iter_2.pth'
    res = tc.run_ok(
        tc.eval_cmd(trained['cfg'], ckpt, tmp_path / 'tta_wd', '--tta',
                    '--cfg-options', 'tta_model.type=SniperTTAModel',
                    'tta_model.scales=[1.0,0.5]',
                    'tta_model.valid_ranges=[(-1,40),(20,-1)]'))
    assert 'coco/bbox_mAP:' in res.output
    assert 'SNIPER test: 4 images' in res.output
    # 128 x 128 at 1.0x and 0.5x
    assert 'sniper/Mpx_per_img: 0.0205' in res.output
    assert 'sniper/Mpx_per_img_scale1: 0.0041' in res.output
