# Copyright (c) mmsniper contributors. All rights reserved.
import copy
import functools
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from mmdet.datasets.transforms import LoadAnnotations, PackDetInputs
from mmdet.registry import MODELS, TRANSFORMS
from mmdet.structures.bbox import BaseBoxes, HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmsniper.datasets.transforms import (SNIPER_CHIP_META_KEYS,
                                          SniperChipCrop, chip_meta_keys,
                                          resample_region)

ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def make_chip(box,
              s,
              valid_gt=(),
              chip_size=(512, 512),
              valid_range=(-1, 80),
              scale_idx=0,
              is_negative=False):
    return dict(
        box=np.asarray(box, dtype=np.float32),
        scale_factor=s,
        scale_idx=scale_idx,
        valid_range=valid_range,
        valid_gt=np.asarray(valid_gt, dtype=np.int64),
        chip_size=chip_size,
        is_negative=is_negative)


def make_results(img,
                 boxes=None,
                 labels=None,
                 ignore=None,
                 chip=None,
                 img_path='data/img_001.jpg'):
    h, w = img.shape[:2]
    results = dict(
        img=img, img_shape=(h, w), ori_shape=(h, w), img_path=img_path)
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        results['gt_bboxes'] = HorizontalBoxes(boxes)
        results['gt_bboxes_labels'] = (
            np.arange(n, dtype=np.int64) if labels is None else np.asarray(
                labels, dtype=np.int64))
        results['gt_ignore_flags'] = (
            np.zeros(n, dtype=bool) if ignore is None else np.asarray(
                ignore, dtype=bool))
    if chip is not None:
        results['sniper_chip'] = chip
    return results


def pattern(h, w, channels=3, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (h, w, channels)).astype(np.uint8)


def test_registry_and_repr():
    t = TRANSFORMS.build(dict(type='SniperChipCrop'))
    assert isinstance(t, SniperChipCrop)
    assert repr(t) == ("SniperChipCrop(min_gt_size=10, "
                       "interpolation='bilinear', box_tol=1.0)")
    assert repr(SniperChipCrop(
        2.5, 'nearest',
        0.5)) == ("SniperChipCrop(min_gt_size=2.5, interpolation='nearest', "
                  'box_tol=0.5)')
    with pytest.raises(ValueError, match='interpolation'):
        SniperChipCrop(interpolation='area')
    # the crop no longer pads: the data preprocessor does
    with pytest.raises(TypeError, match='pad_val'):
        SniperChipCrop(pad_val=0)


def test_no_chip_is_noop():
    img = pattern(50, 60)
    results = make_results(img, boxes=[[1, 2, 30, 40]])
    before = copy.deepcopy(results)
    out = SniperChipCrop()(results)
    assert out is results
    assert set(out) == set(before)
    assert out['img'] is img
    np.testing.assert_array_equal(out['gt_bboxes'].numpy(),
                                  before['gt_bboxes'].numpy())
    assert 'homography_matrix' not in out and 'chip_scale' not in out
    # a None chip is the same as no chip
    results['sniper_chip'] = None
    assert 'chip_scale' not in SniperChipCrop()(results)


@pytest.mark.parametrize('box,s', [((100, 80, 300, 280), 2.0),
                                   ((33.25, 17.5, 833.25, 617.5), 0.64),
                                   ((0, 0, 1000, 700), 0.5),
                                   ((120.4, 10.9, 290.9, 181.3), 3.0)])
def test_round_trip(box, s):
    img = pattern(700, 1000)
    rng = np.random.RandomState(1)
    x1, y1, x2, y2 = (float(v) for v in np.float32(box))
    # random boxes fully inside the chip, at least 10 chip px
    n = 20
    bw = rng.uniform(10 / s + 0.1, (x2 - x1) / 2, n)
    bh = rng.uniform(10 / s + 0.1, (y2 - y1) / 2, n)
    bx = rng.uniform(x1, x2 - bw)
    by = rng.uniform(y1, y2 - bh)
    boxes = np.stack([bx, by, bx + bw, by + bh], 1).astype(np.float32)
    results = make_results(
        img, boxes=boxes, chip=make_chip(box, s, valid_gt=range(n)))
    out = SniperChipCrop()(results)
    chip_boxes = out['gt_bboxes'].numpy()
    assert len(chip_boxes) == n
    np.testing.assert_allclose(
        chip_boxes, (boxes - np.array([x1, y1, x1, y1])) * s, atol=1e-3)
    # back through the inverse homography
    inv = np.linalg.inv(out['homography_matrix'].astype(np.float64))
    back = HorizontalBoxes(chip_boxes)
    back.project_(inv)
    np.testing.assert_allclose(back.numpy(), boxes, atol=2e-3 * max(1, 1 / s))
    # back through chip_offset / chip_scale
    ox, oy = out['chip_offset']
    back2 = chip_boxes / out['chip_scale'] + np.array([ox, oy, ox, oy])
    np.testing.assert_allclose(back2, boxes, atol=2e-3 * max(1, 1 / s))
    # metas
    assert out['chip_scale'] == pytest.approx(s)
    assert out['scale_factor'] == pytest.approx((s, s))
    assert out['img_shape'] == (int(np.floor((y2 - y1) * s + 0.5)),
                                int(np.floor((x2 - x1) * s + 0.5)))
    # not padded: the image is exactly img_shape (mmdet semantics)
    assert out['img'].shape == out['img_shape'] + (3, )
    assert 'pad_shape' not in out
    assert out['ori_shape'] == (700, 1000)
    assert out['homography_matrix'].dtype == np.float32
    assert out['gt_ignore_flags'].dtype == np.bool_
    assert not out['gt_ignore_flags'].any()


