# Copyright (c) mmsniper contributors. All rights reserved.
"""FocusPixel labels through the chip pipeline (AutoFocus training)."""
import math

import numpy as np
import pytest
import torch
from mmcv.transforms import Compose

from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmsniper.chips import focus_pixel_labels
from mmsniper.datasets.transforms import FocusPixelLabels, chip_meta_keys


def _results(boxes, chip_box, s, img_hw=(600, 800)):
    h, w = img_hw
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return dict(
        img=np.zeros((h, w, 3), np.uint8),
        img_shape=(h, w),
        ori_shape=(h, w),
        img_path='img.jpg',
        gt_bboxes=HorizontalBoxes(boxes),
        gt_bboxes_labels=np.zeros(len(boxes), np.int64),
        gt_ignore_flags=np.zeros(len(boxes), bool),
        sniper_chip=dict(
            box=np.asarray(chip_box, np.float32),
            scale_factor=s,
            scale_idx=0,
            valid_range=(-1, -1),
            valid_gt=np.arange(len(boxes)),
            chip_size=(512, 512),
            is_negative=False))


def _pipeline(flip_prob):
    return Compose([
        dict(type='SniperChipCrop'),
        dict(type='RandomFlip', prob=flip_prob),
        dict(type='FocusPixelLabels'),
        dict(type='PackSniperDetInputs',
             meta_keys=chip_meta_keys() + ('flip', 'flip_direction'))
    ])


def test_labels_count_pieces_under_the_min_gt_size():
    # chip (0, 0, 400, 300) at s = 1: a 6 px object, dropped from the GT by
    # the 10 px filter, is still positive (sqrt-area in (5, 64)); a 40 px
    # object is positive; a 200 px one is large (0)
    boxes = [[100, 100, 106, 106], [200, 40, 240, 80], [10, 60, 210, 260]]
    out = _pipeline(0.)(_results(boxes, (0, 0, 400, 300), 1.0))
    sample = out['data_samples']
    assert len(sample.gt_instances) == 2  # the 6 px piece is gone
    fmap = sample.gt_focus_map.data[0]
    # map covers the whole 512 chip, padding included (32 x 32 cells)
    assert fmap.shape == (32, 32) and fmap.dtype == torch.long
    expected = focus_pixel_labels(
        np.array(boxes, float)[:2], (32, 32))
    assert torch.equal(fmap, torch.from_numpy(expected).long())
    assert fmap[6, 6] == 1 and fmap[3, 13] == 1
    assert (fmap == -1).sum() == 0


def test_labels_use_chip_px_and_clipping():
    # at s = 2 a 20 px object is 40 chip px; an object half outside the
    # chip is clipped before its band is decided
    boxes = [[110, 110, 130, 130], [190, 100, 250, 160]]
    out = _pipeline(0.)(_results(boxes, (100, 100, 356, 356), 2.0))
    fmap = out['data_samples'].gt_focus_map.data[0].numpy()
    # first: chip px (20, 20, 60, 60) -> cells 1..4, positive
    assert (fmap[1:5, 1:5] == 1).all()
    # second: chip px (180, 0, 300, 120) -> 120 x 120, large: 0
    assert (fmap[0:8, 12:19] == 0).all()
    boxes = [[0, 100, 60, 140]]
    out = _pipeline(0.)(_results(boxes, (40, 100, 296, 356), 2.0))
    fmap = out['data_samples'].gt_focus_map.data[0].numpy()
    # clipped to orig (40, 100, 60, 140) -> chip (0, 0, 40, 80): sqrt-area
    # 56.6, positive; unclipped it would be 113 (large, 0). Cells 0..3 x
    # 0..5, ends included
    assert (fmap[0:6, 0:4] == 1).all() and fmap[0, 4] == 0
    assert fmap[6, 0] == 0


