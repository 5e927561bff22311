import math

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from mmsniper.models import SniperMaxIoUAssigner, SniperRoIHead
from mmsniper.models.valid_range import in_valid_range

IMG = 128
CH = 16
NUM_CLASSES = 3


@pytest.fixture(autouse=True)
def _mmdet_scope():
    init_default_scope('mmdet')


def _roi_head_cfg(**kwargs):
    cfg = dict(
        type='SniperRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=CH,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=CH,
            fc_out_channels=32,
            roi_feat_size=7,
            num_classes=NUM_CLASSES,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=64,
                pos_fraction=0.25,
                neg_pos_ub=-1,
                add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False),
        test_cfg=dict(
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=100))
    cfg.update(kwargs)
    return ConfigDict(cfg)


def _square(cx, cy, side):
    h = side / 2
    return [cx - h, cy - h, cx + h, cy + h]


# proposals with sqrt-area 8, 16, 20, 32, 48, 64
SIDES = [8, 16, 20, 32, 48, 64]
PROPOSALS = torch.tensor([_square(64, 64, s) for s in SIDES])


def _rpn_results():
    n = len(PROPOSALS)
    return InstanceData(
        bboxes=PROPOSALS.clone(),
        scores=torch.linspace(0.9, 0.4, n),
        labels=torch.zeros(n, dtype=torch.long))


def _data_sample(valid_range=None, gt_bboxes=((48, 48, 80, 80), )):
    meta = dict(
        img_shape=(IMG, IMG),
        ori_shape=(IMG, IMG),
        pad_shape=(IMG, IMG),
        batch_input_shape=(IMG, IMG),
        scale_factor=(1., 1.))
    if valid_range is not None:
        meta['chip_valid_range'] = valid_range
    sample = DetDataSample(metainfo=meta)
    bboxes = torch.tensor(gt_bboxes, dtype=torch.float32).reshape(-1, 4)
    sample.gt_instances = InstanceData(
        bboxes=bboxes, labels=torch.ones(len(bboxes), dtype=torch.long))
    sample.ignored_instances = InstanceData(
        bboxes=torch.zeros((0, 4)), labels=torch.zeros(0, dtype=torch.long))
    return sample


