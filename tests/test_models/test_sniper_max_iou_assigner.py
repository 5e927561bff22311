import pytest
import torch
from mmdet.models.task_modules.assigners import MaxIoUAssigner
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.structures import InstanceData

from mmsniper.models import SniperMaxIoUAssigner

# reference RPN thresholds: positive IoU >= 0.5, negative < 0.4
RPN = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.)


def _gt(bboxes, labels=None):
    bboxes = torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4)
    if labels is None:
        labels = torch.zeros(len(bboxes), dtype=torch.long)
    return InstanceData(bboxes=bboxes, labels=torch.as_tensor(labels))


def _priors(bboxes, device='cpu'):
    return InstanceData(
        priors=torch.tensor(bboxes, dtype=torch.float32,
                            device=device).reshape(-1, 4))


# valid GT A; ignored box B (20x20 at 50,50); huge ignored box C
GT = [[0, 0, 10, 10]]
IGN = [[50, 50, 70, 70], [100, 100, 300, 300]]
PRIORS = [
    [0, 0, 10, 10],  # 0: IoU 1 with A -> positive
    [50, 50, 70, 57],  # 1: IoU 0.35 with B -> ignored
    [50, 50, 70, 55],  # 2: IoU 0.25 with B -> negative
    [110, 110, 120, 120],  # 3: IoU 0.0025 / IoF 1 with C
    [400, 400, 410, 410],  # 4: far from all -> negative
]


def test_build_from_registry():
    assigner = TASK_UTILS.build(
        dict(type='SniperMaxIoUAssigner', ignore_iou_thr=0.3, **RPN))
    assert isinstance(assigner, SniperMaxIoUAssigner)
    assert assigner.ignore_iou_thr == 0.3
    assert SniperMaxIoUAssigner(**RPN).ignore_iou_thr == 0.3  # default


def test_ignore_in_iou_mode_vs_plain_and_iof():
    pred, gt, ign = _priors(PRIORS), _gt(GT), _gt(IGN)
    res = SniperMaxIoUAssigner(**RPN).assign(pred, gt, ign)
    assert res.gt_inds.tolist() == [1, -1, 0, 0, 0]
    assert res.labels.tolist() == [0, -1, -1, -1, -1]

    # plain MaxIoUAssigner ignores nothing: prior 1 would be a negative
    plain = MaxIoUAssigner(**RPN).assign(pred, gt, ign)
    assert plain.gt_inds.tolist() == [1, 0, 0, 0, 0]

    # mmdet's IoF mode ignores the small prior inside the huge box (3),
    # which IoU mode keeps as a negative
    iof = MaxIoUAssigner(ignore_iof_thr=0.5, **RPN).assign(pred, gt, ign)
    assert iof.gt_inds[3] == -1
    assert res.gt_inds[3] == 0


def test_iof_still_works_and_disable():
    pred, gt, ign = _priors(PRIORS), _gt(GT), _gt(IGN)
    both = SniperMaxIoUAssigner(
        ignore_iof_thr=0.5, **RPN).assign(pred, gt, ign)
    # priors 1, 2 and 3 lie inside ignored boxes (IoF 1)
    assert both.gt_inds.tolist() == [1, -1, -1, -1, 0]
    for thr in (0, -1):
        off = SniperMaxIoUAssigner(
            ignore_iou_thr=thr, **RPN).assign(pred, gt, ign)
        assert off.gt_inds.tolist() == [1, 0, 0, 0, 0]
    # threshold is strict (> thr)
    res = SniperMaxIoUAssigner(
        ignore_iou_thr=0.35, **RPN).assign(pred, gt, ign)
    assert abs(res.max_overlaps[1]) < 1e-6 and res.gt_inds[1] == 0


def test_ignore_overrides_positive_like_reference():
    # valid A and ignored B overlap; the prior has IoU 0.6 with both
    gt, ign = _gt([[0, 0, 20, 20]], [3]), _gt([[10, 0, 30, 20]])
    pred = _priors([[5, 0, 25, 20], [0, 0, 20, 20]])
    res = SniperMaxIoUAssigner(**RPN).assign(pred, gt, ign)
    plain = MaxIoUAssigner(**RPN).assign(pred, gt, ign)
    assert plain.gt_inds.tolist() == [1, 1]
    # prior 1 has IoU 1/3 > 0.3 with B, so it is ignored too
    assert res.gt_inds.tolist() == [-1, -1]
    assert res.labels.tolist() == [-1, -1]
    # with a looser threshold prior 1 (IoU 1/3 with B) stays positive
    res = SniperMaxIoUAssigner(ignore_iou_thr=0.4, **RPN).assign(pred, gt, ign)
    assert res.gt_inds.tolist() == [-1, 1]
    assert res.labels.tolist() == [-1, 3]


def test_low_quality_match_not_moved_off_ignored_prior():
    # the best prior of A (IoU 0.45 < pos thr) is ignored; as in the
    # reference, A gets no other low-quality positive
    gt, ign = _gt([[0, 0, 20, 20]]), _gt([[0, 0, 20, 9]])
    pred = _priors([[0, 0, 20, 9], [0, 10, 20, 17]])
    res = SniperMaxIoUAssigner(**RPN).assign(pred, gt, ign)
    plain = MaxIoUAssigner(**RPN).assign(pred, gt, ign)
    assert plain.gt_inds.tolist() == [1, 0]
    assert res.gt_inds.tolist() == [-1, 0]


