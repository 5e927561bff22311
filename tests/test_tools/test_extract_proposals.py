"""tools/extract_proposals.py, tools/dist_extract_proposals.sh and
tools/train_with_negatives.sh: proposals for negative chip mining.

The RPN is the demo RPN config shrunk further, with random weights: nothing
is trained, only the plumbing (scales, rescaling, NMS, output format, part
files, resume, several processes) is checked.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import mmengine
import numpy as np
import pytest
import torch
import tiny_coco as tc
from sniper_test_utils import write_image_dataset

from mmsniper.datasets.proposals import META_KEY, proposal_key


EXTRACT = tc.TOOLS / 'extract_proposals.py'
RPN_DEMO = tc.REPO_ROOT / 'configs' / 'sniper' / \
    'rpn_r18-slim_fpn_sniper-demo_synthetic.py'
IMG_SIZE = (160, 224)  # (h, w)
NUM_IMAGES = 3
TOPK = 50
SCALES = ('0.5', '96,128')

RPN_CONFIG = '''\
_base_ = {base!r}
data_root = {root!r}
metainfo = dict(classes=('a', 'b'))
model = dict(
    backbone=dict(base_channels=16),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16))
train_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(dataset=dict(
        data_root=data_root, metainfo=metainfo, ann_file='ann.json',
        data_prefix=dict(img='images/'))))
'''


def _save_random_weights(config, path, seed=0):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(Config.fromfile(str(config)).model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, str(path))
    return path


def _extract_cmd(config, ckpt, out, *args):
    return [
        sys.executable,
        str(EXTRACT),
        str(config),
        str(ckpt), '--out',
        str(out), *args
    ]


def _load_output(path):
    """The tool's output: (proposals by key, meta entry)."""
    props = mmengine.load(str(path))
    meta = props.pop(META_KEY)
    return props, meta


def _image_table(ann_file):
    coco = json.loads(Path(ann_file).read_text())
    return {
        f"images/{img['file_name']}": (img['id'], img['height'], img['width'])
        for img in coco['images']
    }


def _check_proposals(props, table, max_per_image):
    assert set(props) == set(table)
    for key, value in props.items():
        img_id, height, width = table[key]
        assert set(value) == {'bboxes', 'scores', 'img_id'}
        assert value['img_id'] == img_id and isinstance(value['img_id'], int)
        bboxes, scores = value['bboxes'], value['scores']
        assert bboxes.dtype == np.float32 and scores.dtype == np.float32
        assert bboxes.ndim == 2 and bboxes.shape[1] == 4
        assert 0 < len(bboxes) == len(scores) <= max_per_image
        assert (bboxes[:, 0] >= 0).all() and (bboxes[:, 1] >= 0).all()
        assert (bboxes[:, 2] <= width).all()
        assert (bboxes[:, 3] <= height).all()
        assert (bboxes[:, 2] > bboxes[:, 0]).all()
        assert (bboxes[:, 3] > bboxes[:, 1]).all()
        assert (np.diff(scores) <= 0).all()  # sorted by score


@pytest.fixture(scope='module')
def extracted(tmp_path_factory):
    """One single-process run: 3 images, 2 scales, chunks of 2 images."""
    root = tmp_path_factory.mktemp('extract')
    data = root / 'data'
    ann_file = write_image_dataset(
        str(data), num_images=NUM_IMAGES, size=IMG_SIZE)
    config = root / 'rpn_cfg.py'
    config.write_text(
        RPN_CONFIG.format(base=str(RPN_DEMO), root=str(data) + '/'))
    ckpt = _save_random_weights(config, root / 'rpn.pth')
    out = root / 'out' / 'proposals.pkl'
    res = tc.run_ok(
        _extract_cmd(config, ckpt, out, '--scales', *SCALES, '--topk',
                     str(TOPK), '--chunk-size', '2'))
    print(f'extract_proposals.py, 1 process: {res.seconds:.1f}s')
    return dict(
        root=root,
        config=config,
        ckpt=ckpt,
        out=out,
        result=res,
        table=_image_table(ann_file),
        props=_load_output(out)[0])