def _feats(batch=1):
    return tuple(
        torch.rand(batch, CH, IMG // s, IMG // s) for s in (4, 8, 16, 32))


def _spy_assign(roi_head):
    """Record the areas of the proposals passed to the bbox assigner."""
    seen = []
    assign = roi_head.bbox_assigner.assign

    def spy(pred_instances, *args, **kwargs):
        priors = pred_instances.priors
        areas = (priors[:, 2] - priors[:, 0]) * (priors[:, 3] - priors[:, 1])
        seen.append(areas.tolist())
        return assign(pred_instances, *args, **kwargs)

    roi_head.bbox_assigner.assign = spy
    return seen


def _sides(seen):
    """Rounded sqrt-areas of the recorded proposals of each call."""
    return [[round(math.sqrt(a)) for a in areas] for areas in seen]


def _check_losses(losses):
    assert set(losses) >= {'loss_cls', 'loss_bbox', 'acc'}
    for key in ('loss_cls', 'loss_bbox'):
        assert torch.isfinite(losses[key]).all()


def test_in_valid_range():
    keep = in_valid_range(PROPOSALS, (16, 48))
    assert keep.tolist() == [False, True, True, True, False, False]
    assert in_valid_range(PROPOSALS, (-1, 20)).tolist() == \
        [True, True, False, False, False, False]
    assert in_valid_range(PROPOSALS, (32, -1)).tolist() == \
        [False, False, False, True, True, True]
    assert in_valid_range(PROPOSALS, (-1, -1)).all()
    assert in_valid_range(PROPOSALS, None).all()
    assert in_valid_range(torch.zeros((0, 4)), (16, 48)).shape == (0, )


def test_build():
    roi_head = MODELS.build(_roi_head_cfg())
    assert isinstance(roi_head, SniperRoIHead)
    assert roi_head.filter_proposals_by_valid_range
    roi_head = MODELS.build(
        _roi_head_cfg(filter_proposals_by_valid_range=False))
    assert not roi_head.filter_proposals_by_valid_range


@pytest.mark.parametrize('valid_range,expected', [
    ((16, 48), [16, 20, 32]),
    ([-1, 20], [8, 16]),
    (torch.tensor([32., -1.]), [32, 48, 64]),
    (None, SIDES),
])
def test_only_in_range_proposals_reach_assigner(valid_range, expected):
    roi_head = MODELS.build(_roi_head_cfg())
    seen = _spy_assign(roi_head)
    losses = roi_head.loss(_feats(), [_rpn_results()],
                           [_data_sample(valid_range)])
    assert _sides(seen) == [expected]
    _check_losses(losses)


def test_filter_disabled():
    roi_head = MODELS.build(
        _roi_head_cfg(filter_proposals_by_valid_range=False))
    seen = _spy_assign(roi_head)
    losses = roi_head.loss(_feats(), [_rpn_results()],
                           [_data_sample((16, 48))])
    assert _sides(seen) == [SIDES]
    _check_losses(losses)


def test_batch_with_different_ranges():
    roi_head = MODELS.build(_roi_head_cfg())
    seen = _spy_assign(roi_head)
    samples = [_data_sample((16, 48)), _data_sample(), _data_sample((40, -1))]
    losses = roi_head.loss(
        _feats(3), [_rpn_results() for _ in samples], samples)
    assert _sides(seen) == [[16, 20, 32], SIDES, [48, 64]]
    _check_losses(losses)


def test_sampler_adds_only_valid_gt():
    roi_head = MODELS.build(_roi_head_cfg())
    captured = []
    sample_fn = roi_head.bbox_sampler.sample

    def spy(*args, **kwargs):
        result = sample_fn(*args, **kwargs)
        captured.append(result)
        return result

    roi_head.bbox_sampler.sample = spy
    sample = _data_sample((16, 48))
    # an invalid GT: kept as ignored instance, never added as proposal
    sample.ignored_instances = InstanceData(
        bboxes=torch.tensor([[0., 0., 30., 30.]]), labels=torch.tensor([2]))
    roi_head.loss(_feats(), [_rpn_results()], [sample])
    res = captured[0]
    assert res.pos_is_gt.sum() == 1
    gt_rois = res.pos_priors[res.pos_is_gt.bool()]
    assert torch.equal(gt_rois, sample.gt_instances.bboxes)


def test_all_proposals_dropped_gt_still_sampled():
    roi_head = MODELS.build(_roi_head_cfg())
    seen = _spy_assign(roi_head)
    samples = [_data_sample((100, -1))]
    losses = roi_head.loss(_feats(), [_rpn_results()], samples)
    assert seen == [[]]
    _check_losses(losses)
    assert losses['acc'].numel() == 1
    (losses['loss_cls'] + losses['loss_bbox']).backward()


def test_all_proposals_dropped_without_gt():
    roi_head = MODELS.build(_roi_head_cfg())
    seen = _spy_assign(roi_head)
    samples = [_data_sample((100, -1), gt_bboxes=())]
    losses = roi_head.loss(_feats(), [_rpn_results()], samples)
    assert seen == [[]]
    # same as StandardRoIHead given no proposal and no GT: no RoI at all,
    # so mmdet returns only a zero ``loss_bbox`` that still backpropagates
    std_cfg = _roi_head_cfg()
    std_cfg.type = 'StandardRoIHead'
    std_head = MODELS.build(std_cfg)
    no_props = _rpn_results()[torch.zeros(len(SIDES), dtype=torch.bool)]
    std_losses = std_head.loss(_feats(), [no_props],
                               [_data_sample(gt_bboxes=())])
    assert set(losses) == set(std_losses) == {'loss_bbox'}
    assert losses['loss_bbox'].item() == 0
    losses['loss_bbox'].backward()


def test_all_dropped_in_one_image_of_batch():
    roi_head = MODELS.build(_roi_head_cfg())
    seen = _spy_assign(roi_head)
    samples = [_data_sample((100, -1), gt_bboxes=()), _data_sample((16, 48))]
    losses = roi_head.loss(
        _feats(2), [_rpn_results() for _ in samples], samples)
    assert _sides(seen) == [[], [16, 20, 32]]
    _check_losses(losses)


def _spy_roi_extractor(roi_head):
    """Record the rounded sqrt-areas of the RoIs each call extracts."""
    seen = []
    forward = roi_head.bbox_roi_extractor.forward

    def spy(feats, rois, *args, **kwargs):
        wh = rois[:, 3:5] - rois[:, 1:3]
        areas = (wh[:, 0] * wh[:, 1]).tolist()
        seen.append(sorted(round(math.sqrt(a)) for a in areas))
        return forward(feats, rois, *args, **kwargs)

    roi_head.bbox_roi_extractor.forward = spy
    return seen


def test_train_extracts_only_in_range_rois_predict_every_proposal():
    roi_head = MODELS.build(_roi_head_cfg())
    seen = _spy_roi_extractor(roi_head)
    # training: the in-range proposals (16, 20, 32) and the valid GT (32)
    roi_head.loss(_feats(), [_rpn_results()], [_data_sample((16, 48))])
    assert seen == [[16, 20, 32, 32]]

    seen.clear()
    roi_head.eval()
    samples = [_data_sample((16, 48)), _data_sample((100, -1))]
    with torch.no_grad():
        results = roi_head.predict(
            _feats(2), [_rpn_results(), _rpn_results()], samples)
    # prediction: every proposal of both images, whatever the range
    assert seen == [sorted(SIDES * 2)]
    assert len(results) == 2


# A chip with valid range (16, 48) chip px: the valid GT V, an invalid GT A
# inside the range and an invalid GT B above it; proposals P1..P3 match
# V, A and B with IoU > 0.5, P4 matches nothing, P5 is out of range.
GT_V, GT_A, GT_B = [48, 48, 80, 80], [4, 4, 24, 24], [70, 0, 126, 56]
P1, P2, P3 = [50, 50, 80, 80], [5, 5, 24, 24], [74, 4, 120, 50]
P4, P5 = [30, 90, 60, 120], [0, 0, 120, 120]
SNIPER_RCNN_ASSIGNER = dict(
    type='SniperMaxIoUAssigner',
    pos_iou_thr=0.5,
    neg_iou_thr=0.5,
    min_pos_iou=0.5,
    match_low_quality=False,
    ignore_iou_thr=0.5)


def _invalid_gt_sample():
    sample = _data_sample((16, 48), gt_bboxes=(GT_V, ))
    sample.ignored_instances = InstanceData(
        bboxes=torch.tensor([GT_A, GT_B], dtype=torch.float32),
        labels=torch.tensor([2, 0]))
    return sample


def _labelled_rois(roi_head, assigner=SNIPER_RCNN_ASSIGNER, **kwargs):
    """Sampled RoIs of the invalid-GT chip: {box: label} of the positives
    and negatives (background = NUM_CLASSES), the GT RoIs, the regression
    targets of the positives."""
    captured = []
    bbox_loss = roi_head.bbox_loss

    def spy(x, sampling_results):
        captured.extend(sampling_results)
        return bbox_loss(x, sampling_results)

    roi_head.bbox_loss = spy
    proposals = torch.tensor([P1, P2, P3, P4, P5], dtype=torch.float32)
    rpn = InstanceData(
        bboxes=proposals,
        scores=torch.linspace(0.9, 0.5, 5),
        labels=torch.zeros(5, dtype=torch.long))
    losses = roi_head.loss(_feats(), [rpn], [_invalid_gt_sample()])
    _check_losses(losses)
    res = captured[0]
    labels = {
        tuple(b): int(lb)
        for b, lb in zip(res.pos_priors.tolist(), res.pos_gt_labels)
    }
    labels.update({tuple(b): NUM_CLASSES for b in res.neg_priors.tolist()})
    gt_rois = sorted(
        tuple(b) for b in res.pos_priors[res.pos_is_gt.bool()].tolist())
    targets = {
        tuple(b): tuple(t)
        for b, t in zip(res.pos_priors.tolist(), res.pos_gt_bboxes.tolist())
    }
    return labels, gt_rois, targets


def _boxes(*boxes):
    return [tuple(float(v) for v in b) for b in boxes]


def test_default_labelling_ignores_rois_of_invalid_gt():
    cfg = _roi_head_cfg()
    cfg.train_cfg.assigner = SNIPER_RCNN_ASSIGNER
    labels, gt_rois, _ = _labelled_rois(MODELS.build(cfg))
    v, p1, p4 = _boxes(GT_V, P1, P4)
    # P2 and P3 (IoU > 0.5 with invalid A and B) are ignored: neither
    # positive nor negative; only the valid GT V is added as a RoI
    assert labels == {v: 1, p1: 1, p4: NUM_CLASSES}
    assert gt_rois == [v]


def test_ignore_iou_thr_off_trains_rois_of_invalid_gt_as_background():
    cfg = _roi_head_cfg()
    cfg.train_cfg.assigner = dict(SNIPER_RCNN_ASSIGNER, ignore_iou_thr=-1)
    labels, gt_rois, _ = _labelled_rois(MODELS.build(cfg))
    v, p1, p2, p3, p4 = _boxes(GT_V, P1, P2, P3, P4)
    assert labels == {
        v: 1, p1: 1, p2: NUM_CLASSES, p3: NUM_CLASSES, p4: NUM_CLASSES}
    assert gt_rois == [v]


@pytest.mark.parametrize('assigner', [
    SNIPER_RCNN_ASSIGNER,
    dict(SNIPER_RCNN_ASSIGNER, type='MaxIoUAssigner', ignore_iof_thr=-1,
         ignore_iou_thr=None)
])
def test_reference_labelling_of_invalid_gt(assigner):
    assigner = {k: v for k, v in assigner.items() if v is not None}
    cfg = _roi_head_cfg(label_invalid_gt=True)
    cfg.train_cfg.assigner = assigner
    roi_head = MODELS.build(cfg)
    assert roi_head.label_invalid_gt
    labels, gt_rois, targets = _labelled_rois(roi_head)
    v, a, b, p1, p2, p3, p4 = _boxes(GT_V, GT_A, GT_B, P1, P2, P3, P4)
    # RoIs matched to invalid GT are foreground of that GT's class; the
    # in-range invalid GT A is a RoI too, the out-of-range B is not
    assert labels == {
        v: 1, a: 2, p1: 1, p2: 2, p3: 0, p4: NUM_CLASSES}
    assert gt_rois == sorted([v, a])
    assert targets[p3] == b and targets[p2] == a and targets[p1] == v


def test_reference_labelling_without_range_or_gt_rois():
    v, a, b, p1, p2, p3, p4, p5 = _boxes(GT_V, GT_A, GT_B, P1, P2, P3, P4,
                                         P5)
    # with the range filter off, every chip GT is a RoI and P5 is kept
    # (IoU 0.22 with B: background)
    cfg = _roi_head_cfg(
        label_invalid_gt=True, filter_proposals_by_valid_range=False)
    labels, gt_rois, _ = _labelled_rois(MODELS.build(cfg))
    assert gt_rois == sorted([v, a, b])
    assert labels == {
        v: 1, a: 2, b: 0, p1: 1, p2: 2, p3: 0, p4: NUM_CLASSES,
        p5: NUM_CLASSES}
    # a sampler that adds no GT: no GT RoI in either mode
    cfg = _roi_head_cfg(label_invalid_gt=True)
    cfg.train_cfg.sampler.add_gt_as_proposals = False
    labels, gt_rois, _ = _labelled_rois(MODELS.build(cfg))
    assert gt_rois == []
    assert labels == {p1: 1, p2: 2, p3: 0, p4: NUM_CLASSES}


def test_reference_labelling_empty_and_batch():
    roi_head = MODELS.build(_roi_head_cfg(label_invalid_gt=True))
    seen = _spy_roi_extractor(roi_head)
    # no GT at all, and no ignored_instances field; proposals 16, 20, 32
    # in range, all background
    empty = _data_sample((16, 48), gt_bboxes=())
    del empty.ignored_instances
    nothing = _data_sample((100, -1), gt_bboxes=())
    losses = roi_head.loss(
        _feats(3), [_rpn_results() for _ in range(3)],
        [empty, nothing, _data_sample((16, 48))])
    _check_losses(losses)
    # image 0: 3 proposals; image 1: none; image 2: 3 proposals + GT
    assert seen == [[16, 16, 20, 20, 32, 32, 32]]
    with pytest.raises(ValueError, match='box heads only'):
        MODELS.build(
            _roi_head_cfg(
                label_invalid_gt=True,
                mask_roi_extractor=dict(
                    type='SingleRoIExtractor',
                    roi_layer=dict(type='RoIAlign', output_size=14),
                    out_channels=CH,
                    featmap_strides=[4, 8, 16, 32]),
                mask_head=dict(
                    type='FCNMaskHead',
                    num_convs=1,
                    in_channels=CH,
                    conv_out_channels=CH,
                    num_classes=NUM_CLASSES)))


@pytest.mark.parametrize('label_invalid_gt', [False, True])
def test_faster_rcnn_with_sniper_modules(label_invalid_gt):
    cfg = Config.fromstring(
        "_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'", '.py')
    model_cfg = cfg.model
    model_cfg.backbone.update(depth=18, init_cfg=None)
    model_cfg.neck.update(in_channels=[64, 128, 256, 512], out_channels=32)
    model_cfg.rpn_head.update(in_channels=32, feat_channels=32)
    model_cfg.roi_head.update(
        type='SniperRoIHead', label_invalid_gt=label_invalid_gt)
    model_cfg.roi_head.bbox_roi_extractor.out_channels = 32
    model_cfg.roi_head.bbox_head.update(in_channels=32, fc_out_channels=32)
    # reference RPN labelling: pos >= 0.5, neg < 0.4, ignore IoU > 0.3
    model_cfg.train_cfg.rpn.assigner = dict(
        type='SniperMaxIoUAssigner',
        pos_iou_thr=0.5,
        neg_iou_thr=0.4,
        min_pos_iou=0.3,
        match_low_quality=True,
        ignore_iou_thr=0.3)
    model_cfg.train_cfg.rcnn.assigner = dict(
        type='SniperMaxIoUAssigner',
        pos_iou_thr=0.5,
        neg_iou_thr=0.5,
        min_pos_iou=0.5,
        match_low_quality=False,
        ignore_iou_thr=0.5)
    model = MODELS.build(model_cfg)
    assert isinstance(model.roi_head, SniperRoIHead)
    assert isinstance(model.rpn_head.assigner, SniperMaxIoUAssigner)
    assert isinstance(model.roi_head.bbox_assigner, SniperMaxIoUAssigner)
    model.train()

    sample = _data_sample((16, 64), gt_bboxes=((40, 40, 80, 72), ))
    sample.ignored_instances = InstanceData(
        bboxes=torch.tensor([[0., 60., 120., 128.]]), labels=torch.tensor([5]))
    rpn_results = []
    rpn_assign = model.rpn_head.assigner.assign

    def rpn_spy(*args, **kwargs):
        result = rpn_assign(*args, **kwargs)
        rpn_results.append(result)
        return result

    model.rpn_head.assigner.assign = rpn_spy
    seen = _spy_assign(model.roi_head)
    torch.manual_seed(0)
    losses = model.loss(torch.rand(1, 3, IMG, IMG), [sample])
    # anchors near the ignored box are ignored (not just IoU in [0.4, 0.5)
    # with the valid GT), the valid GT has positives
    rpn_result = rpn_results[0]
    assert ((rpn_result.gt_inds == -1) & (rpn_result.max_overlaps < 0.4)).any()
    assert (rpn_result.gt_inds > 0).any()
    # only proposals with sqrt-area in [16, 64) reach the RoI assigner;
    # the valid GT (sqrt-area 35.8) is added as a RoI (by the head, before
    # assignment, in reference mode; by the sampler otherwise), the ignored
    # box (sqrt-area 90.3) is not
    assert len(seen) == 1 and len(seen[0]) > 0
    assert all(16**2 <= area < 64**2 for area in seen[0]), seen
    assert (40 * 32 in seen[0]) == label_invalid_gt
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls',
            'loss_bbox'} <= set(losses)
    for name, value in losses.items():
        if 'loss' in name:
            values = value if isinstance(value, list) else [value]
            assert all(math.isfinite(float(v)) for v in values), name