def test_homography_and_scale_factor_compose():
    img = pattern(100, 100)
    h_old = np.array([[1, 0, 3], [0, 1, -2], [0, 0, 1]], dtype=np.float32)
    results = make_results(img, chip=make_chip((10, 20, 60, 80), 2.0))
    results['homography_matrix'] = h_old
    results['scale_factor'] = (1.0, 1.0)
    out = SniperChipCrop()(results)
    expected = np.array([[2, 0, -20], [0, 2, -40], [0, 0, 1]]) @ h_old
    np.testing.assert_allclose(out['homography_matrix'], expected)
    assert out['scale_factor'] == (2.0, 2.0)


def test_metas_are_plain_python():
    img = pattern(400, 400)
    chip = make_chip((50, 60, 350, 360),
                     1.5,
                     valid_range=(32, 150),
                     scale_idx=1,
                     is_negative=True)
    out = SniperChipCrop()(make_results(img, chip=chip))
    assert out['chip_offset'] == (50.0, 60.0)
    assert type(out['chip_offset'][0]) is float
    assert out['chip_scale'] == 1.5 and type(out['chip_scale']) is float
    assert out['chip_valid_range'] == (48.0, 225.0)
    assert out['chip_scale_idx'] == 1 and type(out['chip_scale_idx']) is int
    assert out['chip_is_negative'] is True
    # open sides stay -1
    for vr, expected in [((-1, 80), (-1.0, 120.0)), ((120, -1), (180.0, -1.0)),
                         ((-1, -1), (-1.0, -1.0))]:
        chip = make_chip((50, 60, 350, 360), 1.5, valid_range=vr)
        out = SniperChipCrop()(make_results(img, chip=chip))
        assert out['chip_valid_range'] == expected
    assert set(SNIPER_CHIP_META_KEYS) <= set(chip_meta_keys())
    assert chip_meta_keys()[:7] == PackDetInputs().meta_keys


@pytest.mark.parametrize('box,s', [((40, 60, 240, 260), 1.5),
                                   ((0, 0, 400, 300), 0.5),
                                   ((17, 33, 217, 233), 1.0),
                                   ((100, 50, 300, 250), 2.56)])
def test_pixels_equal_cv2_resize_of_crop(box, s):
    img = pattern(300, 400)
    x1, y1, x2, y2 = box
    out = SniperChipCrop()(make_results(img, chip=make_chip(box, s)))
    out_h = int(round((y2 - y1) * s))
    out_w = int(round((x2 - x1) * s))
    expected = cv2.resize(img[y1:y2, x1:x2], (out_w, out_h))
    assert out['img_shape'] == (out_h, out_w)
    assert out['img'].dtype == np.uint8
    np.testing.assert_array_equal(out['img'], expected)


@pytest.mark.parametrize('box,s', [((10.3, 20.6, 150.3, 100.6), 3.0),
                                   ((0.5, 3.25, 399.5, 203.25), 0.75),
                                   ((33.7, 44.1, 233.7, 144.1), 2.0)])
def test_subpixel_chip_corner_is_sampled_exactly(box, s):
    """A ramp image: bilinear sampling returns the sampled coordinate, so the
    output shows which original location each chip pixel comes from."""
    h, w = 300, 400
    ramp_x = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    ramp_y = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
    img = np.stack([ramp_x, ramp_y, np.zeros_like(ramp_x)], -1)
    x1, y1 = box[:2]
    out = SniperChipCrop()(make_results(img, chip=make_chip(box, s)))
    oh, ow = out['img_shape']
    u = np.arange(ow)
    v = np.arange(oh)
    # pixel u shows the original point x1 + (u + .5) / s; index coordinate
    # (pixel centres at integers) is that minus 0.5
    want_x = x1 + (u + 0.5) / s - 0.5
    want_y = y1 + (v + 0.5) / s - 0.5
    inside_x = (want_x >= 0) & (want_x <= w - 1)
    inside_y = (want_y >= 0) & (want_y <= h - 1)
    got_x = out['img'][0, :ow, 0]
    got_y = out['img'][:oh, 0, 1]
    # warpAffine quantises source positions to 1/32 px
    np.testing.assert_allclose(got_x[inside_x], want_x[inside_x], atol=0.04)
    np.testing.assert_allclose(got_y[inside_y], want_y[inside_y], atol=0.04)


