"""SniperTTAModel: valid ranges, Soft-NMS merge, tiled inference, memory."""
import os.path as osp
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from sniper_tta_doubles import (CheapDetector, DrawnObjectsDetector,  # noqa
                                draw_objects, random_objects)

REF_RANGES = [(-1, 90), (32, 180), (75, -1)]


def _model(module=None, **kwargs):
    cfg = dict(
        type='SniperTTAModel',
        module=module if module is not None else CheapDetector(),
        scales=[(1400, 2000), (800, 1280), (480, 512)],
        valid_ranges=REF_RANGES)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _scale_sample(scale_idx, boxes, scores, labels):
    sample = DetDataSample(metainfo=dict(img_id=7, sniper_scale_idx=scale_idx))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.long))
    return sample


def test_merge_keeps_each_box_from_its_scale_and_merges_duplicates():
    small = [100, 100, 120, 120]  # sqrt-area 20: fine scale only
    large = [0, 0, 300, 300]  # 300: coarse scale only
    medium = [400, 400, 450, 450]  # 50: fine and middle scales
    medium2 = [401, 400, 451, 450]  # the same object seen at scale 1
    samples = [
        _scale_sample(0, [small, large, medium], [0.9, 0.8, 0.7], [0, 1, 0]),
        _scale_sample(1, [small, large, medium2], [0.6, 0.5, 0.95],
                      [0, 1, 0]),
        _scale_sample(2, [small, large], [0.4, 0.85], [0, 1]),
    ]
    model = _model()
    result = model.merge_preds([samples])[0]
    assert result.img_id == 7 and 'sniper_scale_idx' not in result
    inst = result.pred_instances
    order = inst.scores.argsort(descending=True)
    boxes = inst.bboxes[order].round().tolist()
    scores = inst.scores[order].tolist()
    # small: only scale 0's 0.9; large: only scale 2's 0.85; medium: the
    # best (0.95, scale 1) kept, scale 0's duplicate decayed by Gaussian
    # Soft-NMS (sigma 0.55): 0.7 * exp(-iou^2 / 0.55)
    assert boxes[:3] == [medium2, small, large]
    assert scores[:3] == pytest.approx([0.95, 0.9, 0.85])
    iou = (49 * 50) / (50 * 50 * 2 - 49 * 50)
    assert boxes[3] == medium
    assert scores[3] == pytest.approx(0.7 * np.exp(-iou**2 / 0.55), rel=1e-4)
    assert len(inst) == 4


def test_merge_plain_nms_and_top_k():
    boxes = [[0, 0, 50, 50], [1, 0, 51, 50], [100, 100, 150, 150]]
    samples = [_scale_sample(0, boxes, [0.9, 0.8, 0.7], [0, 0, 1])]
    model = _model(
        scales=[1.0],
        valid_ranges=[(-1, -1)],
        merge_cfg=dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=1))
    inst = model.merge_preds([samples])[0].pred_instances
    assert inst.bboxes.tolist() == [[0, 0, 50, 50]]
    model.merge_cfg['max_per_img'] = 200
    inst = model.merge_preds([samples])[0].pred_instances
    assert inst.scores.tolist() == pytest.approx([0.9, 0.7])
    # Soft-NMS score floor: a duplicate decayed under min_score is dropped
    model = _model(
        scales=[1.0],
        valid_ranges=[(-1, -1)],
        merge_cfg=dict(
            nms=dict(
                type='soft_nms', sigma=0.55, min_score=0.5,
                method='gaussian')))
    inst = model.merge_preds([samples])[0].pred_instances
    assert len(inst) == 2


def reference_soft_nms(dets, sigma=0.55, threshold=0.001):
    """The reference's Gaussian Soft-NMS (lib/nms/cpu_nms.pyx
    ``cpu_soft_nms``, method 2): pixel-inclusive IoU (``x2 - x1 + 1``);
    returns the kept ``(x1, y1, x2, y2, score)`` rows."""
    boxes = np.array(dets, dtype=np.float64)
    n = len(boxes)
    for i in range(len(boxes)):
        if i >= n:  # its range(N) is evaluated once; rows past N are moot
            break
        top = i + int(np.argmax(boxes[i:n, 4]))
        boxes[[i, top]] = boxes[[top, i]]
        tx1, ty1, tx2, ty2 = boxes[i, :4]
        pos = i + 1
        while pos < n:
            x1, y1, x2, y2 = boxes[pos, :4]
            iw = min(tx2, x2) - max(tx1, x1) + 1
            ih = min(ty2, y2) - max(ty1, y1) + 1
            if iw > 0 and ih > 0:
                union = ((tx2 - tx1 + 1) * (ty2 - ty1 + 1) +
                         (x2 - x1 + 1) * (y2 - y1 + 1) - iw * ih)
                boxes[pos, 4] *= np.exp(-(iw * ih / union)**2 / sigma)
                if boxes[pos, 4] < threshold:
                    boxes[pos] = boxes[n - 1]
                    n -= 1
                    pos -= 1
            pos += 1
    return boxes[:n]


