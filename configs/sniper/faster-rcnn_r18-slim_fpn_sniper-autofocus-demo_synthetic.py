# The demo detector with AutoFocus: the same slim Faster R-CNN and chips as
# faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py, plus a FocusPixel head
# on its 64-channel FPN, tested coarse to fine on FocusChips (`--tta`).
_base_ = [
    './faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py',
    '../_base_/autofocus.py'
]

model = dict(
    _delete_=True,
    type='AutoFocusDetector',
    data_preprocessor={{_base_.model.data_preprocessor}},
    detector={{_base_.model}},
    focus_head=dict(
        type='FocusPixelHead', in_channels=64, feat_channels=64, stride=16))

train_pipeline = [
    dict(type='LoadSniperChipFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SniperChipCrop', min_gt_size=10),
    dict(type='RandomFlip', prob=0.5),
    {{_base_.autofocus_labels}},
    dict(type='PackSniperDetInputs', meta_keys={{_base_.sniper_meta_keys}})
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))

# The demo's test scales and ranges (its SNIPER test), coarse to fine on
# FocusChips. Min chip sizes: about 512 px at the next scale, as the
# reference's (16 and 20 cells) are on COCO.
tta_model = dict(
    _delete_=True,
    type='AutoFocusTTAModel',
    scales={{_base_.sniper_scales}},
    valid_ranges=[(-1, 50), (24, 240), (120, -1)],
    chip_params=[(3, 0.02, 12), (3, 0.2, 14)],
    focus=True,
    vis_dir=None,
    merge_cfg={{_base_.autofocus_tta_model.merge_cfg}},
    view_nms={{_base_.autofocus_tta_model.view_nms}},
    tile_cfg={{_base_.autofocus_tta_model.tile_cfg}})