def test_output_format(extracted):
    _check_proposals(extracted['props'], extracted['table'],
                     TOPK * len(SCALES))
    out = extracted['result'].output
    assert f'wrote {extracted["out"]}: {NUM_IMAGES} images' in out
    # the RPN's test_cfg and the per-scale NMS are what was asked for
    assert "'iou_threshold': 0.7" in out
    assert f'then NMS 0.7 over all levels, top {TOPK} per scale' in out
    parts = sorted(Path(str(extracted['out']) + '.parts').glob('part-*.pkl'))
    assert len(parts) == 2  # 3 images in chunks of 2


def test_resume_reuses_parts(extracted):
    out = extracted['out']
    parts = sorted(Path(str(out) + '.parts').glob('part-*.pkl'))
    # lose the merged file and the last chunk (1 image): the resumed run
    # skips the 2 images of the first chunk and computes the last one
    out.unlink()
    parts[-1].unlink()
    res = tc.run_ok(
        _extract_cmd(extracted['config'],
                     extracted['ckpt'], out, '--scales', *SCALES, '--topk',
                     str(TOPK), '--resume', '--num-workers', '0'))
    print(f'extract_proposals.py --resume: {res.seconds:.1f}s')
    assert 'resume: 2 images skipped' in res.output, res.describe()
    assert '1 computed in this run' in res.output, res.describe()
    props = _load_output(out)[0]
    assert set(props) == set(extracted['props'])
    for key, value in props.items():
        np.testing.assert_allclose(
            value['bboxes'],
            extracted['props'][key]['bboxes'],
            rtol=1e-5,
            atol=1e-3)
        np.testing.assert_allclose(
            value['scores'],
            extracted['props'][key]['scores'],
            rtol=1e-5,
            atol=1e-6)


def test_two_processes_share_the_images(extracted, tmp_path):
    out = tmp_path / 'proposals.pkl'
    env = tc.tool_env(
        PYTHON=sys.executable,
        PORT=str(tc.free_port()),
        MASTER_ADDR='127.0.0.1')
    res = tc.run_ok([
        'bash',
        str(tc.TOOLS / 'dist_extract_proposals.sh'),
        str(extracted['config']),
        str(extracted['ckpt']), '2', '--out',
        str(out), '--scales', *SCALES, '--topk',
        str(TOPK), '--num-workers', '0'
    ],
                    env=env,
                    timeout=300)
    print(f'dist_extract_proposals.sh x2: {res.seconds:.1f}s')
    for rank in range(2):
        assert (f'CPU distributed run: rank {rank} of world_size 2, '
                'backend gloo') in res.output, res.describe()
    props = _load_output(out)[0]
    assert set(props) == set(extracted['props'])
    _check_proposals(props, extracted['table'], TOPK * len(SCALES))
    # each rank wrote its own share
    parts = [p.name for p in Path(str(out) + '.parts').glob('part-*.pkl')]
    assert any(p.startswith('part-r000-') for p in parts)
    assert any(p.startswith('part-r001-') for p in parts)
    for key, value in props.items():  # same model, same images
        np.testing.assert_allclose(
            value['scores'],
            extracted['props'][key]['scores'],
            rtol=1e-4,
            atol=1e-5)


def test_from_detections_of_faster_rcnn(tmp_path):
    data = tmp_path / 'data'
    ann_file = tc.make_tiny_coco(data, num_images=2)
    config = tc.write_tiny_config(tmp_path / 'frcnn.py', data)
    ckpt = _save_random_weights(config, tmp_path / 'frcnn.pth')
    out = tmp_path / 'dets.pkl'
    res = tc.run_ok(
        _extract_cmd(config, ckpt, out, '--from-detections', '--score-thr',
                     '0.0', '--scales', '1.0', '64,64', '--topk', '20',
                     '--num-workers', '0'))
    print(f'extract_proposals.py --from-detections: {res.seconds:.1f}s')
    assert 'final detections of 2 train images' in res.output
    coco = json.loads(Path(ann_file).read_text())
    table = {
        f"images/{img['file_name']}": (img['id'], img['height'], img['width'])
        for img in coco['images']
    }
    _check_proposals(_load_output(out)[0], table, 40)


def test_scale_parsing_and_keys():
    spec = importlib.util.spec_from_file_location('mmsniper_extract_tool',
                                                  EXTRACT)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.parse_scale('1.5') == 1.5
    assert tool.parse_scale('1400,2000') == (1400.0, 2000.0)
    assert tool.parse_scale([-1, 512]) == (-1.0, 512.0)
    _, args = tool.parse_args(
        ['c.py', 'k.pth', '--out', 'o.pkl', '--scales', '-1,512', '0.5'])
    assert args.scales == [(-1.0, 512.0), 0.5]
    assert proposal_key('/data/coco/train2017/000001.jpg') == \
        'train2017/000001.jpg'
    with pytest.raises(SystemExit):
        tool.parse_args(['c.py', 'k.pth', '--out', 'o.json'])
    with pytest.raises(SystemExit):  # --force only with --resume
        tool.parse_args(['c.py', 'k.pth', '--out', 'o.pkl', '--force'])


