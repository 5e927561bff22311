# RetinaNet R50-FPN trained with SNIPER chips on COCO: a one-stage detector
# needs only the ignore-aware assigner.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/sniper_coco_detection.py',
    '../_base_/sniper_tta.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]

model = dict(
    # Training batches padded to the chip size with the pixel mean.
    data_preprocessor=dict(batch_augments=_base_.sniper_batch_augments),
    train_cfg=dict(
        assigner=dict(
            type='SniperMaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iou_thr=0.3)))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