def test_soft_nms_offset_gives_the_reference_iou():
    """Issue 19, item 13: the reference's Soft-NMS measures boxes pixel-
    inclusively (widths x2 - x1 + 1); ``merge_cfg.nms.offset=1`` does the
    same, the default (0) uses x2 - x1."""
    boxes = [[0, 0, 10, 10], [5, 0, 15, 10]]
    samples = [_scale_sample(0, boxes, [0.9, 0.8], [0, 0])]

    def merged(offset):
        model = _model(
            scales=[1.0],
            valid_ranges=[(-1, -1)],
            merge_cfg=dict(
                nms=dict(type='soft_nms', sigma=0.55, min_score=0.001,
                         method='gaussian', offset=offset)))
        inst = model.merge_preds([samples])[0].pred_instances
        return sorted(inst.scores.tolist())[0]

    # by hand: inclusive, the overlap is 6 x 11 of two 11 x 11 boxes
    iou_ref = 66 / (121 + 121 - 66)
    iou_mmdet = 50 / (100 + 100 - 50)
    assert merged(1) == pytest.approx(0.8 * np.exp(-iou_ref**2 / 0.55),
                                      rel=1e-5)
    assert merged(0) == pytest.approx(0.8 * np.exp(-iou_mmdet**2 / 0.55),
                                      rel=1e-5)
    # against a port of the reference on random clusters of boxes
    rng = np.random.default_rng(0)
    centres = rng.uniform(20, 180, (6, 2))
    xy = centres[rng.integers(0, 6, 60)] + rng.normal(0, 4, (60, 2))
    wh = rng.uniform(5, 30, (60, 2))
    dets = np.concatenate([xy, xy + wh, rng.uniform(0.01, 1, (60, 1))],
                          axis=1).round(1)
    model = _model(
        scales=[1.0],
        valid_ranges=[(-1, -1)],
        merge_cfg=dict(
            nms=dict(type='soft_nms', sigma=0.55, min_score=0.001,
                     method='gaussian', offset=1), max_per_img=-1))
    inst = model.merge_preds([[_scale_sample(0, dets[:, :4], dets[:, 4],
                                             [0] * 60)]])[0].pred_instances
    ours = np.concatenate([inst.bboxes.numpy(), inst.scores.numpy()[:, None]],
                          axis=1)
    ref = reference_soft_nms(dets)
    assert len(ours) == len(ref) > 30
    np.testing.assert_allclose(ours[np.lexsort(ours.T)],
                               ref[np.lexsort(ref.T)], rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match='offset must be 0 or 1'):
        _model(merge_cfg=dict(nms=dict(type='soft_nms', offset=2)))


def test_clip_offset_clips_to_the_last_pixel():
    """Issue 19, item 13: the reference clips each box to the last pixel of
    the scaled image it was found in (``w - 1``, lib/inference.py:128);
    ``clip_offset=1`` does the same, the default keeps ``[0, w]``."""
    img = draw_objects((100, 120), np.array([[90, 70, 120, 100]]), [1])
    for flip in (False, True):
        out = {}
        for offset in (0, 1):
            model = _model(
                DrawnObjectsDetector(), scales=[2.0], valid_ranges=[(-1, -1)],
                flip=flip, clip_offset=offset)
            inst = model.test_step(_input(img))[0].pred_instances
            assert len(inst) == 1
            out[offset] = inst.bboxes[0].tolist()
        assert out[0] == pytest.approx([90, 70, 120, 100])
        # 240 x 200 px view: clipped to 239 and 199, 0.5 orig px
        assert out[1] == pytest.approx([90, 70, 119.5, 99.5])
    with pytest.raises(ValueError, match='clip_offset must be 0 or 1'):
        _model(clip_offset=2)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match='3 scales but 1 valid_ranges'):
        _model(valid_ranges=[(-1, 90)])
    # issue 19, item 6: coarsest first (ranges left finest first) gave
    # each scale another scale's range
    with pytest.raises(ValueError,
                       match=r'SniperTTAModel.scales = .*finest first'):
        _model(scales=[(480, 512), (800, 1280), (1400, 2000)])
    with pytest.raises(ValueError, match='finest first'):
        _model(scales=[0.5, 1.0], valid_ranges=[(-1, 64), (32, -1)])
    with pytest.raises(ValueError, match='ordered like the scales'):
        _model(valid_ranges=[(75, -1), (32, 180), (-1, 90)])
    with pytest.raises(ValueError, match='positive'):
        _model(scales=[0, 1.0, 2.0])
    with pytest.raises(ValueError, match='unknown tile_cfg'):
        _model(tile_cfg=dict(max_pixel=3))