def test_flipped_chip_flips_the_map():
    boxes = [[20, 30, 60, 50]]
    plain = _pipeline(0.)(_results(boxes, (0, 0, 300, 200), 1.0))
    flipped = _pipeline(1.)(_results(boxes, (0, 0, 300, 200), 1.0))
    assert flipped['data_samples'].flip
    # the unpadded chip is 300 px wide: the box moves to x in [240, 280]
    expected = focus_pixel_labels([[240, 30, 280, 50]], (32, 32))
    assert torch.equal(flipped['data_samples'].gt_focus_map.data[0],
                       torch.from_numpy(expected).long())
    assert not torch.equal(plain['data_samples'].gt_focus_map.data,
                           flipped['data_samples'].gt_focus_map.data)
    # the GT box and the positive cells agree after the flip
    gt = flipped['data_samples'].gt_instances.bboxes.tensor[0].tolist()
    assert gt == [240., 30., 280., 50.]


def test_settings_repr_and_errors():
    t = TRANSFORMS.build(
        dict(type='FocusPixelLabels', stride=8, positive_range=(4, 32),
             ignore_upper=48))
    assert isinstance(t, FocusPixelLabels)
    assert repr(t) == ('FocusPixelLabels(stride=8, positive_range=(4, 32), '
                       "ignore_upper=48, boxes='chip', outside_gt='drop')")
    with pytest.raises(ValueError, match="'chip' or 'gt'"):
        FocusPixelLabels(boxes='all')
    with pytest.raises(ValueError, match='positive_range'):
        FocusPixelLabels(positive_range=(64, 5))
    with pytest.raises(KeyError, match='SniperChipCrop'):
        FocusPixelLabels()(dict(img_shape=(10, 10)))
    # vertical and diagonal flips too
    res = dict(focus_gt_bboxes=np.array([[0., 0., 16., 16.]]),
               img_shape=(64, 48), chip_size=(64, 48), flip=True,
               flip_direction='diagonal')
    fmap = FocusPixelLabels()(res)['gt_focus_map']
    assert fmap.shape == (4, 3)
    assert fmap[3, 2] == 1 and fmap[0, 0] == 0


def test_full_image_labels_from_resized_and_flipped_gt():
    """boxes='gt': a whole image (no chip) after Resize and RandomFlip."""
    # 400 x 300 image, x2 -> 800 x 600; a 20 px object (40 px resized,
    # positive), a 100 px one (200 px resized, large: 0) and a 40 px one
    # (80 px resized: ignored)
    boxes = [[10, 20, 30, 40], [200, 100, 300, 200], [300, 10, 340, 50]]
    for prob in (0., 1.):
        # fresh results each time: Resize rescales the boxes in place
        res = dict(
            img=np.zeros((300, 400, 3), np.uint8), img_shape=(300, 400),
            ori_shape=(300, 400), img_path='img.jpg',
            gt_bboxes=HorizontalBoxes(np.array(boxes, np.float32)),
            gt_bboxes_labels=np.zeros(3, np.int64),
            gt_ignore_flags=np.zeros(3, bool))
        out = Compose([
            dict(type='Resize', scale_factor=2.0, keep_ratio=True),
            dict(type='RandomFlip', prob=prob),
            dict(type='FocusPixelLabels', boxes='gt'),
            dict(type='PackSniperDetInputs')
        ])(res)
        fmap = out['data_samples'].gt_focus_map.data[0].numpy()
        assert fmap.shape == (38, 50)  # ceil(600 / 16), 800 / 16
        resized = np.array(boxes, float) * 2
        if prob:
            resized[:, [0, 2]] = 800 - resized[:, [2, 0]]
        assert np.array_equal(fmap, focus_pixel_labels(resized, (38, 50)))
        # the positive object's cells follow the flip
        col = 1 if not prob else 48
        assert fmap[3, col] == 1 and fmap[3, 49 - col] == 0
        assert (fmap == -1).any()
    with pytest.raises(KeyError, match='gt_bboxes'):
        FocusPixelLabels(boxes='gt')(dict(img_shape=(10, 10)))


