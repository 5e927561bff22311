# RetinaNet R50-FPN with AutoFocus: the one-stage detector, unchanged, inside
# the AutoFocus wrapper (its FPN starts at stride 8, so stride 16 is there).
_base_ = ['./retinanet_r50_fpn_sniper-1x_coco.py', '../_base_/autofocus.py']

model = dict(
    _delete_=True,
    type='AutoFocusDetector',
    data_preprocessor={{_base_.model.data_preprocessor}},
    detector={{_base_.model}},
    focus_head={{_base_.autofocus_head}})

train_pipeline = [
    dict(type='LoadSniperChipFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SniperChipCrop', min_gt_size=10),
    dict(type='RandomFlip', prob=0.5),
    {{_base_.autofocus_labels}},
    dict(type='PackSniperDetInputs', meta_keys={{_base_.sniper_meta_keys}})
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))

# AutoFocus replaces the SNIPER multi-scale test of the base config.
tta_model = {{_base_.autofocus_tta_model}}