def test_resample_region_many_channels_and_gray():
    img = pattern(60, 80, channels=6)
    out = resample_region(img, (10.5, 5.5), 1.7, (40, 30))
    assert out.shape == (30, 40, 6)
    ref = np.concatenate([
        resample_region(img[..., :3].copy(), (10.5, 5.5), 1.7, (40, 30)),
        resample_region(img[..., 3:].copy(), (10.5, 5.5), 1.7, (40, 30))
    ], -1)
    # cv2 quantises positions per channel-count code path (1/32 px)
    assert np.abs(out.astype(int) - ref).max() <= 8
    assert np.abs(out.astype(int) - ref).mean() < 1
    gray = img[..., 0].copy()
    out = SniperChipCrop()(
        make_results(gray, chip=make_chip((0, 0, 80, 60), 2.0)))
    np.testing.assert_array_equal(out['img'], cv2.resize(gray, (160, 120)))
    one = img[..., :1].copy()
    out = SniperChipCrop()(
        make_results(one, chip=make_chip((0, 0, 80, 60), 2.0)))
    assert out['img'].shape == (120, 160, 1)


def test_ignore_flags_and_min_size():
    img = pattern(1000, 1000)
    box, s = (100, 100, 612, 612), 1.0
    boxes = [
        [200, 200, 300, 300],  # 0 valid (in valid_gt)
        [350, 350, 450, 450],  # 1 not in valid_gt -> ignored, kept
        [150, 400, 250, 500],  # 2 iscrowd, in valid_gt -> stays ignored
        [605, 200, 700, 300],  # 3 clipped to 7 px wide -> dropped
        [300, 500, 305, 560],  # 4 inside but 5 px wide -> dropped
        [700, 700, 800, 800],  # 5 outside the chip -> dropped
        [50, 550, 200, 700],  # 6 clipped to 100x62, not valid -> ignored
        [400, 100, 500, 112],  # 7 exactly 12 px high, valid -> kept
        [500, 90, 600, 109.5],  # 8 clipped to 9.5 px high -> dropped
    ]
    labels = [10, 11, 12, 13, 14, 15, 16, 17, 18]
    ignore = [0, 0, 1, 0, 0, 0, 0, 0, 0]
    valid_gt = [0, 2, 3, 4, 7, 8]
    results = make_results(img, boxes, labels, ignore,
                           make_chip(box, s, valid_gt=valid_gt))
    results['gt_instances_ids'] = np.arange(9) + 100
    out = SniperChipCrop()(results)
    np.testing.assert_array_equal(out['gt_bboxes_labels'],
                                  [10, 11, 12, 16, 17])
    np.testing.assert_array_equal(out['gt_ignore_flags'],
                                  [False, True, True, True, False])
    np.testing.assert_array_equal(out['gt_instances_ids'],
                                  [100, 101, 102, 106, 107])
    np.testing.assert_allclose(
        out['gt_bboxes'].numpy(),
        [[100, 100, 200, 200], [250, 250, 350, 350], [50, 300, 150, 400],
         [0, 450, 100, 512], [300, 0, 400, 12]])


def test_min_gt_size_in_chip_px():
    img = pattern(1000, 1000)
    # 8 orig px at s=2 is 16 chip px (kept); 4 orig px -> 8 chip px (dropped)
    boxes = [[10, 10, 18, 18], [30, 30, 34, 34]]
    out = SniperChipCrop()(
        make_results(
            img, boxes, chip=make_chip((0, 0, 256, 256), 2.0, valid_gt=[0,
                                                                        1])))
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0])
    out = SniperChipCrop(min_gt_size=0)(
        make_results(
            img, boxes, chip=make_chip((0, 0, 256, 256), 2.0, valid_gt=[0,
                                                                        1])))
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 1])


def test_missing_ignore_flags_and_negative_chip():
    img = pattern(300, 300)
    results = make_results(
        img, [[10, 10, 100, 100], [120, 120, 200, 200]],
        chip=make_chip((0, 0, 300, 300), 1.0, valid_gt=[], is_negative=True))
    del results['gt_ignore_flags']
    out = SniperChipCrop()(results)
    np.testing.assert_array_equal(out['gt_ignore_flags'], [True, True])
    assert out['chip_is_negative'] is True


def test_numpy_boxes_and_empty():
    img = pattern(300, 300)
    results = make_results(
        img, chip=make_chip((0, 0, 200, 200), 2.0, valid_gt=[0]))
    results['gt_bboxes'] = np.array([[10, 10, 100, 100]], dtype=np.float32)
    results['gt_bboxes_labels'] = np.array([3])
    results['gt_ignore_flags'] = np.array([False])
    out = SniperChipCrop()(results)
    assert isinstance(out['gt_bboxes'], np.ndarray)
    np.testing.assert_allclose(out['gt_bboxes'], [[20, 20, 200, 200]])
    empty = make_results(
        img, np.zeros((0, 4)), chip=make_chip((0, 0, 200, 200), 2.0))
    out = SniperChipCrop()(empty)
    assert len(out['gt_bboxes']) == 0 and len(out['gt_bboxes_labels']) == 0
    assert out['gt_ignore_flags'].shape == (0, )


