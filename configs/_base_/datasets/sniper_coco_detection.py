# SNIPER chip training on COCO: the reference scales and valid ranges
# (SNIPER_SPEC.md section 1). Test time is mmdet's single-scale pipeline.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

custom_imports = dict(imports=['mmsniper'], allow_failed_imports=False)

dataset_type = 'CocoDataset'
data_root = 'data/coco/'
backend_args = None

chip_size = 512
# SniperChipCrop does not pad (img_shape is the whole chip image, so that
# RandomFlip mirrors the content only). The model's DetDataPreprocessor pads
# every training batch to the chip size after normalisation, so the pad is
# 0 = the pixel mean, as the reference pads each chip to 512 with the mean.
# A config that changes chip_size must change this too.
sniper_batch_augments = [
    dict(type='BatchFixedSizePad', size=(chip_size, chip_size))
]
# Finest first: factors 3.0 and 1.667, then long side 512 (main_train.py).
sniper_scales = [3.0, 1.667, (-1, 512)]
# sqrt-area ranges in original px, -1 = open.
sniper_valid_ranges = [(-1, 80), (32, 150), (120, -1)]

sniper_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'flip', 'flip_direction', 'chip_offset',
                    'chip_scale', 'chip_valid_range', 'chip_scale_idx',
                    'chip_is_negative')

train_pipeline = [
    # A drop-in for LoadImageFromFile: decodes JPEGs at reduced size for the
    # coarse scales and keeps only the chip's region; add
    # tile_store='DIR' (tools/dataset_converters/build_tile_store.py) to
    # read only the chip's tiles.
    dict(type='LoadSniperChipFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SniperChipCrop', min_gt_size=10),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs', meta_keys=sniper_meta_keys)
]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(_delete_=True, type='SniperChipSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        _delete_=True,
        type='SniperChipDataset',
        scales=sniper_scales,
        valid_ranges=sniper_valid_ranges,
        chip_size=chip_size,
        stride=32,
        # Reference code: a new stride in [56, 60) every epoch.
        stride_jitter=None,
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=train_pipeline,
            backend_args=backend_args)))
