# RPN R50-FPN trained on SNIPER chips WITHOUT negative chips, for 2 epochs:
# the proposal network of negative chip mining (SNIPER_SPEC.md section 3).
# Its proposals on the training images, at the test scales below, are what
# the detector's negative chips are mined from:
#
#   CFG=configs/sniper/rpn_r50_fpn_sniper-2e_coco.py
#   python tools/train.py $CFG
#   python tools/extract_proposals.py $CFG \
#       work_dirs/rpn_r50_fpn_sniper-2e_coco/epoch_2.pth --out proposals.pkl
#
# or all three steps with tools/train_with_negatives.sh.
_base_ = [
    'mmdet::_base_/models/rpn_r50_fpn.py',
    '../_base_/datasets/sniper_coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]

model = dict(
    # Training batches padded to the chip size with the pixel mean.
    data_preprocessor=dict(batch_augments=_base_.sniper_batch_augments),
    train_cfg=dict(
        rpn=dict(
            # Reference RPN labels, as in faster-rcnn_r50_fpn_sniper-1x_coco:
            # positive IoU >= 0.5, negative < 0.4, anchors with IoU > 0.3 to
            # an invalid (ignored) GT ignored.
            assigner=dict(
                type='SniperMaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.4,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iou_thr=0.3))),
    # Reference proposals: top 300 per scale after NMS 0.7.
    test_cfg=dict(
        rpn=dict(
            nms_pre=2000,
            max_per_img=300,
            nms=dict(type='nms', iou_threshold=0.7),
            min_bbox_size=0)))

# Where tools/extract_proposals.py runs this RPN on the training images
# (its default for --scales): the reference test scales, finest first, as
# (short_target, long_cap) resolutions.
proposal_scales = [(1400, 2000), (800, 1280), (480, 512)]

# Validation reports proposal recall (AR@100/300/1000), not box AP.
# 'proposal' (pycocotools) rather than mmdet's 'proposal_fast', whose
# eval_recalls builds a ragged np.array that numpy >= 1.24 rejects.
val_evaluator = dict(metric='proposal')
test_evaluator = val_evaluator

# Reference: the proposal RPN is trained for 2 epochs (no negative chips).
# The learning rate drops 10x for the second epoch (the reference RPN
# schedule steps after 5 of its 7 epochs).
max_epochs = 2
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[max_epochs - 1],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
