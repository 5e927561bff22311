# Faster R-CNN R50-FPN trained with SNIPER chips on COCO.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/sniper_coco_detection.py',
    '../_base_/sniper_tta.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]

model = dict(
    # Training batches padded to the chip size with the pixel mean.
    data_preprocessor=dict(batch_augments=_base_.sniper_batch_augments),
    # Drops proposals outside the chip's valid range before sampling.
    # label_invalid_gt=True labels RoIs from invalid GT too, as the reference
    # code does (docs/en/notes/reference_departures.md).
    roi_head=dict(
        type='SniperRoIHead',
        filter_proposals_by_valid_range=True,
        label_invalid_gt=False),
    train_cfg=dict(
        rpn=dict(
            # Reference RPN labels: positive IoU >= 0.5, negative < 0.4,
            # anchors with IoU > 0.3 to an invalid (ignored) GT ignored.
            # The reference code also makes each GT's best anchor positive at
            # any IoU (min_pos_iou=0.0) and leaves out anchors more than
            # 32 px outside the chip (allowed_border=32); mmdet's -1 uses all.
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
