# Copyright (c) mmsniper contributors. All rights reserved.
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mmsniper.testing.synthetic import (MARKER_NAME, SYNTHETIC_CLASSES,
                                        dataset_stats,
                                        ensure_synthetic_dataset,
                                        generate_synthetic_dataset,
                                        render_synthetic_image)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Tiny images keep the tests fast; object sizes are absolute pixels, so
# small objects stay small while the largest ones are capped by the image.
TINY = dict(num_train=2, num_val=1, min_size=600, max_size=800)
TINY1 = dict(TINY, num_train=1)


def _read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def _pixels(out_dir, split):
    names = sorted(os.listdir(osp.join(out_dir, split)))
    return [cv2.imread(osp.join(out_dir, split, n)) for n in names]


def _mtimes(out_dir):
    return {
        osp.join(d, f): os.stat(osp.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(out_dir)
        for f in files
    }


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp('synthetic') / 'data')
    return generate_synthetic_dataset(out_dir, seed=3, **TINY)


def test_layout_and_result(tiny):
    out_dir = tiny['out_dir']
    assert tiny['generated']
    assert sorted(os.listdir(osp.join(out_dir,
                                      'train'))) == ['0000.jpg', '0001.jpg']
    assert os.listdir(osp.join(out_dir, 'val')) == ['0000.jpg']
    assert osp.isfile(osp.join(out_dir, MARKER_NAME))
    assert tiny['ann_files']['train'] == osp.join(out_dir, 'annotations',
                                                  'train.json')
    assert tiny['num_images'] == dict(train=2, val=1)
    assert tiny['stats']['train']['num_images'] == 2


def test_deterministic(tmp_path, tiny):
    again = generate_synthetic_dataset(str(tmp_path / 'b'), seed=3, **TINY)
    for split in ('train', 'val'):
        assert _read_bytes(tiny['ann_files'][split]) == _read_bytes(
            again['ann_files'][split])
        for a, b in zip(
                _pixels(tiny['out_dir'], split),
                _pixels(again['out_dir'], split)):
            np.testing.assert_array_equal(a, b)

    other = generate_synthetic_dataset(str(tmp_path / 'c'), seed=4, **TINY)
    assert _read_bytes(tiny['ann_files']['train']) != _read_bytes(
        other['ann_files']['train'])
    a = _pixels(tiny['out_dir'], 'train')[0]
    b = _pixels(other['out_dir'], 'train')[0]
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_images_independent_of_count_and_split(tmp_path, tiny):
    one = generate_synthetic_dataset(str(tmp_path / 'one'), seed=3, **TINY1)
    np.testing.assert_array_equal(
        _pixels(one['out_dir'], 'train')[0],
        _pixels(tiny['out_dir'], 'train')[0])
    # Train and val images with the same index must not coincide.
    train0 = _pixels(tiny['out_dir'], 'train')[0]
    val0 = _pixels(tiny['out_dir'], 'val')[0]
    assert train0.shape != val0.shape or not np.array_equal(train0, val0)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_valid(tiny, split):
    coco = COCO(tiny['ann_files'][split])
    cats = coco.loadCats(coco.getCatIds())
    assert tuple(c['name'] for c in cats) == SYNTHETIC_CLASSES
    assert [c['id'] for c in cats] == [1, 2, 3]

    images = coco.dataset['images']
    anns = coco.dataset['annotations']
    assert len({i['id'] for i in images}) == len(images)
    assert len({a['id'] for a in anns}) == len(anns) > 0
    for img in images:
        path = osp.join(tiny['img_dirs'][split], img['file_name'])
        assert cv2.imread(path).shape[:2] == (img['height'], img['width'])
        assert 600 <= img['height'] <= 800 and 600 <= img['width'] <= 800
    for ann in anns:
        img = coco.imgs[ann['image_id']]
        x, y, w, h = ann['bbox']
        assert w > 0 and h > 0
        assert x >= 0 and y >= 0
        assert x + w <= img['width'] and y + h <= img['height']
        assert ann['area'] == w * h
        assert ann['iscrowd'] == 0
        assert ann['category_id'] in (1, 2, 3)


def test_render_size_distribution_default_size():
    img, boxes, labels = render_synthetic_image(0)
    assert img.dtype == np.uint8 and img.ndim == 3
    assert 1500 <= min(img.shape[:2]) and max(img.shape[:2]) <= 2500
    assert 30 <= len(boxes) <= 120
    sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    assert (sizes < 32).mean() > 0.5  # mostly small, like aerial data
    assert (sizes >= 150).any()
    assert set(labels.tolist()) == {0, 1, 2}
    assert (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= img.shape[1]).all()
    assert (boxes[:, 3] <= img.shape[0]).all()


