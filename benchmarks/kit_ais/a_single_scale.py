# Study variant (a): single-scale training on whole images (mmdet's
# keep-ratio 1333 x 800 resize), with the same detector, FocusPixel head
# (labels from the resized GT boxes), optimizer, batch size and budget.
_base_ = ['./c_sniper.py']

model = dict(
    data_preprocessor=dict(batch_augments=None),
    detector=dict(
        data_preprocessor=dict(batch_augments=None),
        # whole images carry no chip valid range
        roi_head=dict(filter_proposals_by_valid_range=False)))

full_image_resize = [dict(type='Resize', scale=(1333, 800), keep_ratio=True)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    *full_image_resize,
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='FocusPixelLabels',
        stride=16,
        positive_range=(5, 64),
        ignore_upper=90,
        boxes='gt'),
    dict(type='PackSniperDetInputs')
]
train_dataloader = dict(
    sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root={{_base_.data_root}},
        metainfo={{_base_.metainfo}},
        ann_file={{_base_.train_ann}},
        data_prefix=dict(img={{_base_.img_prefix}}),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