def test_image_smaller_than_chip():
    img = pattern(200, 300)
    boxes = [[30, 40, 130, 140], [250, 150, 300, 200]]
    # whole image at s=1.5 -> 300x450, not padded (the data preprocessor
    # pads the batch)
    out = SniperChipCrop()(
        make_results(
            img, boxes, chip=make_chip((0, 0, 300, 200), 1.5, valid_gt=[0,
                                                                        1])))
    assert out['img_shape'] == (300, 450)
    np.testing.assert_array_equal(out['img'], cv2.resize(img, (450, 300)))
    np.testing.assert_allclose(out['gt_bboxes'].numpy(),
                               [[45, 60, 195, 210], [375, 225, 450, 300]])
    assert not out['gt_ignore_flags'].any()


def test_box_within_tolerance_is_clipped():
    img = pattern(200, 300)
    out = SniperChipCrop()(
        make_results(img, chip=make_chip((-0.4, -1e-4, 300.5, 200.0003), 1.0)))
    assert out['chip_offset'] == (0.0, 0.0)
    assert out['img_shape'] == (200, 300)
    np.testing.assert_array_equal(out['img'], img)


@pytest.mark.parametrize(
    'chip,field',
    [
        (make_chip((-20, 0, 100, 100), 1.0), "sniper_chip['box']"),
        (make_chip((0, 0, 100, 250), 1.0), "sniper_chip['box']"),
        (make_chip((50, 0, 50, 100), 1.0), "sniper_chip['box']"),
        (make_chip((60, 0, 50, 100), 1.0), "sniper_chip['box']"),
        (make_chip((0, 0, 100), 1.0), "sniper_chip['box']"),
        (make_chip((0, 0, np.nan, 100), 1.0), "sniper_chip['box']"),
        (make_chip((0, 0, 100, 100), 0.0), "sniper_chip['scale_factor']"),
        (make_chip((0, 0, 100, 100), -1.0), "sniper_chip['scale_factor']"),
        (make_chip(
            (0, 0, 100, 100), float('nan')), "sniper_chip['scale_factor']"),
        (make_chip((0, 0, 300, 200), 3.0), "sniper_chip['box']"),  # > chip
        (make_chip((0, 0, 100, 100), 1.0,
                   chip_size=(0, 512)), "sniper_chip['chip_size']"),
        (make_chip(
            (0, 0, 100, 100), 1.0, valid_gt=[5]), "sniper_chip['valid_gt']"),
        ({
            k: v
            for k, v in make_chip((0, 0, 100, 100), 1.0).items()
            if k != 'valid_gt'
        }, "sniper_chip['valid_gt']"),
    ])
def test_bad_chip_raises(chip, field):
    img = pattern(200, 300)
    results = make_results(
        img, [[0, 0, 50, 50]], chip=chip, img_path='some/dir/bad_image_42.jpg')
    with pytest.raises(ValueError) as exc:
        SniperChipCrop()(results)
    assert 'bad_image_42.jpg' in str(exc.value)
    assert field in str(exc.value)


def test_resized_image_is_rejected():
    img = pattern(200, 300)
    results = make_results(img, chip=make_chip((0, 0, 100, 100), 1.0))
    results['ori_shape'] = (400, 600)
    with pytest.raises(ValueError, match='ori_shape'):
        SniperChipCrop()(results)


