"""Batch inference over a folder: ``inference_sniper(on_error=...)`` and
``tools/infer.py`` (= ``demo/image_demo.py``): COCO results file, pictures,
progress, ``--ann`` ids, resume, atomic saves, bad images named, skipped and
listed (issue 19 item 8, issue 21 item 3).

The model is the demo config's slim Faster R-CNN with seeded random weights
(no training) on 64 x 96 px images at one scale: each run takes a second.
"""
import importlib.util
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import tiny_coco as tc

DEMO_CONFIG = (
    tc.REPO_ROOT / 'configs/sniper' /
    'faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py')
CLASSES = ('vehicle', 'roof', 'tank')
# images over 10,000 px are refused by the loader's header check
MAX_PIXELS = 10000
ONE_SCALE = [
    '--cfg-options', 'tta_model.scales=[1.0]',
    'tta_model.valid_ranges=[(-1,-1)]', 'model.test_cfg.rcnn.max_per_img=10',
    f'tta_pipeline.0.max_image_pixels={MAX_PIXELS}'
]
GOOD = ('a.jpg', 'c.jpg', 'sub/e.png')
BAD = ('b_empty.jpg', 'd_text.png', 'f_truncated.jpg', 'g_large.png')


def _load_infer():
    spec = importlib.util.spec_from_file_location(
        'mmsniper_tools_infer_test', str(tc.REPO_ROOT / 'tools/infer.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


infer = _load_infer()


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine, 10x faster here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmdet.registry import MODELS
    DefaultScope.get_instance('test_infer_ckpt', scope_name='mmdet')
    cfg = Config.fromfile(str(DEMO_CONFIG))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp('infer_ckpt') / 'random.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=CLASSES))), path)
    return path


def _write_images(folder: Path, names=GOOD, seed=0):
    rng = np.random.RandomState(seed)
    for name in names:
        img = rng.randint(0, 60, (64, 96, 3)).astype(np.uint8)
        x, y = rng.randint(0, 50), rng.randint(0, 30)
        img[y:y + 30, x:x + 40] = rng.randint(120, 255, 3)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(folder / name), img)
    return folder


def _write_bad_images(folder: Path):
    """Empty, not an image, truncated, over the pixel limit."""
    (folder / 'b_empty.jpg').write_bytes(b'')
    (folder / 'd_text.png').write_text('not an image\n')
    data = (folder / 'a.jpg').read_bytes()
    (folder / 'f_truncated.jpg').write_bytes(data[:len(data) * 2 // 3])
    assert cv2.imwrite(str(folder / 'g_large.png'),
                       np.zeros((100, 101, 3), np.uint8))


@pytest.fixture
def good_dir(tmp_path):
    return _write_images(tmp_path / 'images')


@pytest.fixture
def bad_dir(tmp_path):
    folder = _write_images(tmp_path / 'images')
    _write_bad_images(folder)
    return folder


@pytest.fixture(scope='module')
def model(ckpt):
    from mmsniper.apis import init_sniper_detector
    return init_sniper_detector(
        str(DEMO_CONFIG),
        str(ckpt),
        cfg_options={
            'model.test_cfg.rcnn.max_per_img': 10,
            'tta_pipeline.0.max_image_pixels': MAX_PIXELS
        },
        tta_model=dict(scales=[1.0], valid_ranges=[(-1, -1)]))


def _infer(folder, ckpt, out_dir, *extra):
    return infer.main([
        str(folder),
        str(DEMO_CONFIG),
        str(ckpt), '--out-dir',
        str(out_dir), '--score-thr', '0', *extra, *ONE_SCALE
    ])


def _preds(out_dir):
    return json.loads((Path(out_dir) / 'predictions.json').read_text())


def _key(entry):
    return (str(entry['image_id']), entry['category_id'],
            tuple(entry['bbox']), entry['score'])


# --------------------------------------------------------------------------
# the Python API
# --------------------------------------------------------------------------
def test_api_skips_bad_images_names_them_and_runs_the_rest(model, bad_dir):
    from mmsniper.apis import InferenceResults
    from mmsniper.datasets.image_io import ImageDecodeError
    names = sorted(GOOD + BAD)
    assert names[:5] == ['a.jpg', 'b_empty.jpg', 'c.jpg', 'd_text.png',
                         'f_truncated.jpg']
    files = [str(bad_dir / n) for n in names]
    inference_sniper = _api()
    # before: the first bad file stopped the folder with a raw cv2 error
    with pytest.raises(ImageDecodeError, match='b_empty.jpg'):
        inference_sniper(model, str(bad_dir))
    with pytest.warns(UserWarning, match='d_text.png'):
        results = inference_sniper(model, str(bad_dir), on_error='skip')
    assert isinstance(results, InferenceResults)
    assert [r is None for r in results] == [n in BAD for n in names]
    assert [(f.index, f.name) for f in results.failures] == [
        (i, f) for i, (n, f) in enumerate(zip(names, files)) if n in BAD
    ]
    assert all(f.name in f.error for f in results.failures)
    assert 'truncated' in results.failures[2].error
    assert 'max_image_pixels' in results.failures[3].error
    assert [r.img_path for r in results if r is not None] == [
        str(bad_dir / n) for n in names if n in GOOD
    ]
    # a bad image in a batch: its neighbour gets the result it gets alone
    alone = inference_sniper(model, files[2])
    with pytest.warns(UserWarning):
        batched = inference_sniper(
            model, files[1:3], batch_size=2, on_error='skip')
    assert batched[0] is None
    assert torch.equal(batched[1].pred_instances.bboxes,
                       alone.pred_instances.bboxes)
    # a missing file in a list is skipped too; a single file always raises
    with pytest.warns(UserWarning, match='missing.jpg does not exist'):
        out = inference_sniper(
            model, [files[0], str(bad_dir / 'missing.jpg')], on_error='skip')
    assert out[1] is None and out.failures[0].index == 1
    with pytest.raises(ImageDecodeError, match='d_text.png'):
        inference_sniper(model, files[3], on_error='skip')
    with pytest.raises(ValueError, match='on_error'):
        inference_sniper(model, files[0], on_error='ignore')


def _api():
    from mmsniper.apis import inference_sniper
    return inference_sniper


# --------------------------------------------------------------------------
# tools/infer.py
# --------------------------------------------------------------------------
def test_infer_writes_coco_results_pictures_and_progress(
        ckpt, good_dir, tmp_path, capsys, model):
    from pycocotools.coco import COCO
    out_dir = tmp_path / 'out'
    assert _infer(good_dir, ckpt, out_dir) == 0
    text = capsys.readouterr().out
    assert '3/3' in text and 'task/s' in text  # mmengine's progress bar
    preds = _preds(out_dir)
    assert {p['image_id'] for p in preds} == set(GOOD)
    assert {p['category_id'] for p in preds} <= {0, 1, 2}
    # pycocotools accepts it (against a ground truth with these ids)
    gt = COCO()
    gt.dataset = dict(
        images=[dict(id=n, file_name=n, width=96, height=64) for n in GOOD],
        annotations=[],
        categories=[dict(id=i, name=c) for i, c in enumerate(CLASSES)])
    gt.createIndex()
    dt = gt.loadRes(preds)
    assert len(dt.getAnnIds()) == len(preds) > 0
    # xywh in original px: the API's xyxy boxes of the same image
    result = _api()(model, str(good_dir / 'c.jpg'))
    inst = result.pred_instances
    boxes = inst.bboxes.numpy()
    expected = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    mine = [p for p in preds if p['image_id'] == 'c.jpg']
    assert len(mine) == len(boxes)
    np.testing.assert_allclose([p['bbox'] for p in mine], expected, atol=0.01)
    assert [p['category_id'] for p in mine] == inst.labels.tolist()
    # one picture per image, at the image's size, same relative path
    vis = sorted(p.relative_to(out_dir / 'vis').as_posix()
                 for p in (out_dir / 'vis').rglob('*') if p.is_file())
    assert vis == sorted(GOOD)
    assert cv2.imread(str(out_dir / 'vis/sub/e.png')).shape == (64, 96, 3)


def test_infer_ann_gives_coco_image_and_category_ids(ckpt, good_dir,
                                                     tmp_path):
    from pycocotools.coco import COCO
    plain = tmp_path / 'plain'
    assert _infer(good_dir, ckpt, plain, '--no-vis') == 0
    assert not (plain / 'vis').exists()  # --no-vis: no pictures at all
    # file_name with a folder prefix matches by base name; categories in
    # another order and with other ids than the model's labels
    ann = tmp_path / 'ann.json'
    ann.write_text(
        json.dumps(
            dict(
                images=[
                    dict(id=101, file_name='a.jpg', width=96, height=64),
                    dict(id=102, file_name='val/c.jpg', width=96, height=64),
                    dict(id=103, file_name='sub/e.png', width=96, height=64),
                    dict(id=104, file_name='unused.jpg', width=96, height=64)
                ],
                annotations=[],
                categories=[
                    dict(id=7, name='tank'),
                    dict(id=3, name='vehicle'),
                    dict(id=5, name='roof')
                ])))
    with_ann = tmp_path / 'with_ann'
    assert _infer(good_dir, ckpt, with_ann, '--ann', str(ann),
                  '--no-vis') == 0
    assert not (with_ann / 'vis').exists()
    ids = {'a.jpg': 101, 'c.jpg': 102, 'sub/e.png': 103}
    cats = {0: 3, 1: 5, 2: 7}  # vehicle, roof, tank
    expected = [
        dict(p, image_id=ids[p['image_id']], category_id=cats[
            p['category_id']]) for p in _preds(plain)
    ]
    assert _preds(with_ann) == expected
    dt = COCO(str(ann)).loadRes(str(with_ann / 'predictions.json'))
    assert len(dt.getAnnIds()) == len(expected) > 0


def test_infer_ann_without_the_image_is_refused_before_any_work(
        ckpt, good_dir, tmp_path, capsys):
    ann = tmp_path / 'ann.json'
    ann.write_text(
        json.dumps(
            dict(
                images=[dict(id=1, file_name='a.jpg')],
                categories=[dict(id=1, name=c) for c in CLASSES])))
    assert _infer(good_dir, ckpt, tmp_path / 'out', '--ann', str(ann)) == 2
    err = capsys.readouterr().err
    assert 'c.jpg' in err and 'sub/e.png' in err and str(ann) in err
    assert _preds(tmp_path / 'out') == []


def test_infer_bad_images_are_named_skipped_and_listed_exit_1(
        ckpt, bad_dir, tmp_path, capsys):
    out_dir = tmp_path / 'out'
    assert _infer(bad_dir, ckpt, out_dir, '--batch-size', '2') == 1
    captured = capsys.readouterr()
    skipped = [x for x in captured.err.splitlines() if 'skipped:' in x]
    assert len(skipped) == len(BAD)
    listing = captured.out.split('4 of 7 images could not be read')[1]
    for name, line in zip(BAD, skipped):
        assert str(bad_dir / name) in line
        assert str(bad_dir / name) in listing
    # the others (before and after each bad one, in the same batch) are done
    assert {p['image_id'] for p in _preds(out_dir)} == set(GOOD)
    assert sorted(os.listdir(out_dir / 'vis')) == ['a.jpg', 'c.jpg', 'sub']
    record = json.loads((out_dir / 'predictions.done.json').read_text())
    assert sorted(record['done']) == sorted(GOOD)
    assert sorted(record['failed']) == list(BAD)
    # a rerun retries only the bad ones
    assert _infer(bad_dir, ckpt, out_dir) == 1
    assert '3 done before' in capsys.readouterr().out


@pytest.fixture(scope='module')
def full(ckpt, tmp_path_factory):
    """The detections of an uninterrupted run on the good images."""
    root = tmp_path_factory.mktemp('infer_full')
    assert _infer(_write_images(root / 'images'), ckpt, root / 'out',
                  '--no-vis') == 0
    return sorted(map(_key, _preds(root / 'out')))


class _Interrupt:
    """Wraps ``inference_sniper``: counts the images given to it and raises
    KeyboardInterrupt on call number ``stop_at``."""

    def __init__(self, stop_at=None):
        from mmsniper import apis
        self.real = apis.inference_sniper
        self.stop_at = stop_at
        self.calls = []

    def __call__(self, model, imgs, **kwargs):
        self.calls.append([Path(i).name for i in imgs])
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        return self.real(model, imgs, **kwargs)


def test_infer_resumes_skips_done_images_writes_nothing_twice(
        ckpt, full, good_dir, tmp_path, monkeypatch, capsys):
    from mmsniper import apis
    out_dir = tmp_path / 'out'
    # Ctrl-C during the second image: the first is saved, on the way out
    spy = _Interrupt(stop_at=2)
    monkeypatch.setattr(apis, 'inference_sniper', spy)
    with pytest.raises(KeyboardInterrupt):
        _infer(good_dir, ckpt, out_dir, '--save-interval', '1000')
    assert {p['image_id'] for p in _preds(out_dir)} == {'a.jpg'}
    assert os.listdir(out_dir / 'vis') == ['a.jpg']
    # the rerun does only the other two, and the file equals a full run's
    spy = _Interrupt()
    monkeypatch.setattr(apis, 'inference_sniper', spy)
    assert _infer(good_dir, ckpt, out_dir) == 0
    assert spy.calls == [['c.jpg'], ['e.png']]
    assert '1 done before' in capsys.readouterr().out
    assert sorted(map(_key, _preds(out_dir))) == full
    assert sorted(os.listdir(out_dir / 'vis')) == ['a.jpg', 'c.jpg', 'sub']
    # everything done: a third run processes nothing and changes nothing
    spy = _Interrupt()
    monkeypatch.setattr(apis, 'inference_sniper', spy)
    assert _infer(good_dir, ckpt, out_dir) == 0
    assert spy.calls == []
    assert sorted(map(_key, _preds(out_dir))) == full
    # a resume with other settings is refused, naming the setting
    assert _infer(good_dir, ckpt, out_dir, '--score-thr', '0.5') == 2
    assert 'score_thr: 0.0 then, 0.5 now' in capsys.readouterr().err


def test_infer_drops_detections_its_record_does_not_list(
        ckpt, full, good_dir, tmp_path, monkeypatch):
    """Killed between the two saves: predictions.json has an image the
    record does not list; the rerun redoes it once."""
    from mmsniper import apis
    out_dir = tmp_path / 'out'
    assert _infer(good_dir, ckpt, out_dir, '--no-vis') == 0
    record_file = out_dir / 'predictions.done.json'
    record = json.loads(record_file.read_text())
    del record['done']['c.jpg']
    record_file.write_text(json.dumps(record))
    spy = _Interrupt()
    monkeypatch.setattr(apis, 'inference_sniper', spy)
    assert _infer(good_dir, ckpt, out_dir, '--no-vis') == 0
    assert spy.calls == [['c.jpg']]
    assert sorted(map(_key, _preds(out_dir))) == full


class _DyingJson:
    """``json`` whose ``dump`` writes half the text and dies after
    ``ok_calls`` good calls (a kill in the middle of a save)."""

    def __init__(self, ok_calls):
        self.ok_calls = ok_calls
        self.calls = 0

    def dump(self, obj, f):
        self.calls += 1
        text = json.dumps(obj)
        if self.calls > self.ok_calls:
            f.write(text[:len(text) // 2])
            raise KeyboardInterrupt
        f.write(text)

    def __getattr__(self, name):
        return getattr(json, name)


def test_infer_interrupted_save_leaves_the_last_complete_file(
        ckpt, full, good_dir, tmp_path, monkeypatch):
    out_dir = tmp_path / 'out'
    # saves: 2 files at the start, 2 after image 1; dies saving image 2
    monkeypatch.setattr(infer, 'json', _DyingJson(ok_calls=4))
    with pytest.raises(KeyboardInterrupt):
        _infer(good_dir, ckpt, out_dir, '--save-interval', '0', '--no-vis')
    monkeypatch.undo()
    assert sorted(os.listdir(out_dir)) == [
        'predictions.done.json', 'predictions.json'
    ]  # no temporary file left
    assert {p['image_id'] for p in _preds(out_dir)} == {'a.jpg'}
    record = json.loads((out_dir / 'predictions.done.json').read_text())
    assert list(record['done']) == ['a.jpg']
    assert _infer(good_dir, ckpt, out_dir, '--no-vis') == 0
    assert sorted(map(_key, _preds(out_dir))) == full


def test_result_to_coco_masks_as_rle_loadres_accepts():
    from mmengine.structures import InstanceData
    from pycocotools.coco import COCO

    from mmdet.structures import DetDataSample
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:8, 3:12] = True
    masks[1, 10:19, 20:29] = True
    sample = DetDataSample(metainfo=dict(img_path='x.jpg'))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[3., 2., 12., 8.], [20., 10., 29., 19.]]),
        scores=torch.tensor([0.9, 0.2]),
        labels=torch.tensor([1, 0]),
        masks=torch.from_numpy(masks))
    entries = infer.result_to_coco(sample, 5, [10, 20], score_thr=0.0)
    assert [e['category_id'] for e in entries] == [20, 10]
    assert entries[0]['bbox'] == [3.0, 2.0, 9.0, 6.0]
    gt = COCO()
    gt.dataset = dict(
        images=[dict(id=5, width=30, height=20)],
        annotations=[],
        categories=[dict(id=10, name='a'), dict(id=20, name='b')])
    gt.createIndex()
    dt = gt.loadRes(json.loads(json.dumps(entries)))
    for ann, mask in zip(dt.loadAnns(dt.getAnnIds()), masks):
        np.testing.assert_array_equal(dt.annToMask(ann), mask)
    assert len(infer.result_to_coco(sample, 5, None, score_thr=0.5)) == 1


def test_image_demo_is_the_same_program_exit_status_from_the_shell(
        ckpt, bad_dir, tmp_path):
    """The real command line: demo/image_demo.py runs tools/infer.py."""
    out_dir = tmp_path / 'out'
    res = tc.run([
        sys.executable,
        str(tc.REPO_ROOT / 'demo/image_demo.py'),
        str(bad_dir),
        str(DEMO_CONFIG),
        str(ckpt), '--out-dir',
        str(out_dir), *ONE_SCALE
    ],
                 timeout=300)
    assert res.returncode == 1, res.describe()
    assert '4 of 7 images could not be read' in res.stdout
    assert str(bad_dir / 'b_empty.jpg') in res.stdout
    assert sorted(os.listdir(out_dir / 'vis')) == ['a.jpg', 'c.jpg', 'sub']
    assert {p['image_id'] for p in _preds(out_dir)} <= set(GOOD)