def test_empty_inputs():
    assigner = SniperMaxIoUAssigner(**RPN)
    pred = _priors(PRIORS)
    # no valid GT: all negative except those near ignored boxes
    res = assigner.assign(pred, _gt([]), _gt(IGN))
    assert res.gt_inds.tolist() == [0, -1, 0, 0, 0]
    assert res.num_gts == 0
    # empty ignore set and no ignore set: identical to MaxIoUAssigner
    plain = MaxIoUAssigner(**RPN).assign(pred, _gt(GT))
    for ign in (_gt([]), None):
        res = assigner.assign(pred, _gt(GT), ign)
        assert torch.equal(res.gt_inds, plain.gt_inds)
    # no priors
    for gt in (_gt(GT), _gt([])):
        for ign in (_gt(IGN), _gt([]), None):
            res = assigner.assign(_priors([]), gt, ign)
            assert res.gt_inds.shape == (0, )
    # nothing at all
    res = assigner.assign(pred, _gt([]), _gt([]))
    assert res.gt_inds.tolist() == [0] * len(PRIORS)


def test_gpu_assign_thr_and_box_types():
    pred = _priors(PRIORS)
    gt = _gt(GT + [[400, 400, 410, 410]])
    expected = [1, -1, 0, 0, 2]
    for thr in (1, 10):
        res = SniperMaxIoUAssigner(
            gpu_assign_thr=thr, **RPN).assign(pred, gt, _gt(IGN))
        assert res.gt_inds.tolist() == expected
    # HorizontalBoxes priors and ignored boxes
    pred_hb = InstanceData(priors=HorizontalBoxes(pred.priors))
    ign_hb = InstanceData(bboxes=HorizontalBoxes(torch.tensor(IGN).float()))
    gt_hb = InstanceData(bboxes=HorizontalBoxes(gt.bboxes), labels=gt.labels)
    res = SniperMaxIoUAssigner(**RPN).assign(pred_hb, gt_hb, ign_hb)
    assert res.gt_inds.tolist() == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason='requires CUDA')
@pytest.mark.parametrize('gpu_assign_thr', [-1, 1])
def test_cuda(gpu_assign_thr):
    pred = _priors(PRIORS, device='cuda')
    gt, ign = _gt(GT).to('cuda'), _gt(IGN).to('cuda')
    res = SniperMaxIoUAssigner(
        gpu_assign_thr=gpu_assign_thr, **RPN).assign(pred, gt, ign)
    assert res.gt_inds.device.type == 'cuda'
    assert res.gt_inds.tolist() == [1, -1, 0, 0, 0]
    res = SniperMaxIoUAssigner(**RPN).assign(pred, _gt([]).to('cuda'), ign)
    assert res.gt_inds.tolist() == [0, -1, 0, 0, 0]


def test_reference_best_anchor_rule_min_pos_iou_0():
    # GT A's best prior has IoU 0.09: the reference makes every prior with
    # a GT's max IoU positive, at any IoU (min_pos_iou=0); our configs'
    # min_pos_iou=0.3 leave it negative
    gt = _gt([[100, 0, 112, 12]])
    pred = _priors([[90, 0, 130, 40], [90, 0, 130, 40], [0, 0, 10, 10]])
    config = SniperMaxIoUAssigner(**dict(RPN, min_pos_iou=0.3))
    assert config.assign(pred, gt, None).gt_inds.tolist() == [0, 0, 0]
    reference = SniperMaxIoUAssigner(**RPN)
    assert reference.match_low_quality and reference.gt_max_assign_all
    # ties are all positive, as np.where(overlaps == gt_max_overlaps)
    assert reference.assign(pred, gt, None).gt_inds.tolist() == [1, 1, 0]


def _rpn_head(**cfg_options):
    """The RPN head of the SNIPER Faster R-CNN config with its RPN
    train_cfg, after ``--cfg-options``-style ``cfg_options``."""
    import os.path as osp

    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(
        osp.join(root, 'configs/sniper/faster-rcnn_r50_fpn_sniper-1x_coco.py'))
    cfg.merge_from_dict(cfg_options)
    head_cfg = cfg.model.rpn_head
    head_cfg.update(
        in_channels=8, feat_channels=8, train_cfg=cfg.model.train_cfg.rpn)
    return MODELS.build(head_cfg)


def _rpn_targets(head):
    """Labels (0 positive, 1 negative) and label weights of four anchors of
    a 128 x 128 chip with GT G (0, 0, 40, 60) and H (100, 0, 112, 12)."""
    anchors = torch.tensor([
        [-20., 0., 40., 60.],  # a: IoU 0.67 with G, 20 px out of the chip
        [-40., 0., 20., 60.],  # b: IoU 0.25 with G, 40 px out of the chip
        [60., 60., 120., 120.],  # c: nothing
        [90., 0., 130., 40.],  # d: IoU 0.09 with H, its best anchor
    ])
    gt = _gt([[0, 0, 40, 60], [100, 0, 112, 12]])
    labels, weights, *_ = head._get_targets_single(
        anchors, torch.ones(4, dtype=torch.bool), gt,
        dict(img_shape=(128, 128)), None)
    return labels.tolist(), weights.tolist()


def test_rpn_reference_switches_in_config():
    # our config: every anchor counts (allowed_border=-1), low-quality
    # matches need IoU >= 0.3
    head = _rpn_head()
    assert head.train_cfg.allowed_border == -1
    assert head.assigner.min_pos_iou == 0.3
    assert _rpn_targets(head) == ([0, 1, 1, 1], [1., 1., 1., 1.])
    # the reference switches: anchors more than 32 px out of the chip are
    # left out, the best anchor of every GT is positive at any IoU
    head = _rpn_head(
        **{
            'model.train_cfg.rpn.allowed_border': 32,
            'model.train_cfg.rpn.assigner.min_pos_iou': 0.0
        })
    assert _rpn_targets(head) == ([0, 1, 1, 0], [1., 0., 1., 1.])
