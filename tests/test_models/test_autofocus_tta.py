# Copyright (c) mmsniper contributors. All rights reserved.
"""AutoFocusTTAModel: coarse to fine on FocusChips, pixel accounting."""
import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData

from mmdet.registry import MODELS

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from sniper_tta_doubles import (DrawnObjectsDetector, draw_objects,  # noqa
                                random_objects)

SCALES = [2.0, 1.0, 0.5]
RANGES = [(-1, 40), (24, 90), (60, -1)]


class FocusDrawnObjectsDetector(DrawnObjectsDetector):
    """Also predicts a focus map: a stride-16 cell of its input is 1 where a
    drawn object (channel 0) covers any of its pixels, else 0."""

    stride = 16

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        results = super().predict(batch_inputs, batch_data_samples, rescale)
        for img, out in zip(batch_inputs, results):
            height, width = out.img_shape
            mask = (img[0, :height, :width] > 127).float()[None, None]
            cells = torch.nn.functional.max_pool2d(
                mask, self.stride, self.stride, ceil_mode=True)[0]
            out.pred_focus_map = PixelData(
                data=cells, metainfo=dict(stride=self.stride))
        return results


def _input(img):
    from mmdet.structures import DetDataSample
    size = img.shape[:2]
    sample = DetDataSample(
        metainfo=dict(img_id=0, ori_shape=size, img_shape=size,
                      img_path='scene.png'))
    return dict(
        inputs=[torch.from_numpy(img).permute(2, 0, 1).contiguous()],
        data_samples=[sample])


def _model(module, type='AutoFocusTTAModel', **kwargs):
    cfg = dict(
        type=type,
        module=module,
        scales=SCALES,
        valid_ranges=RANGES,
        view_nms=None,
        merge_cfg=dict(nms=dict(type='nms', iou_threshold=0.5)))
    if type == 'AutoFocusTTAModel':
        cfg['chip_params'] = [(1, 0.5, 4), (1, 0.5, 4)]
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _scene(seed=0):
    size = (400, 640)
    boxes, labels = random_objects(size, 6, 8, 20, seed=seed, gap=40)
    # keep the objects in one corner: most of the image is empty
    boxes = boxes // 3
    return draw_objects(size, boxes, labels), boxes, labels


def _boxes(pred):
    order = np.lexsort(pred.bboxes.numpy().T[::-1])
    return pred.bboxes.numpy()[order], pred.labels.numpy()[order]


def test_focus_off_equals_the_full_multiscale_test():
    img, _, _ = _scene()
    full = _model(FocusDrawnObjectsDetector(), type='SniperTTAModel')
    off = _model(FocusDrawnObjectsDetector(), focus=False)
    a = full.test_step(_input(img))[0].pred_instances
    b = off.test_step(_input(img))[0].pred_instances
    assert len(a) > 0
    np.testing.assert_array_equal(_boxes(a)[0], _boxes(b)[0])
    np.testing.assert_array_equal(_boxes(a)[1], _boxes(b)[1])
    assert torch.equal(a.scores.sort().values, b.scores.sort().values)
    np.testing.assert_array_equal(off.sniper_stats['pixels'],
                                  full.sniper_stats['pixels'])
    np.testing.assert_array_equal(off.sniper_stats['full_pixels'],
                                  off.sniper_stats['pixels'])


def test_focus_finds_the_objects_for_fewer_pixels(tmp_path):
    img, boxes, labels = _scene()
    det = FocusDrawnObjectsDetector()
    model = _model(det, vis_dir=str(tmp_path))
    pred = model.test_step(_input(img))[0].pred_instances
    full = _model(FocusDrawnObjectsDetector(), focus=False)
    full_pred = full.test_step(_input(img))[0].pred_instances
    # every drawn object is found once, with its label, as the full test
    for found in (pred, full_pred):
        dist = np.abs(found.bboxes.numpy()[:, None] - boxes[None]).max(-1)
        assert (dist.min(0) <= 1.0).all()
        assert ((dist <= 1.0).sum(0) == 1).all()
        assert (found.labels.numpy()[dist.argmin(0)] == labels).all()
    stats = model.sniper_stats
    # the coarsest scale (last) ran on the whole image; the finer scales on
    # FocusChips only, far fewer pixels than the whole image there
    assert stats['pixels'][2] == stats['full_pixels'][2] == 200 * 320
    assert stats['full_pixels'][0] == 800 * 1280
    assert stats['full_pixels'][1] == 400 * 640
    assert 0 < stats['pixels'][0] < 0.25 * stats['full_pixels'][0]
    assert 0 < stats['pixels'][1] < 0.5 * stats['full_pixels'][1]
    # what the detector saw is what was counted
    assert sum(h * w for h, w in det.calls) == stats['pixels'].sum()
    record = model.focus_records[0]
    assert record['img_path'] == 'scene.png'
    np.testing.assert_array_equal(record['pixels'], stats['pixels'])
    # one picture per image, the size of the image
    picture = cv2.imread(str(tmp_path / 'scene_autofocus.jpg'))
    assert picture.shape == (400, 640, 3)


