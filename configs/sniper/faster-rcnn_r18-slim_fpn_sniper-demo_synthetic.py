# The `make demo` config: SNIPER chip training of a slim Faster R-CNN
# (ResNet-18 at half width, 64-channel FPN, trained from scratch: nothing can
# be downloaded) on the embedded synthetic aerial dataset, on CPU in minutes.
# Generate the data with `python tools/generate_demo_data.py`.
_base_ = ['./faster-rcnn_r50_fpn_sniper-1x_coco.py']

data_root = 'data/sniper_demo/'
classes = ('vehicle', 'roof', 'tank')
metainfo = dict(classes=classes)
backend_args = None
chip_size = 512
# Objects span 10 to 580 px in 1500-2500 px images: small ones are trained
# at 1.5x, medium at 0.6x, large on the whole image at long side 512.
sniper_scales = [1.5, 0.6, (-1, 512)]
sniper_valid_ranges = [(-1, 40), (28, 200), (150, -1)]
test_scale_factor = 1.0

model = dict(
    # Training batches padded to the chip size with the pixel mean.
    data_preprocessor=dict(
        batch_augments=[
            dict(type='BatchFixedSizePad', size=(chip_size, chip_size))
        ]),
    backbone=dict(
        depth=18,
        base_channels=32,
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    # 16 px anchors at stride 4: a 10 px object seen at 1.5x still gets
    # positive anchors (IoU >= 0.3) in its chip.
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(
            in_channels=64, fc_out_channels=256, num_classes=len(classes))),
    # Fewer RPN proposals per chip than on COCO: mmcv's CPU NMS is
    # quadratic and dominated the iteration time.
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=500),
        rcnn=dict(sampler=dict(num=256))),
    test_cfg=dict(rcnn=dict(max_per_img=300)))

test_pipeline = [
    # the whole image, with the size and decode checks of the training loader
    dict(type='LoadSniperChipFromFile', backend_args=backend_args),
    dict(type='Resize', scale_factor=test_scale_factor, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# SNIPER multi-scale test (`tools/test.py CONFIG CKPT --tta`, and the second
# row of `make demo`): the training scales, with test valid ranges widened
# as the reference widens its COCO ranges. At 1.5x the demo images (1500 to
# 2500 px) exceed 4 M px and are processed as overlapping tiles.
tta_model = dict(
    scales=sniper_scales, valid_ranges=[(-1, 50), (24, 240), (120, -1)])

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        scales=sniper_scales,
        valid_ranges=sniper_valid_ranges,
        chip_size=chip_size,
        dataset=dict(
            data_root=data_root,
            metainfo=metainfo,
            ann_file='annotations/train.json',
            data_prefix=dict(img='train/'),
            # The training pipeline is the base config's chip pipeline.
            filter_cfg=dict(filter_empty_gt=False))))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=data_root + 'annotations/val.json', classwise=True)
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=50),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=50,
        end=max_iters,
        eta_min_ratio=0.05)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2))
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False)
