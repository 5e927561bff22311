# Study variant (c): SNIPER, positive chips only, at the scales 1.43 and
# 1.0, with a FocusPixel head on the FPN (AutoFocus) trained beside it.
_base_ = ['./_detector_sniper.py', '../../configs/_base_/autofocus.py']

model = dict(
    _delete_=True,
    type='AutoFocusDetector',
    data_preprocessor={{_base_.model.data_preprocessor}},
    detector={{_base_.model}},
    focus_head=dict(
        type='FocusPixelHead', in_channels=128, feat_channels=128,
        stride=16))

train_pipeline = [
    dict(type='LoadSniperChipFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SniperChipCrop', min_gt_size=10),
    dict(type='RandomFlip', prob=0.5),
    {{_base_.autofocus_labels}},
    dict(type='PackSniperDetInputs', meta_keys={{_base_.sniper_meta_keys}})
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))

# The test of every variant: SNIPER multi-scale (focus=False: both scales
# on the whole image) and AutoFocus (the native scale on the whole image,
# 1.43 on the FocusChips it finds), with the same ranges and merge.
tta_model = dict(
    _delete_=True,
    type='AutoFocusTTAModel',
    scales=[1.43, 1.0],  # finest first
    valid_ranges=[(-1, 40), (20, -1)],
    chip_params=[(3, 0.02, 16)],
    focus=True,
    vis_dir=None,
    merge_cfg={{_base_.autofocus_tta_model.merge_cfg}},
    view_nms={{_base_.autofocus_tta_model.view_nms}},
    tile_cfg={{_base_.autofocus_tta_model.tile_cfg}})