def test_bitmap_masks_and_seg_map():
    h, w = 300, 400
    img = pattern(h, w)
    boxes = [[40, 50, 140, 150], [300, 0, 400, 300], [0, 250, 20, 300]]
    masks = np.zeros((3, h, w), dtype=np.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[y1:y2, x1:x2] = 1
    seg = np.zeros((h, w), dtype=np.uint8)
    seg[50:150, 40:140] = 3
    results = make_results(
        img, boxes, chip=make_chip((20, 30, 320, 230), 1.5, valid_gt=[0]))
    results['gt_masks'] = BitmapMasks(masks, h, w)
    results['gt_seg_map'] = seg
    out = SniperChipCrop()(results)
    # box 2 is outside the chip -> dropped with its mask
    assert len(out['gt_masks']) == 2 == len(out['gt_bboxes'])
    assert isinstance(out['gt_masks'], BitmapMasks)
    # the resized region 300 x 450 (h, w), like the image
    assert out['img'].shape[:2] == out['img_shape'] == (300, 450)
    assert out['gt_masks'].masks.shape == (2, 300, 450)
    # masks agree with the mapped boxes
    np.testing.assert_allclose(
        out['gt_masks'].get_bboxes(HorizontalBoxes).numpy(),
        out['gt_bboxes'].numpy())
    np.testing.assert_allclose(out['gt_bboxes'].numpy(),
                               [[30, 30, 180, 180], [420, 0, 450, 300]])
    assert out['gt_seg_map'].shape == (300, 450)
    ys, xs = np.nonzero(out['gt_seg_map'] == 3)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (30, 30, 180,
                                                                180)


def test_polygon_masks():
    img = pattern(300, 400)
    boxes = [[40, 50, 140, 150], [300, 0, 400, 300]]
    polys = [[np.array([40, 50, 140, 50, 140, 150, 40, 150], float)],
             [np.array([300, 0, 400, 0, 400, 300, 300, 300], float)]]
    results = make_results(
        img, boxes, chip=make_chip((20, 30, 320, 230), 1.5, valid_gt=[0, 1]))
    results['gt_masks'] = PolygonMasks(polys, 300, 400)
    out = SniperChipCrop()(results)
    assert isinstance(out['gt_masks'], PolygonMasks)
    assert (out['gt_masks'].height, out['gt_masks'].width) == (300, 450)
    np.testing.assert_allclose(
        out['gt_masks'].get_bboxes(HorizontalBoxes).numpy(),
        out['gt_bboxes'].numpy(),
        atol=1e-4)


def test_proposals():
    img = pattern(300, 400)
    results = make_results(img, chip=make_chip((100, 100, 300, 200), 2.0))
    results['proposals'] = np.array(
        [[110, 110, 150, 150], [0, 0, 50, 50], [250, 150, 350, 250]],
        dtype=np.float32)
    results['proposals_scores'] = np.array([0.9, 0.8, 0.7], np.float32)
    out = SniperChipCrop()(results)
    np.testing.assert_allclose(out['proposals'],
                               [[20, 20, 100, 100], [300, 100, 400, 200]])
    np.testing.assert_allclose(out['proposals_scores'], [0.9, 0.7])
    assert out['proposals'].dtype == np.float32


def test_keypoints_not_supported():
    img = pattern(100, 100)
    results = make_results(
        img, [[0, 0, 50, 50]], chip=make_chip((0, 0, 100, 100), 1.0))
    results['gt_keypoints'] = np.zeros((1, 3, 3), np.float32)
    with pytest.raises(NotImplementedError):
        SniperChipCrop()(results)


def coco_like_results(img_path, h, w, chip):
    """What mmdet's CocoDataset hands the pipeline, plus the chip."""
    return dict(
        img_path=img_path,
        img_id=7,
        height=h,
        width=w,
        instances=[
            dict(bbox=[210., 220., 330., 300.], bbox_label=2, ignore_flag=0),
            dict(bbox=[400., 250., 480., 330.], bbox_label=5, ignore_flag=0),
            dict(bbox=[300., 400., 380., 470.], bbox_label=1, ignore_flag=1),
            dict(bbox=[1500., 900., 1590., 990.], bbox_label=3, ignore_flag=0),
        ],
        sniper_chip=chip)


@pytest.mark.parametrize('loader',
                         ['LoadImageFromFile', 'LoadSniperChipFromFile'])
def test_full_pipeline(tmp_path, loader):
    import mmsniper.datasets.transforms  # noqa: F401 (registers)
    h, w = 1200, 1600
    img = pattern(h, w)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    pipeline = Compose([
        dict(type=loader),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='SniperChipCrop'),
        dict(type='PackDetInputs', meta_keys=chip_meta_keys()),
    ])
    chip = make_chip((200, 200, 712, 712),
                     1.0,
                     valid_gt=[0, 2],
                     valid_range=(32, 150),
                     scale_idx=1)
    packed = pipeline(coco_like_results(path, h, w, chip))
    ds = packed['data_samples']
    assert packed['inputs'].shape == (3, 512, 512)
    expected = torch.from_numpy(img[200:712, 200:712]).permute(2, 0, 1)
    assert torch.equal(packed['inputs'], expected)
    # 0 valid; 1 not in valid_gt -> ignored; 2 iscrowd -> ignored;
    # 3 outside the chip -> dropped
    assert ds.gt_instances.labels.tolist() == [2]
    np.testing.assert_allclose(ds.gt_instances.bboxes.numpy(),
                               [[10, 20, 130, 100]])
    assert ds.ignored_instances.labels.tolist() == [5, 1]
    np.testing.assert_allclose(ds.ignored_instances.bboxes.numpy(),
                               [[200, 50, 280, 130], [100, 200, 180, 270]])
    meta = ds.metainfo
    assert meta['chip_valid_range'] == (32.0, 150.0)
    assert meta['chip_offset'] == (200.0, 200.0)
    assert meta['chip_scale'] == 1.0
    assert meta['chip_scale_idx'] == 1
    assert meta['chip_is_negative'] is False
    assert meta['img_shape'] == (512, 512)
    assert meta['ori_shape'] == (h, w)
    assert meta['img_id'] == 7