def _input(img):
    size = img.shape[:2]
    sample = DetDataSample(
        metainfo=dict(img_id=0, ori_shape=size, img_shape=size))
    return dict(
        inputs=[torch.from_numpy(img).permute(2, 0, 1).contiguous()],
        data_samples=[sample])


def _match(pred, boxes, labels):
    pb = pred.bboxes.numpy()
    dist = np.abs(pb[:, None, :] - boxes[None]).max(-1)
    return dist, pred.labels.numpy()


@pytest.mark.parametrize('flip', [False, True])
def test_tiled_inference_finds_what_whole_image_inference_finds(flip):
    """A double that detects exactly the drawn objects (cut ones cut, as a
    real detector clips to its input): tiled and untiled inference at 1.5x
    both find every object once, within 1 px, with its label."""
    size = (420, 700)
    boxes, labels = random_objects(size, 30, 6, 48, seed=3)
    img = draw_objects(size, boxes, labels)
    results, models = [], []
    for tile_cfg in (dict(max_pixels=1e9),
                     dict(max_pixels=1e5, tile_size=240, edge_margin=6)):
        det = DrawnObjectsDetector()
        model = _model(
            det,
            scales=[1.5],
            valid_ranges=[(-1, 48)],
            flip=flip,
            batch_size=3,
            tile_cfg=tile_cfg)
        results.append(model.test_step(_input(img))[0].pred_instances)
        models.append((model, det))
    whole, tiled = results
    (whole_model, whole_det), (tiled_model, tiled_det) = models
    assert len(whole_det.calls) == (2 if flip else 1)
    assert whole_det.calls[0] == (630, 1050)
    assert len(tiled_det.calls) > 12  # really tiled
    assert max(tiled_det.calls) <= (240, 240)
    for pred in (whole, tiled):
        dist, pred_labels = _match(pred, boxes, labels)
        assert len(pred) == len(boxes)
        assert (dist.min(0) <= 1.0).all()  # every object found
        assert ((dist <= 1.0).sum(0) == 1).all()  # once
        assert (pred_labels[dist.argmin(0)] == labels).all()
    # and the two agree box for box
    dist = np.abs(whole.bboxes.numpy()[:, None] -
                  tiled.bboxes.numpy()[None]).max(-1)
    assert (dist.min(1) <= 1.0).all()
    # pixel accounting: the tiles cost more than the whole image
    views = 2 if flip else 1
    assert whole_model.sniper_stats['pixels'][0] == 630 * 1050 * views
    assert tiled_model.sniper_stats['pixels'][0] == sum(
        h * w for h, w in tiled_det.calls)
    assert tiled_model.sniper_stats['tiled_images'][0] == 1
    assert whole_model.sniper_stats['images'] == 1


@pytest.mark.parametrize('flip', [False, True])
@pytest.mark.parametrize('tiled', [False, True])
def test_masks_follow_their_boxes_to_original_resolution(flip, tiled):
    """Mask R-CNN-like output: each kept detection's mask comes back at
    original resolution, on its object, through scales (with valid
    ranges), flips, tiles and the Soft-NMS merge."""
    size = (300, 460)
    boxes, labels = random_objects(size, 20, 6, 60, seed=5)
    img = draw_objects(size, boxes, labels)
    tile_cfg = dict(max_pixels=4e4, tile_size=160, edge_margin=6) \
        if tiled else dict(max_pixels=1e9)
    det = DrawnObjectsDetector(with_masks=True)
    model = _model(det, scales=[1.5, 0.75],
                   valid_ranges=[(-1, 40), (30, -1)], flip=flip,
                   tile_cfg=tile_cfg)
    pred = model.test_step(_input(img))[0].pred_instances
    assert 'mask_crops' not in pred
    masks = pred.masks
    assert masks.dtype == torch.bool and masks.shape == (len(pred), *size)
    dist, _ = _match(pred, boxes, labels)
    assert (dist.min(0) <= 1.5).all()  # every object found
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        i = int(dist[:, k].argmin())
        truth = torch.zeros(size, dtype=torch.bool)
        truth[y1:y2, x1:x2] = True
        inter = (masks[i] & truth).sum().item()
        union = (masks[i] | truth).sum().item()
        assert inter / union > 0.85, (k, inter, union)
    # a detector without masks gives none
    plain = _model(DrawnObjectsDetector(), scales=[1.5],
                   valid_ranges=[(-1, -1)]).test_step(_input(img))[0]
    assert 'masks' not in plain.pred_instances


