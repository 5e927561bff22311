# The proposal RPN of the `make demo` data: the slim backbone, neck, anchors,
# chips and scales of faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py, as
# an RPN trained on positive chips only, with a CPU-sized iteration schedule.
# Train it, extract its proposals on the training images, then train the
# demo detector with negative chips mined from them:
#
#   bash tools/train_with_negatives.sh \
#       configs/sniper/rpn_r18-slim_fpn_sniper-demo_synthetic.py \
#       configs/sniper/faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py \
#       work_dirs/demo_negatives
_base_ = ['./faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py']

# The detector's parts, minus its second stage.
model = dict(
    _delete_=True,
    type='RPN',
    data_preprocessor=_base_.model.data_preprocessor,
    backbone=_base_.model.backbone,
    neck=_base_.model.neck,
    rpn_head=_base_.model.rpn_head,
    # the ignore-aware RPN assigner of the detector
    train_cfg=dict(rpn=_base_.model.train_cfg.rpn),
    # Reference proposals: top 300 per scale after NMS 0.7.
    test_cfg=dict(
        rpn=dict(
            nms_pre=1000,
            max_per_img=300,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0)))

# tools/extract_proposals.py runs the RPN at the training scales of the demo
# (its default for --scales; there are no separate test scales here).
proposal_scales = _base_.sniper_scales

# Validation reports proposal recall (AR@100/300/1000), not box AP.
# 'proposal' (pycocotools) rather than mmdet's 'proposal_fast', whose
# eval_recalls builds a ragged np.array that numpy >= 1.24 rejects.
val_evaluator = dict(metric='proposal', classwise=False)
test_evaluator = val_evaluator

max_iters = 150
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=30,
        end=max_iters,
        eta_min_ratio=0.05)
]
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