def test_size_distribution_tiny(tiny):
    stats = dataset_stats(tiny['ann_files']['train'])
    assert stats['num_boxes'] == sum(stats['per_class'].values())
    assert stats['frac_small'] > 0.3
    assert stats['min_sqrt_area'] < 32
    # Large objects are capped at 35% of the shorter side.
    assert stats['max_sqrt_area'] >= 100
    assert 0 < stats['median_sqrt_area'] < 64
    assert abs(stats['frac_small'] + stats['frac_medium'] +
               stats['frac_large'] - 1) < 1e-3


def test_render_subset_of_classes():
    _, _, labels = render_synthetic_image(1, 600, 700, classes=('tank', ))
    assert len(labels) > 0 and (labels == 0).all()
    with pytest.raises(ValueError, match="classes must be distinct.*'boat'"):
        render_synthetic_image(1, 600, 700, classes=('boat', ))


def test_invalid_args(tmp_path):
    with pytest.raises(ValueError, match='min_size <= max_size, got 900'):
        generate_synthetic_dataset(str(tmp_path), min_size=900, max_size=800)
    with pytest.raises(ValueError, match='non-negative'):
        generate_synthetic_dataset(str(tmp_path), seed=-1)
    with pytest.raises(TypeError, match='nmu_train'):
        ensure_synthetic_dataset(str(tmp_path), nmu_train=1)


def test_ensure_idempotent(tmp_path):
    out_dir = str(tmp_path / 'data')
    first = ensure_synthetic_dataset(out_dir, seed=5, **TINY)
    assert first['generated']
    before = _mtimes(out_dir)

    second = ensure_synthetic_dataset(out_dir, seed=5, workers=1, **TINY)
    assert not second['generated']
    assert _mtimes(out_dir) == before
    assert second['stats'] == first['stats']

    changed = ensure_synthetic_dataset(out_dir, seed=6, **TINY1)
    assert changed['generated']
    assert sorted(os.listdir(osp.join(out_dir, 'train'))) == ['0000.jpg']
    with open(osp.join(out_dir, MARKER_NAME)) as f:
        assert json.load(f)['args']['seed'] == 6

    # A missing image invalidates the marker.
    os.remove(osp.join(out_dir, 'val', '0000.jpg'))
    repaired = ensure_synthetic_dataset(out_dir, seed=6, **TINY1)
    assert repaired['generated']
    assert osp.isfile(osp.join(out_dir, 'val', '0000.jpg'))


def _load_cli():
    path = osp.join(ROOT, 'tools', 'generate_demo_data.py')
    spec = importlib.util.spec_from_file_location('generate_demo_data', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(tmp_path, capsys):
    out_dir = tmp_path / 'demo'
    argv = [
        '--out-dir',
        str(out_dir), '--seed', '1', '--num-train', '1', '--num-val', '1',
        '--min-size', '600', '--max-size', '700'
    ]
    script = osp.join(ROOT, 'tools', 'generate_demo_data.py')
    # Run from elsewhere: the script must find the package on its own.
    res = subprocess.run(
        [sys.executable, script] + argv,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=300)
    assert res.returncode == 0, res.stderr
    assert 'Generated' in res.stdout and 'frac_small' in res.stdout
    for rel in ('train/0000.jpg', 'val/0000.jpg', 'annotations/train.json',
                'annotations/val.json'):
        assert (out_dir / rel).is_file()

    # The second run (in-process, to save an interpreter start) reuses it.
    cli = _load_cli()
    cli.main(argv)
    assert 'up to date' in capsys.readouterr().out
    cli.main(argv + ['--force', '--workers', '1'])
    assert 'Generated' in capsys.readouterr().out


def test_mmdet_coco_dataset(tiny):
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(
        ann_file=tiny['ann_files']['train'],
        data_root=tiny['out_dir'],
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=SYNTHETIC_CLASSES),
        pipeline=[],
        test_mode=False)
    assert len(ds) == 2
    with open(tiny['ann_files']['train']) as f:
        coco = json.load(f)
    info = ds.get_data_info(0)
    assert osp.isfile(info['img_path'])
    num_gt = sum(a['image_id'] == info['img_id'] for a in coco['annotations'])
    assert len(info['instances']) == num_gt
    assert {i['bbox_label'] for i in info['instances']} <= {0, 1, 2}


def test_old_import_path_forwards_with_a_warning():
    sys.modules.pop('mmsniper.datasets.synthetic', None)
    with pytest.warns(DeprecationWarning, match='mmsniper.testing.synthetic'):
        old = importlib.import_module(
            'mmsniper.datasets.synthetic')
    assert old.generate_synthetic_dataset is generate_synthetic_dataset
    assert old.MARKER_NAME == MARKER_NAME
