"""SniperIgnoreAssigner, the ignore rule and the model-config conversion."""
import pytest
import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.structures import InstanceData

from mmsniper.models import SniperMaxIoUAssigner, sniperize_model_cfg
from mmsniper.models.ignore import (IGNORED_BBOXES_KEY, ignore_mask,
                                    stash_ignored)

RPN = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.)
GT = [[0, 0, 10, 10]]
IGN = [[50, 50, 70, 70], [100, 100, 300, 300]]


def _inst(boxes, **extra):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return InstanceData(bboxes=boxes, labels=torch.zeros(len(boxes),
                                                         dtype=torch.long),
                        **extra)


def test_ignore_mask_kinds():
    ign = torch.tensor(IGN, dtype=torch.float32)
    boxes = torch.tensor([[50, 50, 70, 57], [50, 50, 70, 55],
                          [110, 110, 120, 120]], dtype=torch.float32)
    assert ignore_mask(boxes, ign, 'box', 0.3).tolist() == [
        True, False, False]
    # points: inside, even deep inside the huge box where IoU is tiny
    points = torch.tensor([[60., 60., 8., 8.], [120., 120., 8., 8.],
                           [5., 5., 8., 8.]])
    assert ignore_mask(points, ign, 'point').tolist() == [True, True, False]
    assert not ignore_mask(boxes, None).any()
    assert not ignore_mask(boxes, ign, 'box', 0).any()
    with pytest.raises(ValueError, match="'anchor'"):
        ignore_mask(boxes, ign, 'anchor')


def test_wrapping_max_iou_matches_sniper_max_iou_assigner():
    torch.manual_seed(0)
    xy = torch.rand(200, 2) * 200
    wh = torch.rand(200, 2) * 60 + 4
    priors = InstanceData(priors=torch.cat([xy, xy + wh], 1))
    gt, ign = _inst([[10, 10, 60, 50], [120, 20, 170, 90]]), _inst(IGN)
    ours = TASK_UTILS.build(
        dict(type='SniperIgnoreAssigner',
             assigner=dict(type='MaxIoUAssigner', **RPN)))
    ref = SniperMaxIoUAssigner(**RPN)
    a, b = ours.assign(priors, gt, ign), ref.assign(priors, gt, ign)
    assert torch.equal(a.gt_inds, b.gt_inds)
    assert (a.gt_inds == -1).sum() > 0
    assert ours.pos_iou_thr == 0.5  # the wrapped assigner's attributes


def test_atss_signature_points_and_positives():
    """ATSSAssigner's own signature (num_level_priors between the
    instances) is accepted; in point mode a valid GT's positives inside an
    ignored box stay positive unless override_positives."""
    ys, xs = torch.meshgrid(torch.arange(4, 128, 8.), torch.arange(4, 128,
                                                                   8.),
                            indexing='ij')
    centres = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    anchors = torch.cat([centres - 16, centres + 16], 1)
    pred = InstanceData(priors=anchors)
    gt = _inst([[40, 40, 72, 72]])
    ign = _inst([[0, 0, 128, 128]])  # a huge ignored box around it
    plain = TASK_UTILS.build(dict(type='ATSSAssigner', topk=9))
    base = plain.assign(pred, [len(anchors)], gt, ign)
    for override, expect_pos in ((False, True), (True, False)):
        wrapped = TASK_UTILS.build(
            dict(type='SniperIgnoreAssigner',
                 assigner=dict(type='ATSSAssigner', topk=9), kind='box',
                 ignore_iou_thr=0.0001, override_positives=override))
        res = wrapped.assign(pred, [len(anchors)], gt, ign)
        assert bool((res.gt_inds > 0).any()) == expect_pos
        assert ((res.gt_inds > 0) <= (base.gt_inds > 0)).all()
        assert (res.gt_inds[base.gt_inds == 0] == -1).all()


