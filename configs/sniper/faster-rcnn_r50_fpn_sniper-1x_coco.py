# Faster R-CNN R50-FPN trained with SNIPER chips on COCO.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/sniper_coco_detection.py',
    '../_base_/sniper_tta.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]

model = dict(
    # Drops proposals outside the chip's valid range before sampling.
    roi_head=dict(type='SniperRoIHead', filter_proposals_by_valid_range=True),
    train_cfg=dict(
        rpn=dict(
            # Reference RPN labels: positive IoU >= 0.5, negative < 0.4,
            # anchors with IoU > 0.3 to an invalid (ignored) GT ignored.
            assigner=dict(
                type='SniperMaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.4,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iou_thr=0.3)),
        rcnn=dict(
            # RoIs with IoU > 0.5 to an invalid GT are ignored, not background.
            assigner=dict(type='SniperMaxIoUAssigner', ignore_iou_thr=0.5))))
