# AutoFocus (SNIPER_SPEC.md section 7) on top of a SNIPER detector config:
# FocusPixel labels in the chip pipeline, and the test-time component. A
# config inherits this after its detector config and wraps its model:
#
#   model = dict(_delete_=True, type='AutoFocusDetector',
#                detector={{_base_.model}}, focus_head=autofocus_head)
#
# (`{{_base_.model}}` is mmengine's reference to the inherited model.)
autofocus_head = dict(
    type='FocusPixelHead',
    in_channels=256,  # the neck's out_channels
    feat_channels=256,
    stride=16,  # reads the neck level of stride 16
    loss_weight=1.0)

# FocusPixel labels: after RandomFlip (it flips with the chip), packed by
# PackSniperDetInputs into data_samples.gt_focus_map.
autofocus_labels = dict(
    type='FocusPixelLabels',
    stride=16,
    positive_range=(5, 64),  # sqrt-area in chip px: focus (1)
    ignore_upper=90)  # [64, 90) and <= 5 ignored (-1), the rest 0

# The test (`tta_model = {{_base_.autofocus_tta_model}}`), coarse to fine
# (`tools/test.py CONFIG CKPT --tta`): the
# coarsest scale on the whole image; its focus map gives the FocusChips of
# the middle scale, whose maps give those of the finest scale.
autofocus_tta_model = dict(
    _delete_=True,
    type='AutoFocusTTAModel',
    scales=[(1400, 2000), (800, 1280), (480, 512)],  # finest first
    # the reference's AutoFocus test ranges (sqrt-area, orig px)
    valid_ranges=[(-1, 75), (32, 180), (75, -1)],
    # (dilation, threshold, min size in cells), coarse to fine
    chip_params=[(3, 0.02, 16), (3, 0.2, 20)],
    focus=True,  # False: every scale on the whole image (full SNIPER test)
    vis_dir=None,  # a folder: one picture per image (map + FocusChips)
    flip=False,
    batch_size=1,
    merge_cfg=dict(
        nms=dict(
            type='soft_nms',
            iou_threshold=0.3,
            sigma=0.55,
            min_score=0.001,
            method='gaussian'),
        max_per_img=200),
    view_nms=dict(type='nms', iou_threshold=0.5),
    tile_cfg=dict(
        max_pixels=4e6, tile_size=2000, overlap=None, edge_margin=10))
