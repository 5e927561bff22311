# SNIPER multi-scale testing (SNIPER_SPEC.md section 6), used by
# `python tools/test.py CONFIG CHECKPOINT --tta` (and mmdet's tools/test.py):
# the detector runs on the whole image at every test scale (finest first;
# tiled when the scaled image exceeds tile_cfg.max_pixels), each scale keeps
# the detections whose sqrt-area in original px lies in its test valid range
# (lo < sqrt(area) <= hi, the reference's test rule), and all scales are
# merged with class-wise Gaussian Soft-NMS, top 200 per image.
# Scales and ranges live only here, in tta_model: override them there.
tta_model = dict(
    type='SniperTTAModel',
    # the reference COCO test scales, (short_target, long_cap) or factors
    scales=[(1400, 2000), (800, 1280), (480, 512)],
    # sqrt-area in original px, -1 = open; one per scale
    valid_ranges=[(-1, 90), (32, 180), (75, -1)],
    flip=False,
    # model inputs (whole images or tiles of one scale) per forward pass
    batch_size=1,
    merge_cfg=dict(
        # plain NMS instead: nms=dict(type='nms', iou_threshold=0.5)
        nms=dict(
            type='soft_nms',
            iou_threshold=0.3,  # unused by the Gaussian method
            sigma=0.55,
            min_score=0.001,
            method='gaussian'),
        max_per_img=200),
    # merges the tiles (and flips) of one scale before the valid ranges
    view_nms=dict(type='nms', iou_threshold=0.5),
    tile_cfg=dict(
        max_pixels=4e6,  # scaled px above which an image is tiled
        tile_size=2000,  # tile side, scaled px
        overlap=None,  # scaled px; None: valid-range upper bound + 2 margins
        edge_margin=10))  # orig px: drops detections cut by inner tile edges

# The model resizes and tiles itself: load the image at its original size.
# LoadSniperChipFromFile loads the whole image as LoadImageFromFile does and
# refuses, naming the file, an image whose header declares more than
# max_image_pixels (default 2.5e9 px, checked before decoding), a JPEG too
# short for its declared size, and an empty or undecodable file.
tta_pipeline = [
    dict(type='LoadSniperChipFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# Logs the pixels and time per image of a SNIPER test next to the metric
# (a no-op for any other model, e.g. during training).
custom_hooks = [dict(type='SniperTTAStatsHook')]