def test_train_with_negatives_usage():
    script = tc.TOOLS / 'train_with_negatives.sh'
    proc = subprocess.run(['bash', str(script)],
                          cwd=str(tc.REPO_ROOT),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True,
                          env=dict(os.environ))
    assert proc.returncode == 2
    assert 'usage:' in proc.stderr and 'RPN_CONFIG DET_CONFIG WORK_DIR' in \
        proc.stderr
    proc = subprocess.run(['bash', str(script), '--help'],
                          cwd=str(tc.REPO_ROOT),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE,
                          text=True)
    assert proc.returncode == 0 and 'usage:' in proc.stdout


# --------------------------------------------------------------------------
# resume: only parts of the same checkpoint and settings (issue 7, item 7)


def _copy_run(extracted, dest):
    """A copy of the fixture's output and parts under ``dest``."""
    import shutil
    out = dest / 'proposals.pkl'
    shutil.copytree(str(extracted['out']) + '.parts', str(out) + '.parts')
    if extracted['out'].exists():
        shutil.copyfile(extracted['out'], out)
    return out


def _file_sha256(path):
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _other_weights(extracted, path):
    """The fixture's RPN with other random weights (a 'newer' checkpoint)."""
    return _save_random_weights(extracted['config'], path, seed=1)


def test_output_and_parts_record_checkpoint_and_settings(extracted):
    props, meta = _load_output(extracted['out'])
    settings = meta['settings']
    assert settings['checkpoint_sha256'] == _file_sha256(extracted['ckpt'])
    assert settings['topk'] == TOPK
    assert settings['scales'] == [0.5, [96.0, 128.0]]
    assert settings['mode'] == 'rpn' and settings['split'] == 'train'
    assert meta['info']['checkpoint'] == str(extracted['ckpt'])
    for part in Path(str(extracted['out']) + '.parts').glob('part-*.pkl'):
        assert mmengine.load(str(part))[META_KEY] == meta


def test_resume_refuses_parts_of_another_checkpoint(extracted, tmp_path):
    """Before: a resumed run for a new checkpoint reused the old one's
    proposals (2 of 3 images here); now it stops, naming the difference,
    and leaves the files alone."""
    out = _copy_run(extracted, tmp_path)
    (Path(str(out) + '.parts') / sorted(
        p.name for p in Path(str(out) + '.parts').glob('part-*'))[-1]
     ).unlink()  # a cut run: one chunk missing
    before = sorted(p.name for p in Path(str(out) + '.parts').iterdir())
    new_ckpt = _other_weights(extracted, tmp_path / 'rpn_new.pth')
    res = tc.run(
        _extract_cmd(extracted['config'], new_ckpt, out, '--scales', *SCALES,
                     '--topk', str(TOPK), '--resume', '--num-workers', '0'))
    assert res.returncode != 0, res.describe()
    assert 'StaleParts' in res.stderr and 'checkpoint_sha256' in res.stderr
    assert _file_sha256(new_ckpt)[:12] in res.stderr
    assert '--resume --force' in res.stderr
    assert sorted(p.name for p in Path(str(out) + '.parts').iterdir()) == \
        before
    assert _load_output(out)[1]['settings']['checkpoint_sha256'] == \
        _file_sha256(extracted['ckpt'])


def test_resume_refuses_other_settings(extracted, tmp_path):
    """Before: --resume with another --topk silently mixed both."""
    out = _copy_run(extracted, tmp_path)
    res = tc.run(
        _extract_cmd(extracted['config'], extracted['ckpt'], out, '--scales',
                     *SCALES, '--topk', str(TOPK + 1), '--resume',
                     '--num-workers', '0'))
    assert res.returncode != 0, res.describe()
    assert f'topk: {TOPK} there, {TOPK + 1} now' in res.stderr


