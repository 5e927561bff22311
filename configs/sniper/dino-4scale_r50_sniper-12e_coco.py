# SNIPER training of mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py
# made by tools/misc/make_sniper_config.py: the source
# is inherited; below is what SNIPER changes. See the README,
# "Add SNIPER to your config".
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['mmsniper'], allow_failed_imports=False)

chip_size = 512
# training scales, finest first: factors, or (short, long cap) / (-1, long)
sniper_scales = [3.0, 1.667, (-1, 512)]
# sqrt-area ranges in original px per scale, -1 = open
sniper_valid_ranges = [(-1, 80), (32, 150), (120, -1)]
# chips are not padded by the pipeline: each batch is padded to the
# chip size with the pixel mean by the model's data preprocessor
sniper_batch_augments = [
    dict(type='BatchFixedSizePad', size=(chip_size, chip_size))
]

train_pipeline = [
    # was LoadImageFromFile: reads only the chip
    dict(type='LoadSniperChipFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    # replaces: RandomChoice(transforms=[[{'type': 'RandomChoiceResize', ...
    dict(type='SniperChipCrop'),
    dict(type='RandomFlip', prob=0.5),
    # with the chip meta keys
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'flip', 'flip_direction', 'chip_offset',
                    'chip_scale', 'chip_valid_range', 'chip_scale_idx',
                    'chip_is_negative')),
]

train_dataloader = dict(
    sampler=dict(_delete_=True, type='SniperChipSampler', shuffle=True),
    dataset=dict(_delete_=True,
                 type='SniperChipDataset',
                 scales=sniper_scales,
                 valid_ranges=sniper_valid_ranges,
                 chip_size=chip_size,
                 stride=32,
                 dataset=dict(type='CocoDataset',
                              data_root='data/coco/',
                              ann_file='annotations/instances_train2017.json',
                              data_prefix=dict(img='train2017/'),
                              filter_cfg=dict(filter_empty_gt=False,
                                              min_size=32),
                              pipeline=train_pipeline,
                              backend_args=None)))

model = dict(bbox_head=dict(type='SniperDINOHead'),
             data_preprocessor=dict(batch_augments=sniper_batch_augments))

# SniperIgnoreCheckHook: training stops at once if a head would train
# the ignored GT of a chip as background; SniperTTAStatsHook logs the
# pixels and time per image of --tta (a no-op otherwise)
custom_hooks = [
    dict(type='SniperIgnoreCheckHook'),
    dict(type='SniperTTAStatsHook')
]

# tools/test.py --tta: SNIPER multi-scale test, finest first; test ranges
# are lo < sqrt(area) <= hi in original px
sniper_test_scales = [(1400, 2000), (800, 1280), (480, 512)]
sniper_test_valid_ranges = [(-1, 90), (32, 180), (75, -1)]
tta_model = dict(type='SniperTTAModel',
                 scales=sniper_test_scales,
                 valid_ranges=sniper_test_valid_ranges,
                 merge_cfg=dict(nms=dict(type='soft_nms',
                                         iou_threshold=0.3,
                                         sigma=0.55,
                                         min_score=0.001,
                                         method='gaussian'),
                                max_per_img=200))

# the SNIPER test resizes (and tiles) per scale itself: the image is
# loaded at its original size, by LoadSniperChipFromFile: a pixel limit
# read from the header before decoding, decode errors naming the file
tta_pipeline = [
    dict(type='LoadSniperChipFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