def test_full_pipeline_without_chip_is_plain_mmdet(tmp_path):
    import mmsniper.datasets.transforms  # noqa: F401 (registers)
    h, w = 120, 160
    img = pattern(h, w)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    results = coco_like_results(path, h, w, None)
    del results['sniper_chip']
    results['instances'] = results['instances'][:1]
    ours = Compose([
        dict(type='LoadSniperChipFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='SniperChipCrop'),
        dict(type='PackDetInputs')
    ])(
        copy.deepcopy(results))
    plain = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackDetInputs')
    ])(
        copy.deepcopy(results))
    assert torch.equal(ours['inputs'], plain['inputs'])
    assert torch.equal(ours['data_samples'].gt_instances.bboxes.tensor,
                       plain['data_samples'].gt_instances.bboxes.tensor)
    assert ours['data_samples'].metainfo == plain['data_samples'].metainfo


def test_load_annotations_then_crop_keeps_alignment():
    """valid_gt indexes rows of gt_bboxes as LoadAnnotations produced them."""
    img = pattern(400, 400)
    results = dict(
        img=img,
        img_shape=(400, 400),
        ori_shape=(400, 400),
        img_path='x',
        instances=[
            dict(bbox=[10, 10, 60, 60], bbox_label=0, ignore_flag=0),
            dict(bbox=[100, 100, 160, 160], bbox_label=1, ignore_flag=0),
            dict(bbox=[200, 200, 260, 260], bbox_label=2, ignore_flag=0)
        ],
        sniper_chip=make_chip((0, 0, 400, 400), 1.0, valid_gt=[1]))
    out = SniperChipCrop()(LoadAnnotations()(results))
    assert out['gt_bboxes_labels'].tolist() == [0, 1, 2]
    assert out['gt_ignore_flags'].tolist() == [True, False, True]


# ----------------------------------------------------------------------
# The shipped training pipeline and data preprocessor, flipped or not
# ----------------------------------------------------------------------
SNIPER_CONFIG = osp.join(ROOT, 'configs', 'sniper',
                         'faster-rcnn_r50_fpn_sniper-1x_coco.py')
GREY_BGR = (128, 128, 128)
RED_BGR = (0, 0, 255)

# (image h, w), chip box, chip scale, GT boxes (orig px): a portrait image
# at the coarsest scale (long side 512: 384 x 512 chip px, w x h) and a
# small image enlarged to 300 x 400; both narrower than the 512 px chip.
FLIP_CASES = [
    dict(
        hw=(640, 480),
        box=(0, 0, 480, 640),
        s=0.8,
        boxes=[[40, 60, 140, 200], [300, 400, 420, 560], [200, 30, 260, 90]]),
    dict(
        hw=(200, 150),
        box=(0, 0, 150, 200),
        s=2.0,
        boxes=[[10, 20, 60, 90], [90, 120, 140, 190]]),
]


def _write_boxes_image(path, hw, boxes):
    """Grey image with every GT box filled in red (lossless PNG)."""
    img = np.empty(hw + (3, ), np.uint8)
    img[...] = GREY_BGR
    for x1, y1, x2, y2 in boxes:
        img[y1:y2, x1:x2] = RED_BGR
    cv2.imwrite(path, img)


@functools.lru_cache(maxsize=1)
def _sniper_config():
    return Config.fromfile(SNIPER_CONFIG)


def _training_pipeline(loader, flip_prob):
    cfg = _sniper_config()
    pipeline = copy.deepcopy(cfg.train_pipeline)
    types = [t['type'] for t in pipeline]
    assert types == [
        'LoadSniperChipFromFile', 'LoadAnnotations', 'SniperChipCrop',
        'RandomFlip', 'PackDetInputs'
    ]
    pipeline[0] = dict(type=loader)
    pipeline[3]['prob'] = flip_prob
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    return Compose(pipeline), preprocessor, cfg.chip_size


@pytest.mark.parametrize('flip_prob', [1.0, 0.0])
@pytest.mark.parametrize('loader',
                         ['LoadSniperChipFromFile', 'LoadImageFromFile'])