def test_non_finite_boxes_are_left_out_with_a_warning(monkeypatch):
    """A diverged detector's NaN / inf boxes cannot be merged: they are
    dropped, counted and named, the finite ones kept."""
    class Diverged(CheapDetector):

        def predict(self, batch_inputs, batch_data_samples, rescale=True):
            out = super().predict(batch_inputs, batch_data_samples)
            for sample in out:
                sample.pred_instances = InstanceData(
                    bboxes=torch.tensor([[10., 10., 50., 40.],
                                         [float('nan'), 0., 5., 5.],
                                         [0., 0., float('inf'), 9.]]),
                    scores=torch.tensor([0.9, 0.8, 0.7]),
                    labels=torch.tensor([0, 0, 1]))
            return out

    from mmsniper.models.test_time_augs import sniper_tta
    warned = []
    monkeypatch.setattr(sniper_tta, 'warn_once',
                        lambda key, msg: warned.append(msg))
    model = _model(Diverged(), scales=[1.0], valid_ranges=[(-1, -1)])
    data = _input(np.zeros((60, 80, 3), np.uint8))
    data['data_samples'][0].set_metainfo(dict(img_path='diverged.jpg'))
    pred = model.test_step(data)[0].pred_instances
    assert len(warned) == 1 and 'diverged.jpg' in warned[0]
    assert pred.bboxes.tolist() == [[10., 10., 50., 40.]]
    assert model.sniper_stats['non_finite_boxes'] == 2


def test_batch_of_images_of_different_sizes():
    """Each image of a batch gets its own detections, in its own px, when
    views of several images share a forward pass."""
    sizes = [(200, 300), (260, 180)]
    data = dict(inputs=[], data_samples=[])
    truth = []
    for seed, size in enumerate(sizes):
        boxes, labels = random_objects(size, 8, 6, 30, seed=seed)
        one = _input(draw_objects(size, boxes, labels))
        data['inputs'] += one['inputs']
        data['data_samples'] += one['data_samples']
        truth.append((boxes, labels))
    model = _model(
        DrawnObjectsDetector(),
        scales=[2.0, 1.0],
        valid_ranges=[(-1, 20), (15, -1)],
        batch_size=3,
        tile_cfg=dict(max_pixels=5e4, tile_size=160, edge_margin=4))
    outputs = model.test_step(data)
    assert len(outputs) == 2
    for out, (boxes, labels), size in zip(outputs, truth, sizes):
        assert tuple(out.ori_shape) == size
        dist, pred_labels = _match(out.pred_instances, boxes, labels)
        assert (dist.min(0) <= 1.0).all()
        assert (pred_labels[dist.argmin(0)] == labels).all()
        # no ghost from the other image: every kept box is a real object
        strong = out.pred_instances.scores.numpy() > 0.5
        assert (dist[strong].min(1) <= 1.0).all()
    assert model.sniper_stats['images'] == 2
    # 1.0x: 200 x 300 = 60,000 px > 50,000 is tiled, 260 x 180 is not
    assert model.sniper_stats['tiled_images'].tolist() == [2, 1]


def test_tiles_without_edge_pruning_would_report_cut_objects():
    """The pruning is what removes the pieces of cut objects."""
    size = (300, 500)
    boxes, labels = random_objects(size, 20, 20, 40, seed=5)
    img = draw_objects(size, boxes, labels)
    model = _model(
        DrawnObjectsDetector(),
        scales=[1.0],
        valid_ranges=[(-1, 40)],
        tile_cfg=dict(max_pixels=1e4, tile_size=120, edge_margin=0),
        view_nms=None)
    pred = model.test_step(_input(img))[0].pred_instances
    dist, _ = _match(pred, boxes, labels)
    # margin 0 keeps boxes flush with inner tile edges: pieces survive
    assert (dist.min(1) > 1.0).any()


