# Copyright (c) mmsniper contributors. All rights reserved.
"""Issue 19 item 3: the test-time loader has the training loader's checks.

Every SNIPER / AutoFocus test pipeline (``tta_pipeline`` of the configs,
``make_sniper_config``'s, ``enable_tta``'s fallback) loads with
``LoadSniperChipFromFile``, so an image whose header declares more than
``max_image_pixels``, a JPEG too short for its declared size and an empty
file are refused before decoding, naming the file, through ``tools/test.py
--tta`` and ``inference_sniper`` alike.
"""
import glob
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
from mmcv.transforms import Compose, LoadImageFromFile
from mmengine.config import Config

from mmsniper.apis import enable_tta
from mmsniper.apis.inference import _test_pipeline
from mmsniper.apis.tta import sniper_test_pipeline
from mmsniper.datasets import image_io
from mmsniper.datasets.image_io import ImageDecodeError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TESTS = osp.join(ROOT, 'tests')
for path in (TESTS, osp.join(TESTS, 'test_models')):
    if path not in sys.path:
        sys.path.insert(0, path)
from sniper_test_utils import (LYING_IMAGE_ERRORS,  # noqa: E402
                               write_lying_images)
from sniper_tta_doubles import DrawnObjectsDetector  # noqa: E402

TTA_CONFIGS = [osp.join(ROOT, 'configs', '_base_', 'sniper_tta.py')] + [
    c for c in sorted(glob.glob(osp.join(ROOT, 'configs', 'sniper', '*.py')))
    if not osp.basename(c).startswith('rpn_')
]


@pytest.fixture
def no_decode(monkeypatch):
    """Fail if anything is decoded (mmcv's LoadImageFromFile included)."""

    def refuse(*args, **kwargs):
        raise AssertionError('decoded')

    monkeypatch.setattr(image_io.mmcv, 'imfrombytes', refuse)
    monkeypatch.setattr(image_io.cv2, 'imdecode', refuse)


@pytest.mark.parametrize(
    'config', TTA_CONFIGS, ids=[osp.basename(c) for c in TTA_CONFIGS])
def test_config_test_pipelines_refuse_lying_images(tmp_path, config):
    """Before: mmcv's LoadImageFromFile decoded the 32000 x 32000 JPEG (3 GB
    of grey) and gave raw OpenCV assertions without a file name."""
    liars = write_lying_images(tmp_path)
    good = str(tmp_path / 'good.jpg')
    cv2.imwrite(good, np.random.default_rng(1).integers(
        0, 255, (60, 80, 3), np.uint8))
    cfg = Config.fromfile(config)
    pipeline = _test_pipeline(cfg, from_array=False)
    out = pipeline(dict(img_path=good, img_id=0))
    ref = LoadImageFromFile()(dict(img_path=good))['img']
    np.testing.assert_array_equal(
        out['inputs'].permute(1, 2, 0).numpy(), ref)
    assert out['data_samples'].ori_shape == (60, 80)
    for name, path in liars.items():
        with pytest.raises(ImageDecodeError) as info:
            pipeline(dict(img_path=path, img_id=0))
        msg = str(info.value)
        assert path in msg and LYING_IMAGE_ERRORS[name] in msg, msg


def test_inference_sniper_refuses_lying_images(tmp_path, no_decode):
    from mmdet.registry import MODELS
    from mmsniper.apis import inference_sniper
    cfg = Config.fromfile(TTA_CONFIGS[0])
    model = MODELS.build(
        dict(cfg.tta_model, module=DrawnObjectsDetector(), scales=[1.0],
             valid_ranges=[(-1, -1)]))
    model.cfg = cfg
    for name, path in write_lying_images(tmp_path).items():
        with pytest.raises(ImageDecodeError) as info:
            inference_sniper(model, path)
        msg = str(info.value)
        assert path in msg and LYING_IMAGE_ERRORS[name] in msg, msg


def test_derived_test_pipelines_use_the_checked_loader():
    steps = [
        dict(type='LoadImageFromFile', backend_args=None, to_float32=True),
        dict(type='Resize', scale=(1333, 800), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs')
    ]
    assert sniper_test_pipeline(steps) == [
        dict(type='LoadSniperChipFromFile', backend_args=None,
             to_float32=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs')
    ]
    assert steps[0]['type'] == 'LoadImageFromFile'  # a copy
    # enable_tta (tools/test.py --tta) without a tta_pipeline
    cfg = Config.fromfile(TTA_CONFIGS[0])
    cfg.pop('tta_pipeline')
    cfg.model = dict(type='FasterRCNN')
    cfg.test_dataloader = dict(dataset=dict(pipeline=steps))
    with pytest.warns(UserWarning, match='without its resizing steps'):
        enable_tta(cfg)
    assert [s['type'] for s in cfg.test_dataloader.dataset.pipeline] == [
        'LoadSniperChipFromFile', 'LoadAnnotations', 'PackDetInputs'
    ]
    # make_sniper_config's tta_pipeline: from the source's test pipeline
    from mmsniper.apis.sniper_config import _test_pipeline as made
    src = Config(dict(test_dataloader=dict(dataset=dict(
        type='RepeatDataset', dataset=dict(pipeline=steps)))))
    assert [s['type'] for s in made(src)] == [
        'LoadSniperChipFromFile', 'LoadAnnotations', 'PackDetInputs'
    ]
    assert Compose(made(src))  # builds