def test_flip_keeps_gt_on_image_content(tmp_path, loader, flip_prob):
    """Issue 7 item 1: after the whole training pipeline and the data
    preprocessor, every GT lies inside img_shape and on the red pixels
    drawn for it, flipped or not; the batch is padded with the pixel
    mean."""
    pipeline, preprocessor, chip_size = _training_pipeline(loader, flip_prob)
    samples, expected = [], []
    for i, case in enumerate(FLIP_CASES):
        hw, box, s, boxes = (case[k] for k in ('hw', 'box', 's', 'boxes'))
        path = str(tmp_path / f'{i}.png')
        _write_boxes_image(path, hw, boxes)
        chip = make_chip(
            box, s, valid_gt=range(len(boxes)), valid_range=(-1, -1))
        results = dict(
            img_path=path,
            img_id=1,
            height=hw[0],
            width=hw[1],
            instances=[
                dict(bbox=[float(v) for v in b], bbox_label=0, ignore_flag=0)
                for b in boxes
            ],
            sniper_chip=chip)
        samples.append(pipeline(results))
        h, w = round(hw[0] * s), round(hw[1] * s)
        want = np.array(boxes, np.float64) * s
        if flip_prob == 1.0:  # mirrored inside the chip's own width
            want[:, [0, 2]] = w - want[:, [2, 0]]
        expected.append((h, w, want))
    batch = preprocessor(pseudo_collate(samples), training=True)
    inputs, data_samples = batch['inputs'], batch['data_samples']
    assert inputs.shape == (2, 3, chip_size, chip_size)

    mean = preprocessor.mean.view(3)
    std = preprocessor.std.view(3)
    red = (torch.tensor(RED_BGR[::-1], dtype=torch.float32) - mean) / std
    grey = (torch.tensor(GREY_BGR[::-1], dtype=torch.float32) - mean) / std
    for img, ds, (h, w, want) in zip(inputs, data_samples, expected):
        meta = ds.metainfo
        assert meta['flip'] is (flip_prob == 1.0)
        assert meta['img_shape'] == (h, w)
        assert meta['pad_shape'] == (chip_size, chip_size)
        boxes = ds.gt_instances.bboxes.numpy()
        np.testing.assert_allclose(boxes, want, atol=1e-4)
        # inside img_shape
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 2] <= w).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 3] <= h).all()
        # on the content: red pixels = the union of the GT boxes (up to
        # the 1 px ring that bilinear resizing blends)
        is_red = (img - red.view(3, 1, 1)).abs().amax(0) < 0.05
        is_grey = (img - grey.view(3, 1, 1)).abs().amax(0) < 0.05
        inner = torch.zeros(chip_size, chip_size, dtype=torch.bool)
        outer = torch.zeros(chip_size, chip_size, dtype=torch.bool)
        for x1, y1, x2, y2 in boxes:
            inner[int(np.ceil(y1)) + 1:int(y2) - 1,
                  int(np.ceil(x1)) + 1:int(x2) - 1] = True
            outer[max(int(y1) - 1, 0):int(np.ceil(y2)) + 1,
                  max(int(x1) - 1, 0):int(np.ceil(x2)) + 1] = True
        assert is_red[inner].all()
        assert not is_red[~outer].any()
        content = torch.zeros_like(inner)
        content[:h, :w] = True
        assert is_grey[content & ~outer].all()
        # padded after normalisation with 0, i.e. with the pixel mean
        assert (img[:, ~content] == 0).all()


def test_non_square_chip_size_is_h_w():
    """chip_size is (h, w): a 500 x 250 (w x h) region fits a 256 x 512
    (h x w) chip; the transposed region does not."""
    img = pattern(600, 600)
    boxes = [[10, 10, 500, 250]]
    out = SniperChipCrop()(
        make_results(
            img,
            boxes,
            chip=make_chip((0, 0, 500, 250),
                           1.0,
                           valid_gt=[0],
                           chip_size=(256, 512))))
    assert out['img_shape'] == (250, 500)
    assert out['img'].shape == (250, 500, 3)
    np.testing.assert_allclose(out['gt_bboxes'].numpy(), [[10, 10, 500, 250]])
    # up to 1 px larger than the chip: clamped to (h, w) = (256, 512)
    out = SniperChipCrop()(
        make_results(
            img,
            chip=make_chip((0, 0, 512.6, 256.4), 1.0, chip_size=(256, 512))))
    assert out['img_shape'] == (256, 512)
    with pytest.raises(ValueError, match=r'\(256, 512\) \(h, w\)'):
        SniperChipCrop()(
            make_results(
                img,
                chip=make_chip((0, 0, 250, 500), 1.0, chip_size=(256, 512))))


@pytest.mark.parametrize('axis', ['x', 'y'])
def test_min_gt_size_boundary(axis):
    """Spec 4 and the reference's filter_boxes (ws >= 10): a piece of
    exactly min_gt_size chip px is kept, 9.99 px is dropped; whole boxes
    and pieces clipped at the chip border alike."""
    img = pattern(400, 400)
    # chip (0, 0, 256, 256) at s = 2: 512 chip px, boxes 40 chip px across
    boxes = np.array([
        [20, 20, 25, 40],  # 5.0 orig px -> 10.0 chip px, kept
        [60, 20, 64.995, 40],  # 4.995 -> 9.99 chip px, dropped
        [251, 60, 280, 80],  # clipped at x = 256: 10.0 chip px, kept
        [251.005, 100, 280, 120],  # clipped: 9.99 chip px, dropped
    ])
    if axis == 'y':
        boxes = boxes[:, [1, 0, 3, 2]]
    out = SniperChipCrop()(
        make_results(
            img,
            boxes,
            labels=[0, 1, 2, 3],
            chip=make_chip((0, 0, 256, 256), 2.0, valid_gt=range(4))))
    assert out['gt_bboxes_labels'].tolist() == [0, 2]
    chip_boxes = out['gt_bboxes']
    sides = chip_boxes.widths if axis == 'x' else chip_boxes.heights
    np.testing.assert_allclose(sides.numpy(), [10.0, 10.0])
    # min_gt_size is a parameter
    out = SniperChipCrop(min_gt_size=9.98)(
        make_results(
            img,
            boxes,
            labels=[0, 1, 2, 3],
            chip=make_chip((0, 0, 256, 256), 2.0, valid_gt=range(4))))
    assert out['gt_bboxes_labels'].tolist() == [0, 1, 2, 3]