def test_resolution_scales_and_counts():
    det = CheapDetector()
    model = _model(det, flip=True, batch_size=2)
    img = np.zeros((480, 640, 3), dtype=np.uint8)
    out = model.test_step(_input(img))
    assert len(out) == 1 and len(out[0].pred_instances) == 0
    # (1400, 2000): 1400 / 480 = 2.917, long side 1867 <= 2000
    # (800, 1280): 800 / 480; (480, 512): long side capped at 512
    shapes = sorted({s[-2:] for s in det.shapes})
    assert shapes == [(384, 512), (800, 1067), (1400, 1867)]
    stats = model.sniper_stats
    assert stats['views'].tolist() == [2, 2, 2]
    assert stats['pixels'].tolist() == [
        2 * 1400 * 1867, 2 * 800 * 1067, 2 * 384 * 512
    ]


def test_pipeline_with_resize_is_refused():
    model = _model(scales=[1.0], valid_ranges=[(-1, -1)])
    data = _input(np.zeros((40, 60, 3), dtype=np.uint8))
    data['data_samples'][0].set_metainfo(dict(ori_shape=(80, 120)))
    with pytest.raises(ValueError, match='original size'):
        model.test_step(data)


def test_test_time_aug_pipeline_is_refused_clearly():
    model = _model(scales=[1.0], valid_ranges=[(-1, -1)])
    data = _input(np.zeros((40, 60, 3), dtype=np.uint8))
    data = dict(
        inputs=[data['inputs'], data['inputs']],
        data_samples=[data['data_samples'], data['data_samples']])
    with pytest.raises(TypeError, match='TestTimeAug'):
        model.test_step(data)
    data = _input(np.zeros((40, 60, 3), dtype=np.uint8))
    data['inputs'] = [data['inputs'][0].numpy()]
    with pytest.raises(TypeError, match='PackDetInputs'):
        model.test_step(data)


MEMORY_SCRIPT = textwrap.dedent('''
    import sys, time
    sys.path[:0] = [{root!r}, {here!r}]
    import numpy as np
    from mmengine.registry import DefaultScope
    import mmsniper
    from mmsniper.apis import inference_sniper
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from sniper_tta_doubles import CheapDetector
    DefaultScope.get_instance('mem', scope_name='mmdet')
    side = 20000
    img = np.empty((side, side, 3), dtype=np.uint8)
    img[:] = 90  # touch every page: a real 1.2 GB image
    cfg = Config.fromfile({base!r})
    det = CheapDetector()
    model = MODELS.build(dict(cfg.tta_model, module=det, scales=[1.5],
                              valid_ranges=[(-1, 90)], batch_size=4,
                              interpolation='nearest'))
    start = time.perf_counter()
    model.cfg = cfg
    out = inference_sniper(model, img)
    seconds = time.perf_counter() - start
    from mmsniper.utils import peak_rss_bytes  # not pytest's memory
    peak = peak_rss_bytes()
    print('RESULT', peak, len(det.shapes), max(s[-2] * s[-1]
          for s in det.shapes), model.sniper_stats['pixels'][0], seconds)
''')


@pytest.mark.slow
def test_20k_image_at_1_5x_stays_under_4_gb(tmp_path):
    """A 20,000 x 20,000 image at 1.5x (30,000 px a side, 2.7 GB if
    enlarged whole) through the config's pipeline (LoadImageFromNDArray,
    PackDetInputs) and the model: peak RSS of the process under 4 GB."""
    root = osp.dirname(osp.dirname(HERE))
    script = MEMORY_SCRIPT.format(
        root=root,
        here=HERE,
        base=osp.join(root, 'configs/_base_/sniper_tta.py'))
    proc = subprocess.run([sys.executable, '-c', script],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT')][0]
    _, peak, views, largest, pixels, seconds = line.split()
    print(f'20k x 20k at 1.5x: peak RSS {int(peak) / 2**30:.2f} GiB, '
          f'{views} tiles, {float(seconds):.1f} s')
    assert int(views) > 200  # tiled (4 M px budget), not one 900 M px input
    assert int(largest) <= 4e6
    assert float(pixels) >= 30000 * 30000  # the whole scaled image was seen
    assert int(peak) < 4 * 10**9


@pytest.mark.parametrize('tile_cfg', [
    dict(tile_size=2000, overlap=2000),
    dict(tile_size=500, overlap=800),
    dict(overlap=-5),
    dict(tile_size=0),
    dict(tile_size=512.5),
])
def test_bad_tile_cfg_is_named_at_build(tile_cfg):
    """Issue 19 item 11: tile_cfg.overlap >= tile_size failed only at the
    first tiled image, blaming the valid range and margins."""
    key = 'overlap' if 'overlap' in tile_cfg else 'tile_size'
    with pytest.raises(ValueError, match=f'^tile_cfg.{key} must be'):
        _model(tile_cfg=tile_cfg)
    _model(tile_cfg=dict(tile_size=2000, overlap=1999))  # fine