def test_pred_kind_reads_img_meta_when_no_ignored_instances():
    """Sparse R-CNN passes gt_instances_ignore=None and an img_meta."""
    pred = InstanceData(
        bboxes=torch.tensor([[0., 0., 10., 10.], [50., 50., 70., 70.],
                             [200., 200., 220., 220.]]),
        scores=torch.rand(3, 80))
    assigner = TASK_UTILS.build(
        dict(type='SniperIgnoreAssigner', kind='pred',
             assigner=dict(type='HungarianAssigner', match_costs=[
                 dict(type='BBoxL1Cost', weight=5.0, box_format='xyxy')
             ])))
    meta = {'img_shape': (256, 256), IGNORED_BBOXES_KEY: torch.tensor(IGN)}
    res = assigner.assign(pred_instances=pred, gt_instances=_inst(GT),
                          gt_instances_ignore=None, img_meta=meta)
    assert res.gt_inds.tolist() == [1, -1, 0]  # IoU 0.01 with the huge box
    res = assigner.assign(pred_instances=pred, gt_instances=_inst(GT),
                          img_meta={'img_shape': (256, 256)})
    assert res.gt_inds.tolist() == [1, 0, 0]


def test_bad_wrapper_args():
    with pytest.raises(ValueError, match='kind'):
        TASK_UTILS.build(dict(type='SniperIgnoreAssigner', kind='anchor',
                              assigner=dict(type='ATSSAssigner', topk=9)))
    with pytest.raises(ValueError, match='itself'):
        TASK_UTILS.build(
            dict(type='SniperIgnoreAssigner',
                 assigner=dict(type='SniperIgnoreAssigner',
                               assigner=dict(type='ATSSAssigner', topk=9))))


def test_stash_ignored_is_removed_again():
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(8, 8)))
    sample.ignored_instances = _inst(IGN)
    with stash_ignored([sample]):
        assert sample.metainfo[IGNORED_BBOXES_KEY].shape == (2, 4)
    assert IGNORED_BBOXES_KEY not in sample.metainfo


def test_sniperize_model_cfg_is_idempotent_and_nests_autofocus():
    model = dict(
        type='RTMDet',
        bbox_head=dict(type='RTMDetSepBNHead', num_classes=3),
        train_cfg=dict(assigner=dict(type='DynamicSoftLabelAssigner',
                                     topk=13)))
    once, notes = sniperize_model_cfg(model)
    assert once['train_cfg']['assigner'] == dict(
        type='SniperIgnoreAssigner',
        assigner=dict(type='DynamicSoftLabelAssigner', topk=13),
        kind='point', ignore_iou_thr=0.3)
    assert model['train_cfg']['assigner']['type'] == \
        'DynamicSoftLabelAssigner'  # the input is not changed
    assert notes
    twice, more = sniperize_model_cfg(once)
    assert twice == once and more == []
    wrapped, notes = sniperize_model_cfg(
        dict(type='AutoFocusDetector', detector=dict(
            type='FCOS', bbox_head=dict(type='FCOSHead'))))
    assert wrapped['detector']['bbox_head']['type'] == 'SniperFCOSHead'
    assert notes == ['model.detector.bbox_head: FCOSHead -> SniperFCOSHead']


def test_check_names_unverified_heads():
    from mmsniper.models import check_ignore_support
    model = MODELS.build(
        dict(type='YOLOV3', backbone=dict(type='Darknet', depth=53,
                                          out_indices=(3, 4, 5)),
             neck=dict(type='YOLOV3Neck', num_scales=3,
                       in_channels=[1024, 512, 256],
                       out_channels=[512, 256, 128]),
             bbox_head=dict(type='YOLOV3Head', num_classes=3,
                            in_channels=[512, 256, 128],
                            out_channels=[1024, 512, 256]),
             train_cfg=dict(assigner=dict(type='GridAssigner',
                                          pos_iou_thr=0.5, neg_iou_thr=0.5,
                                          min_pos_iou=0))))
    problems = check_ignore_support(model)
    assert len(problems) == 1
    assert 'bbox_head (YOLOV3Head) is not known to honour' in problems[0]
