# The short RPN of study variant (d): the detector's backbone, neck and
# RPN head on positive chips; its proposals feed negative chip mining.
_base_ = ['./_detector_sniper.py']

model = dict(
    _delete_=True,
    type='RPN',
    data_preprocessor=_base_.model.data_preprocessor,
    backbone=_base_.model.backbone,
    neck=_base_.model.neck,
    rpn_head=_base_.model.rpn_head,
    train_cfg=dict(rpn=_base_.model.train_cfg.rpn),
    # reference proposals: top 300 per scale after NMS 0.7
    test_cfg=dict(
        rpn=dict(
            nms_pre=1000,
            max_per_img=300,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0)))
proposal_scales = _base_.sniper_scales
val_evaluator = dict(metric='proposal', classwise=False)
test_evaluator = val_evaluator