def test_empty_focus_map_skips_the_finer_scales():
    img = np.zeros((300, 400, 3), np.uint8)
    det = FocusDrawnObjectsDetector()
    model = _model(det)
    pred = model.test_step(_input(img))[0].pred_instances
    assert len(pred) == 0
    assert len(det.calls) == 1  # only the coarsest scale
    assert model.sniper_stats['pixels'][:2].sum() == 0


class LabelZeroFocusDetector(FocusDrawnObjectsDetector):
    """Focus only on the objects of label 0 (channel 1 == 60)."""

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        results = DrawnObjectsDetector.predict(self, batch_inputs,
                                               batch_data_samples, rescale)
        for img, out in zip(batch_inputs, results):
            height, width = out.img_shape
            planes = img[:, :height, :width].float()
            mask = ((planes[0] > 127) & (planes[1] < 90)).float()[None, None]
            cells = torch.nn.functional.max_pool2d(
                mask, self.stride, self.stride, ceil_mode=True)[0]
            out.pred_focus_map = PixelData(
                data=cells, metainfo=dict(stride=self.stride))
        return results


@pytest.mark.parametrize('margin, expected', [(2, 1), (0, 2)])
def test_chip_edge_detections_are_pruned(margin, expected):
    """Object A (label 0) draws a one-cell FocusChip, 96..112 px; object B
    (label 1, no focus) starts at x = 111, so the fine scale sees a 1 px
    sliver of it at the chip's right edge, an inner edge: pruned with a
    margin, reported without one. The coarse scale (range 1000+) reports
    nothing."""
    img = draw_objects((256, 256),
                       np.array([[100, 100, 110, 110], [111, 98, 150, 112]]),
                       [0, 1])
    model = _model(
        LabelZeroFocusDetector(), scales=[2.0, 1.0],
        valid_ranges=[(-1, -1), (1000, -1)], chip_params=[(1, 0.5, 1)],
        tile_cfg=dict(edge_margin=margin))
    pred = model.test_step(_input(img))[0].pred_instances
    assert len(pred) == expected
    boxes = pred.bboxes.numpy()
    np.testing.assert_allclose(boxes[np.argmin(boxes[:, 0])],
                               [100, 100, 110, 110], atol=0.5)
    # the fine scale saw only the chip: 16 x 16 orig px at 2x
    assert model.sniper_stats['pixels'][0] == 32 * 32


def test_settings_and_errors():
    with pytest.raises(ValueError, match='chip_params needs one'):
        _model(FocusDrawnObjectsDetector(), chip_params=[(3, 0.02, 16)])
    with pytest.raises(ValueError, match='dilation'):
        _model(FocusDrawnObjectsDetector(), chip_params=[(0, 0.5, 4)] * 2)
    img, _, _ = _scene()
    model = _model(DrawnObjectsDetector())
    with pytest.raises(KeyError, match='AutoFocusDetector'):
        model.test_step(_input(img))
    assert 'focus=True' in repr(_model(FocusDrawnObjectsDetector()))


