# Study variant (b): multi-scale training on whole images at the scales
# SNIPER uses here (each image resized by one of sniper_scales, 1.43 or
# 1.0, drawn per visit), without chips or valid ranges.
_base_ = ['./a_single_scale.py']

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomChoice',
        transforms=[[dict(type='Resize', scale_factor=s, keep_ratio=True)]
                    for s in _base_.sniper_scales]),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='FocusPixelLabels',
        stride=16,
        positive_range=(5, 64),
        ignore_upper=90,
        boxes='gt'),
    dict(type='PackSniperDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