def reference_gen_mask(image_boxes, chip_xy, scale, chip=512, stride=16):
    """The reference's FocusPixel labels of a chip
    (lib/data_utils/data_workers.py:165-192 and 208-222): every GT of the
    image shifted to the chip, scaled, rounded and clipped to [0, chip - 1]
    (``clip_boxes`` with ``im_info`` the 512 px chip), then ``gen_mask``
    (boxes here never overlap, so its last-box-wins order is moot)."""
    boxes = np.asarray(image_boxes, dtype=np.float64).copy()
    boxes[:, [0, 2]] -= chip_xy[0]
    boxes[:, [1, 3]] -= chip_xy[1]
    boxes = np.clip(np.round(boxes * scale), 0, chip - 1)
    cells = chip // stride
    cmask = np.zeros((cells, cells), dtype=np.int64)
    for x1, y1, x2, y2 in boxes:
        area = np.sqrt((x2 - x1) * (y2 - y1))
        flag = 0
        if 5 < area < 64:
            flag = 1
        elif 64 <= area < 90 or area <= 5:
            flag = -1
        for p1 in range(int(x1 / stride),
                        min(int(math.ceil(x2 / stride)) + 1, cells)):
            for p2 in range(int(y1 / stride),
                            min(int(math.ceil(y2 / stride)) + 1, cells)):
                if flag:
                    cmask[p2][p1] = flag
    return cmask


def test_outside_gt_border_is_the_reference_labels():
    """Issue 19, item 13: the reference labels a chip from every GT of the
    image; a GT outside the chip collapses onto its border (sqrt-area 0)
    and marks the cells it projects onto as ignored. ``outside_gt='border'``
    reproduces that; the default leaves those cells 0."""
    # a 512 px chip at (100, 100) of an 800 x 700 image, scale 1
    boxes = [
        [20, 200, 60, 240],  # left of the chip: column 0, rows 6..9
        [650, 300, 700, 340],  # right of it: column 31, rows 12..15
        [300, 300, 330, 330],  # inside, 30 px: positive
        [700, 650, 720, 680],  # below and right: the corner cell
        [130, 20, 150, 50],  # above it: row 0, columns 1..4
    ]
    res = _results(boxes, (100, 100, 612, 612), 1.0, img_hw=(700, 800))
    chip_pipe = [dict(type='SniperChipCrop'),
                 dict(type='RandomFlip', prob=0.)]
    ref = reference_gen_mask(boxes, (100, 100), 1.0)
    assert (ref == -1).sum() == 4 + 4 + 1 + 4 and (ref == 1).sum() == 16
    out = Compose(chip_pipe + [
        dict(type='FocusPixelLabels', outside_gt='border')])(dict(res))
    np.testing.assert_array_equal(out['gt_focus_map'], ref)
    res = _results(boxes, (100, 100, 612, 612), 1.0, img_hw=(700, 800))
    out = Compose(chip_pipe + [dict(type='FocusPixelLabels')])(res)
    inside = ref.copy()
    inside[inside == -1] = 0  # only the positive object is inside
    np.testing.assert_array_equal(out['gt_focus_map'], inside)
    # flipped: the GT left of the chip now lies right of it
    res = _results(boxes[:1], (100, 100, 612, 612), 1.0, img_hw=(700, 800))
    out = Compose([dict(type='SniperChipCrop'),
                   dict(type='RandomFlip', prob=1.),
                   dict(type='FocusPixelLabels', outside_gt='border')])(res)
    fmap = out['gt_focus_map']
    assert (fmap[6:10, 31] == -1).all() and (fmap == -1).sum() == 4
    with pytest.raises(ValueError, match="'drop' or 'border'"):
        FocusPixelLabels(outside_gt='all')
    with pytest.raises(ValueError, match="needs boxes='chip'"):
        FocusPixelLabels(boxes='gt', outside_gt='border')
    with pytest.raises(KeyError, match='focus_gt_outside'):
        FocusPixelLabels(outside_gt='border')(
            dict(img_shape=(10, 10), focus_gt_bboxes=np.zeros((0, 4))))