def test_previous_scale_factor_and_homography_compose():
    """Issue 13 bug 5: a previous (w, h) scale_factor and homography are
    composed with the chip's, not replaced."""
    img = pattern(100, 100)
    # anisotropic scale, shear and translation: H_old @ C != C @ H_old
    h_old = np.array([[0.5, 0.1, 3], [0, 2.0, -2], [0, 0, 1]], np.float32)
    results = make_results(img, chip=make_chip((10, 20, 60, 80), 1.5))
    results['homography_matrix'] = h_old
    results['scale_factor'] = (0.5, 2.0)
    out = SniperChipCrop()(results)
    chip = np.array([[1.5, 0, -15], [0, 1.5, -30], [0, 0, 1]])
    np.testing.assert_allclose(
        out['homography_matrix'], chip @ h_old, rtol=1e-6)
    assert not np.allclose(chip @ h_old, h_old @ chip)
    assert out['scale_factor'] == pytest.approx((0.75, 3.0))
    # a scalar previous factor
    results = make_results(img, chip=make_chip((10, 20, 60, 80), 1.5))
    results['scale_factor'] = 0.5
    assert SniperChipCrop()(results)['scale_factor'] == pytest.approx(
        (0.75, 0.75))


class _SpyBoxes(HorizontalBoxes):
    """HorizontalBoxes that record which of their operations ran."""
    calls = []

    def translate_(self, distances):
        type(self).calls.append('translate_')
        super().translate_(distances)

    def rescale_(self, scale_factor):
        type(self).calls.append('rescale_')
        super().rescale_(scale_factor)

    def clip_(self, img_shape):
        type(self).calls.append('clip_')
        super().clip_(img_shape)


# A box type that is not axis-aligned (like mmrotate's QuadriBoxes): every
# abstract operation left out, so using any of them would fail.
_QuadBoxes = type(
    'QuadBoxes', (BaseBoxes, ),
    dict(box_dim=8, **{name: None
                       for name in BaseBoxes.__abstractmethods__}))


def test_box_type_operations_are_used():
    img = pattern(300, 300)
    results = make_results(
        img, chip=make_chip((50, 40, 250, 240), 2.0, valid_gt=[0, 1]))
    results['gt_bboxes'] = _SpyBoxes(
        np.array([[60, 50, 100, 90], [200, 200, 290, 290]], np.float32))
    results['gt_bboxes_labels'] = np.array([0, 1])
    results['gt_ignore_flags'] = np.array([False, False])
    _SpyBoxes.calls.clear()
    out = SniperChipCrop()(results)
    assert _SpyBoxes.calls == ['translate_', 'rescale_', 'clip_']
    assert type(out['gt_bboxes']) is _SpyBoxes
    assert out['gt_bboxes'].tensor.dtype == torch.float32
    np.testing.assert_allclose(out['gt_bboxes'].numpy(),
                               [[20, 20, 100, 100], [300, 320, 400, 400]])


def test_other_box_types_are_refused():
    img = pattern(300, 300)
    results = make_results(
        img,
        chip=make_chip((0, 0, 200, 200), 1.0, valid_gt=[0]),
        img_path='dir/rotated_7.jpg')
    results['gt_bboxes'] = _QuadBoxes(np.zeros((1, 8), np.float32))
    results['gt_bboxes_labels'] = np.array([0])
    with pytest.raises(TypeError) as exc:
        SniperChipCrop()(results)
    msg = str(exc.value)
    assert 'QuadBoxes' in msg and 'HorizontalBoxes' in msg
    assert 'rotated_7.jpg' in msg and "'gt_bboxes'" in msg
    # proposals too
    results = make_results(
        img,
        chip=make_chip((0, 0, 200, 200), 1.0),
        img_path='dir/rotated_7.jpg')
    results['proposals'] = _QuadBoxes(np.zeros((2, 8), np.float32))
    with pytest.raises(TypeError, match="'proposals'.*QuadBoxes"):
        SniperChipCrop()(results)
    # and anything that is not boxes at all
    results = make_results(img, chip=make_chip((0, 0, 200, 200), 1.0))
    results['gt_bboxes'] = [[0, 0, 10, 10]]
    with pytest.raises(TypeError):
        SniperChipCrop()(results)


def test_proposal_boxes_keep_their_type():
    img = pattern(300, 400)
    results = make_results(img, chip=make_chip((100, 100, 300, 200), 2.0))
    results['proposals'] = HorizontalBoxes(
        np.array([[110, 110, 150, 150], [0, 0, 50, 50]], np.float32))
    out = SniperChipCrop()(results)
    assert type(out['proposals']) is HorizontalBoxes
    np.testing.assert_allclose(out['proposals'].numpy(), [[20, 20, 100, 100]])
