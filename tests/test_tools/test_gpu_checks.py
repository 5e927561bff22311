# Copyright (c) mmsniper contributors. All rights reserved.
"""benchmarks/gpu: the mmcv ops stand-ins and the results rendering of the
GPU checks (the checks themselves run with ``--device cpu --dry-run``)."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GPU_DIR = osp.join(ROOT, 'benchmarks', 'gpu')


def load(name):
    spec = importlib.util.spec_from_file_location(
        f'mmsniper_gpu_{name}', osp.join(GPU_DIR, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_boxes(num, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (num, 2))
    wh = rng.uniform(5, 60, (num, 2))
    boxes = torch.from_numpy(np.hstack([xy, xy + wh])).float()
    # distinct scores: the two implementations order equal scores apart
    scores = torch.from_numpy(rng.permutation(num) / num + 0.01).float()
    return boxes, scores


@pytest.mark.parametrize('method', [0, 1, 2])
def test_softnms_fallback_matches_mmcv(method):
    from mmcv.utils import ext_loader
    ext = ext_loader.load_ext('_ext', ['softnms'])
    fallback = load('mmcv_ext_fallback')
    boxes, scores = random_boxes(300, seed=method)
    kwargs = dict(iou_threshold=0.3, sigma=0.5, min_score=0.05,
                  method=method, offset=0)
    dets_ref = boxes.new_empty((300, 5))
    keep_ref = ext.softnms(boxes, scores, dets_ref, **kwargs)
    dets = boxes.new_empty((300, 5))
    keep = fallback.softnms(boxes, scores, dets, **kwargs)
    assert len(keep) < 300  # some boxes fell under min_score
    assert keep.tolist() == keep_ref.tolist()
    torch.testing.assert_close(dets[:len(keep)], dets_ref[:len(keep_ref)])


def test_softnms_fallback_empty():
    fallback = load('mmcv_ext_fallback')
    keep = fallback.softnms(torch.zeros(0, 4), torch.zeros(0),
                            torch.zeros(0, 5), 0.3, 0.5, 0.001, 2, 0)
    assert keep.dtype == torch.long and keep.numel() == 0


def test_fallback_ext_module_in_mmcv_ops():
    """With the stand-in ``mmcv._ext``, ``import mmcv.ops`` works, mmcv's
    own ``soft_nms`` runs on it, and an op without a stand-in says so."""
    code = f"""
import sys
sys.path.insert(0, {GPU_DIR!r})
import torch
import mmcv_ext_fallback
assert mmcv_ext_fallback.install(force=True)
import mmcv, mmcv.ops
assert mmcv.ops.nms.__module__ == 'mmcv.ops.nms'
assert sys.modules['mmcv._ext'].softnms is mmcv_ext_fallback.softnms
# mmengine asks pkgutil whether mmcv has its ops (Runner.wrap_model)
from mmengine.utils.dl_utils import mmcv_full_available
assert mmcv_full_available()
boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
dets, keep = mmcv.ops.soft_nms(boxes, torch.tensor([0.9, 0.8, 0.7]),
                               0.3, sigma=0.5, min_score=0.01,
                               method='gaussian')
assert keep.tolist() == [0, 2, 1], keep
assert abs(float(dets[2, 4]) - 0.8 * float(torch.exp(
    torch.tensor(-(81 / 119) ** 2 / 0.5)))) < 1e-5, dets
try:
    mmcv.ops.sigmoid_focal_loss(torch.zeros(1, 2), torch.zeros(1).long())
except NotImplementedError as exc:
    assert 'sigmoid_focal_loss_forward' in str(exc), exc
else:
    raise AssertionError('no NotImplementedError')