def test_resume_force_recomputes_stale_images(extracted, tmp_path):
    out = _copy_run(extracted, tmp_path)
    new_ckpt = _other_weights(extracted, tmp_path / 'rpn_new.pth')
    res = tc.run_ok(
        _extract_cmd(extracted['config'], new_ckpt, out, '--scales', *SCALES,
                     '--topk', str(TOPK), '--resume', '--force',
                     '--num-workers', '0'))
    assert '--force: deleting them' in res.output, res.describe()
    assert 'resume: 0 images skipped' in res.output
    assert f'{NUM_IMAGES} computed in this run' in res.output
    props, meta = _load_output(out)
    assert meta['settings']['checkpoint_sha256'] == _file_sha256(new_ckpt)
    _check_proposals(props, extracted['table'], TOPK * len(SCALES))
    old = extracted['props']
    assert any(not np.array_equal(props[k]['scores'], old[k]['scores'])
               for k in props)
    for part in Path(str(out) + '.parts').glob('part-*.pkl'):
        assert mmengine.load(str(part))[META_KEY] == meta


class _Payload:
    """Unpickling it runs a shell command that writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_resume_does_not_run_code_from_a_part_file(extracted, tmp_path):
    """Before: --resume pickle.load-ed every part file; a planted part ran
    its payload. Now the restricted unpickler refuses it, naming the file
    and the global; only --trust-parts would run it."""
    import pickle
    out = _copy_run(extracted, tmp_path)
    marker = tmp_path / 'PWNED'
    planted = Path(str(out) + '.parts') / 'part-r000-zzz-000000.pkl'
    planted.write_bytes(
        pickle.dumps({'images/x.jpg': dict(img_id=_Payload(marker))}))
    cmd = _extract_cmd(extracted['config'], extracted['ckpt'], out,
                       '--scales', *SCALES, '--topk', str(TOPK), '--resume',
                       '--num-workers', '0')
    res = tc.run(cmd)
    assert res.returncode != 0, res.describe()
    assert not marker.exists()
    assert 'ProposalFileError' in res.stderr and str(planted) in res.stderr
    assert 'posix.system' in res.stderr and '--trust-parts' in res.stderr
    # the explicit switch is the only way it runs (then the part, which
    # records no settings, is refused as stale)
    res = tc.run(cmd + ['--trust-parts'])
    assert marker.exists(), res.describe()
    assert res.returncode != 0 and 'no settings recorded' in res.stderr


def test_train_with_negatives_does_not_reuse_stale_proposals(
        extracted, tmp_path):
    """The state an older script left after a cut step 2: proposals.pkl of
    the previous RPN checkpoint and a stamp naming the new one. Before, the
    rerun resumed and kept all 3 stale images; now step 2 computes them
    with the new checkpoint."""
    work = tmp_path / 'work'
    work.mkdir()
    out = _copy_run(extracted, work)
    new_ckpt = _other_weights(extracted, work / 'rpn_new.pth')
    (work / 'rpn').mkdir()
    (work / 'rpn' / 'last_checkpoint').write_text(str(new_ckpt))
    mtime = int(new_ckpt.stat().st_mtime)
    Path(str(out) + '.checkpoint').write_text(f'{new_ckpt} {mtime}\n')
    for part in Path(str(out) + '.parts').glob('part-*.pkl'):
        part.unlink()
    log = tmp_path / 'train_calls.log'
    fake = tmp_path / 'python'  # tools/train.py calls are only recorded
    fake.write_text('#!/usr/bin/env bash\n'
                    'case "$1" in */train.py) echo "$@" >> '
                    f'"{log}"; exit 0;; esac\n'
                    f'exec "{sys.executable}" "$@"\n')
    fake.chmod(0o755)
    res = tc.run_ok([
        'bash',
        str(tc.TOOLS / 'train_with_negatives.sh'),
        str(extracted['config']),
        str(extracted['config']),
        str(work)
    ],
                    env=tc.tool_env(
                        PYTHON=str(fake),
                        EXTRACT_ARGS=f'--scales {" ".join(SCALES)} --topk '
                        f'{TOPK} --num-workers 0'),
                    timeout=300)
    assert f'{NUM_IMAGES} computed in this run' in res.output, res.describe()
    props, meta = _load_output(out)
    assert meta['settings']['checkpoint_sha256'] == _file_sha256(new_ckpt)
    old = extracted['props']
    assert any(not np.array_equal(props[k]['scores'], old[k]['scores'])
               for k in props)
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    assert f'neg_proposals.file={out}' in calls[1]