@pytest.mark.parametrize('flip', [False, True])
def test_focus_chips_are_not_merged_with_each_other(flip):
    """Issue 19, item 13: as in the reference (lib/inference.py: no NMS
    per chip; ``aggregate`` sends every chip's detections to the final
    Soft-NMS), overlapping FocusChips of one scale each keep their own
    detection of an object they share; ``view_nms`` still merges a chip
    with its flipped copy. ``nms_across_chips=True`` merges the chips too.

    The coarse scale (1.0) is cut into 9 overlapping tiles that all contain
    the object, so 9 focus maps give 9 overlapping FocusChips at 2.0; the
    coarse scale's own detections are out of its range (1000+)."""
    img = draw_objects((256, 256), np.array([[120, 120, 130, 130]]), [0])

    def run(**kwargs):
        det = FocusDrawnObjectsDetector()
        model = _model(
            det, scales=[2.0, 1.0], valid_ranges=[(-1, -1), (1000, -1)],
            chip_params=[(1, 0.5, 2)], flip=flip,
            view_nms=dict(type='nms', iou_threshold=0.5),
            merge_cfg=dict(nms=dict(type='soft_nms', sigma=0.55,
                                    min_score=0.0, method='gaussian')),
            tile_cfg=dict(max_pixels=1e4, tile_size=160, overlap=96,
                          edge_margin=2), **kwargs)
        pred = model.test_step(_input(img))[0].pred_instances
        return pred, model.sniper_stats['views']

    pred, views = run()
    assert views[1] == 9 * (1 + flip)  # 9 coarse tiles
    assert views[0] == 9 * (1 + flip)  # 9 FocusChips, each found it
    assert len(pred) == 9  # one per chip (flipped copies merged)
    np.testing.assert_allclose(pred.bboxes.numpy(),
                               np.tile([[120, 120, 130, 130]], (9, 1)),
                               atol=0.5)
    # the best keeps its score; the other 8 are decayed by Soft-NMS
    assert pred.scores.max().item() == pytest.approx(0.9)
    pred, _ = run(nms_across_chips=True)
    assert len(pred) == 1
    assert 'nms_across_chips=True' in repr(
        _model(FocusDrawnObjectsDetector(), nms_across_chips=True))


def test_chip_holes_reaches_the_chip_generator():
    """``chip_holes=True`` takes the holes of the focus map's regions, as
    the reference's RETR_LIST contours: a 5 x 5 cell object with a one-cell
    hole off its centre gives a 9-cell FocusChip instead of 8."""
    img = np.zeros((480, 640, 3), np.uint8)
    img[160:240, 160:240] = (255, 60, 0)
    img[176:192, 176:192] = 0  # the hole: cell (11, 11)
    for holes, side in ((False, 8), (True, 9)):
        model = _model(FocusDrawnObjectsDetector(), scales=[2.0, 1.0],
                       valid_ranges=[(-1, -1), (-1, -1)],
                       chip_params=[(1, 0.5, 8)], chip_holes=holes)
        model.test_step(_input(img))
        assert model.sniper_stats['pixels'][0] == (side * 16 * 2)**2


def test_disjoint_focus_chips_give_the_same_detections_either_way():
    """The chips of one focus map never overlap and a detection is clipped
    to its chip, so with one map per scale (no tiles) merging the chips
    with ``view_nms`` or not gives the same detections: 4 and 7 FocusChips
    here."""
    boxes, labels = random_objects((400, 640), 8, 8, 30, seed=0, gap=20)
    img = draw_objects((400, 640), boxes, labels)
    out = []
    for across in (False, True):
        model = _model(
            FocusDrawnObjectsDetector(), nms_across_chips=across,
            view_nms=dict(type='nms', iou_threshold=0.5),
            merge_cfg=dict(nms=dict(type='soft_nms', sigma=0.55,
                                    min_score=0.001, method='gaussian')))
        out.append(model.test_step(_input(img))[0].pred_instances)
        assert model.sniper_stats['views'].tolist() == [7, 4, 1]
    assert len(out[0]) >= len(boxes)  # + decayed duplicates of 2 scales
    for a, b in zip(_boxes(out[0]), _boxes(out[1])):
        np.testing.assert_array_equal(a, b)
    assert torch.equal(out[0].scores.sort().values,
                       out[1].scores.sort().values)


def test_scales_coarsest_first_are_refused():
    # issue 19, item 6: AutoFocus takes the scales finest first and runs
    # the last one (the coarsest) on the whole image; given coarsest first,
    # it would run the finest scale on the whole image
    with pytest.raises(ValueError,
                       match=r'AutoFocusTTAModel.scales = .*finest first'):
        _model(FocusDrawnObjectsDetector(), scales=SCALES[::-1],
               valid_ranges=RANGES[::-1])