print('ok')
"""
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith('ok')


def test_note_error_and_markdown(tmp_path):
    checks = load('gpu_checks')
    out = tmp_path / 'out'
    results = dict(
        env=dict(device_name='GPU X', dry_run=False),
        mmcv_build=dict(status='failed', seconds=12, arch='9.0', jobs=16,
                        patches='', would_take='a patch of x.cu',
                        log_tail='x.cu(3): error: y'),
        chips_vs_full=dict(
            partial=True, config='c.py', optim_wrapper='AmpOptimWrapper',
            warmup=1,
            iters=2, chip_size=512, finest_scale=1.5, workers=0,
            chips=dict(batch_size=2, input_px_per_image=512 * 512,
                       images_per_s_wall=9.0, images_per_s_step=10.0,
                       mpx_per_s_step=2.6, peak_allocated=2**30,
                       peak_reserved=2**31, finite_iters=3, num_iters=3)))
    checks.save_results(str(out), results)
    checks.main(['--out-dir', str(out), '--note-error',
                 'autofocus=stopped at its time limit of 9 s'])
    saved = json.loads((out / checks.RESULTS_JSON).read_text())
    assert saved['errors'] == {
        'autofocus': 'stopped at its time limit of 9 s'}
    text = (out / checks.RESULTS_MD).read_text()
    assert 'status: **failed**' in text and 'x.cu(3): error: y' in text
    assert 'What it would take: a patch of x.cu' in text
    row = '| chips | 2 | 0.26 | 9.00 | 10.00 | 2.6 | 1024 (-) | 2048 | 3/3 |'
    assert row in text
    assert '### autofocus' in text
    assert '*Partial: the check stopped before its end' in text


def test_dry_run_sizes_and_unknown_check():
    checks = load('gpu_checks')
    args = checks.parse_args(['--device', 'cpu', '--dry-run'])
    assert (args.amp_iters, args.iters, args.test_images) == (2, 2, 2)
    assert args.checks == list(checks.CHECKS)
    args = checks.parse_args(['--iters', '7'])
    assert (args.iters, args.amp_iters) == (7, 20)
    with pytest.raises(SystemExit):
        checks.parse_args(['--checks', 'amp,nope'])


def test_train_configs_chips_and_full_images(tmp_path):
    """The checks' config edits: generated data, no pretrained weights,
    fp16 only on the GPU; the full-image baseline loses the chip padding
    and the chip valid-range filter, and resizes by the finest scale."""
    checks = load('gpu_checks')
    args = checks.parse_args(['--device', 'cpu', '--dry-run',
                              '--data-root', str(tmp_path / 'data')])
    chips = checks.setup_train(
        checks.load_config(checks.CONFIG_AMP), args, str(tmp_path / 'w'),
        5, 2, amp=False)
    det = checks.detector_cfg(chips)
    assert det.backbone.init_cfg is None
    assert det.roi_head.bbox_head.num_classes == 3
    assert chips.optim_wrapper.type == 'OptimWrapper'
    assert 'loss_scale' not in chips.optim_wrapper
    assert chips.train_cfg.max_iters == 5
    assert chips.train_dataloader.dataset.type == 'SniperChipDataset'
    assert chips.train_dataloader.dataset.scales == checks.SCALES
    assert chips.train_dataloader.dataset.dataset.data_root == osp.join(
        str(tmp_path / 'data'), '')
    assert chips.model.data_preprocessor.batch_augments
    full = checks.to_full_images(
        checks.setup_train(
            checks.load_config(checks.CONFIG_AMP), args,
            str(tmp_path / 'w'), 5, 2, amp=True), args, 1.5)
    assert full.optim_wrapper.type == 'AmpOptimWrapper'
    assert full.train_dataloader.dataset.type == 'CocoDataset'
    assert dict(type='Resize', scale_factor=1.5, keep_ratio=True) in \
        full.train_dataloader.dataset.pipeline
    assert full.train_dataloader.batch_size == args.full_batch_size
    assert full.model.data_preprocessor.batch_augments is None
    assert not checks.detector_cfg(
        full).roi_head.filter_proposals_by_valid_range
    autofocus = checks.setup_train(
        checks.load_config(checks.CONFIG_AUTOFOCUS), args,
        str(tmp_path / 'w'), 5, 2, amp=False)
    assert autofocus.model.type == 'AutoFocusDetector'
    assert checks.detector_cfg(autofocus).backbone.init_cfg is None
