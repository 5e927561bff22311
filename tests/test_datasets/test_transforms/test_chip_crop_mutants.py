# Copyright (c) mmsniper contributors. All rights reserved.
"""SniperChipCrop behaviours pinned by exact values (tests/MUTATION.md).

Written to kill the mutants of ``chip_crop.py`` that the other crop tests
let survive. They check what the chip means for the detector, not how the
image is padded: GT shifted by the chip corner, scaled by ``s`` and clipped
to the chip; ``min_gt_size`` inclusive; ignore flags; ``chip_valid_range``;
``scale_factor``, ``homography_matrix`` and the other chip metas; proposals;
and the errors that name the bad field.
"""
import numpy as np
import pytest
import torch

from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmsniper.datasets.transforms import SniperChipCrop

# A 1000 x 800 (w x h) image; the chip [100, 50, 356, 178] at s = 2 is a
# 512 x 256 (w x h) region: chip_size (h, w) = (256, 512), not square.
IMG_H, IMG_W = 800, 1000
CHIP_BOX = (100, 50, 356, 178)
CHIP_SIZE = (256, 512)


def chip_dict(box=CHIP_BOX, s=2.0, valid_gt=(), chip_size=CHIP_SIZE,
              **extra):
    chip = dict(
        box=np.asarray(box, dtype=np.float64),
        scale_factor=s,
        valid_gt=np.asarray(valid_gt, dtype=np.int64),
        chip_size=chip_size)
    chip.update(extra)
    return chip


def results_for(boxes, chip, ignore=None, img_hw=(IMG_H, IMG_W), **extra):
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    num = len(boxes)
    results = dict(
        img=np.zeros(img_hw + (3, ), dtype=np.uint8),
        img_shape=img_hw,
        ori_shape=img_hw,
        img_path='data/chip_img.jpg',
        gt_bboxes=HorizontalBoxes(boxes),
        gt_bboxes_labels=np.arange(num, dtype=np.int64) + 10,
        sniper_chip=chip)
    if ignore is not None:
        results['gt_ignore_flags'] = np.asarray(ignore, dtype=bool)
    results.update(extra)
    return results


def crop(results, **kwargs):
    return SniperChipCrop(**kwargs)(results)


def test_gt_shifted_scaled_and_clipped_in_a_non_square_chip():
    boxes = [
        [110, 60, 130, 90],  # inside: (b - (100, 50)) * 2
        [300, 150, 400, 200],  # past the right and bottom edges: clipped
        [90, 40, 105, 55],  # past the top-left corner: a 10 x 10 piece
        [500, 500, 600, 600],  # outside: dropped
        [90, 40, 104.995, 55],  # a 9.99 px wide piece: dropped
        [120.5, 70.25, 150.75, 100.5],  # sub-pixel coordinates
    ]
    out = crop(results_for(boxes, chip_dict(valid_gt=[0, 1, 2, 3, 4, 5])))
    np.testing.assert_allclose(
        out['gt_bboxes'].numpy(),
        [[20, 20, 60, 80], [400, 200, 512, 256], [0, 0, 10, 10],
         [41, 40.5, 101.5, 101]],
        atol=1e-4)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [10, 11, 12, 15])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False] * 4)
    assert out['gt_bboxes'].tensor.dtype == torch.float32
    assert out['img_shape'] == (256, 512)
    assert out['img'].shape[:2] == (256, 512)


def test_chip_size_is_height_then_width():
    # Read as (w, h), the 512 px wide region would not fit a 256 px chip.
    out = crop(results_for([[110, 60, 130, 90]], chip_dict(valid_gt=[0])))
    assert out['img_shape'] == (256, 512)
    with pytest.raises(ValueError, match=r'chip_size \(512, 256\) \(h, w\)'):
        crop(
            results_for([[110, 60, 130, 90]],
                        chip_dict(chip_size=(512, 256), valid_gt=[0])))


def test_region_clipped_to_the_chip_not_to_the_image():
    # A box that ends past the chip but inside the image is cut at the chip
    # edge in chip px (x: 356 orig px = 512 chip px).
    out = crop(
        results_for([[340, 100, 700, 170]], chip_dict(valid_gt=[0])))
    np.testing.assert_allclose(out['gt_bboxes'].numpy(),
                               [[480, 100, 512, 240]])


@pytest.mark.parametrize('side,kept', [(10.0, True), (9.99, False),
                                       (10.01, True)])
def test_min_gt_size_boundary_in_chip_px(side, kept):
    # s = 2: a 5 orig px box is 10 chip px; the bound is inclusive.
    for box in ([110, 60, 110 + side / 2, 90], [110, 60, 130,
                                                60 + side / 2]):
        out = crop(results_for([box], chip_dict(valid_gt=[0])))
        assert len(out['gt_bboxes']) == int(kept), box
        assert len(out['gt_ignore_flags']) == int(kept)
        assert len(out['gt_bboxes_labels']) == int(kept)


def test_min_gt_size_parameter():
    boxes = [[110, 60, 112, 90], [110, 60, 130, 61.5], [110, 60, 110, 90]]
    out = crop(results_for(boxes, chip_dict(valid_gt=[0, 1, 2])),
               min_gt_size=3)
    # 4 x 60 and 40 x 3 chip px kept at 3; the empty box never.
    np.testing.assert_allclose(out['gt_bboxes'].numpy(),
                               [[20, 20, 24, 80], [20, 20, 60, 23]])
    out = crop(results_for(boxes, chip_dict(valid_gt=[0, 1, 2])),
               min_gt_size=0)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [10, 11])
    out = crop(results_for(boxes, chip_dict(valid_gt=[0, 1, 2])),
               min_gt_size=4.5)
    assert len(out['gt_bboxes']) == 0
    assert out['gt_bboxes'].tensor.shape == (0, 4)


def test_ignore_flags_follow_valid_gt_and_keep_crowd():
    boxes = [[110, 60, 130, 90], [140, 60, 160, 90], [170, 60, 190, 90],
             [500, 500, 600, 600], [200, 60, 220, 90]]
    ignore = [False, False, True, False, True]
    out = crop(results_for(boxes, chip_dict(valid_gt=[0, 2, 3]), ignore))
    # box 1: not this chip's GT -> ignored; box 2: crowd stays ignored even
    # though valid here; box 3 is dropped (outside) with its flag.
    np.testing.assert_array_equal(out['gt_ignore_flags'],
                                  [False, True, True, True])
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [10, 11, 12, 14])
    assert out['gt_ignore_flags'].dtype == bool


def test_missing_ignore_flags_are_added():
    out = crop(
        results_for([[110, 60, 130, 90], [140, 60, 160, 90]],
                    chip_dict(valid_gt=[1])))
    np.testing.assert_array_equal(out['gt_ignore_flags'], [True, False])


def test_per_instance_arrays_and_lists_filtered():
    boxes = [[110, 60, 130, 90], [500, 500, 600, 600], [140, 60, 160, 90]]
    results = results_for(
        boxes,
        chip_dict(valid_gt=[0, 1, 2]),
        gt_instances_ids=[7, 8, 9],
        gt_extra=torch.tensor([1.0, 2.0, 3.0]),
        gt_tuple=('a', 'b', 'c'),
        gt_other=np.arange(5))
    out = crop(results)
    assert out['gt_instances_ids'] == [7, 9]
    assert torch.equal(out['gt_extra'], torch.tensor([1.0, 3.0]))
    assert out['gt_tuple'] == ('a', 'c')
    np.testing.assert_array_equal(out['gt_other'], np.arange(5))


@pytest.mark.parametrize('valid_range,expected', [
    ((-1, 80), (-1.0, 160.0)),
    ((32, 150), (64.0, 300.0)),
    ((120, -1), (240.0, -1.0)),
    ((-1, -1), (-1.0, -1.0)),
    (None, (-1.0, -1.0)),
    ((0, 40), (0.0, 80.0)),
])
def test_chip_valid_range_in_chip_px(valid_range, expected):
    out = crop(
        results_for([[110, 60, 130, 90]],
                    chip_dict(valid_gt=[0], valid_range=valid_range)))
    assert out['chip_valid_range'] == expected


def test_chip_valid_range_defaults_to_open():
    out = crop(results_for([[110, 60, 130, 90]], chip_dict(valid_gt=[0])))
    assert out['chip_valid_range'] == (-1.0, -1.0)


@pytest.mark.parametrize('old,expected', [(None, (2.0, 2.0)),
                                          ((0.5, 2.0), (1.0, 4.0)),
                                          (1.5, (3.0, 3.0))])
def test_scale_factor_composes(old, expected):
    results = results_for([[110, 60, 130, 90]], chip_dict(valid_gt=[0]))
    if old is not None:
        results['scale_factor'] = old
    out = crop(results)
    assert out['scale_factor'] == expected
    assert all(type(value) is float for value in out['scale_factor'])


def test_chip_metas_and_homography():
    old = np.array([[1, 0, 5], [0, 1, -3], [0, 0, 1]], dtype=np.float32)
    results = results_for([[110, 60, 130, 90]],
                          chip_dict(
                              valid_gt=[0],
                              s=2.5,
                              box=(100, 50, 300, 150),
                              scale_idx=2,
                              is_negative=True),
                          homography_matrix=old)
    out = crop(results)
    assert out['chip_offset'] == (100.0, 50.0)
    assert out['chip_scale'] == 2.5
    assert out['chip_scale_idx'] == 2
    assert out['chip_is_negative'] is True
    expected = np.array([[2.5, 0, -250], [0, 2.5, -125], [0, 0, 1]]) @ old
    np.testing.assert_allclose(out['homography_matrix'], expected)
    assert out['homography_matrix'].dtype == np.float32
    assert 'sniper_chip' in out
    # without a previous matrix: S @ T
    out = crop(results_for([[110, 60, 130, 90]], chip_dict(valid_gt=[0])))
    np.testing.assert_allclose(out['homography_matrix'],
                               [[2, 0, -200], [0, 2, -100], [0, 0, 1]])
    assert out['chip_scale_idx'] == 0 and out['chip_is_negative'] is False


def test_box_sticking_out_within_tolerance_is_clipped():
    # 0.5 px past the top-left corner and the right edge: clipped to the
    # image, the chip starts at (0, 0).
    box = (-0.5, -0.5, 255.0, 127.5)
    out = crop(
        results_for([[0, 0, 20, 20]], chip_dict(box=box, valid_gt=[0])))
    assert out['chip_offset'] == (0.0, 0.0)
    np.testing.assert_allclose(out['gt_bboxes'].numpy(), [[0, 0, 40, 40]])
    assert out['img_shape'] == (255, 510)
    right = (IMG_W - 255.5, 0, IMG_W + 0.5, 128)
    out = crop(
        results_for([[IMG_W - 20, 0, IMG_W, 20]],
                    chip_dict(box=right, valid_gt=[0])))
    assert out['chip_offset'] == (IMG_W - 255.5, 0.0)
    assert out['img_shape'] == (256, 511)
    with pytest.raises(ValueError, match='outside the image'):
        crop(results_for([[0, 0, 20, 20]],
                         chip_dict(box=(-1.5, 0, 254.5, 128))))
    out = crop(
        results_for([[0, 0, 20, 20]],
                    chip_dict(box=(-1.5, 0, 254.5, 128), valid_gt=[0])),
        box_tol=2)
    assert out['chip_offset'] == (0.0, 0.0)


def test_proposals_mapped_clipped_and_empty_ones_dropped():
    proposals = np.array([[110, 60, 130, 90], [300, 150, 400, 200],
                          [500, 500, 600, 600], [90, 40, 100, 60]],
                         dtype=np.float32)
    results = results_for([[110, 60, 130, 90]],
                          chip_dict(valid_gt=[0]),
                          proposals=proposals,
                          proposals_scores=np.array([0.9, 0.8, 0.7, 0.6],
                                                    dtype=np.float32))
    out = crop(results)
    np.testing.assert_allclose(out['proposals'],
                               [[20, 20, 60, 80], [400, 200, 512, 256]])
    np.testing.assert_allclose(out['proposals_scores'], [0.9, 0.8])
    assert out['proposals'].dtype == np.float32


def test_no_chip_leaves_results_alone():
    results = results_for([[110, 60, 130, 90]], None)
    before = results['gt_bboxes'].numpy().copy()
    out = crop(results)
    np.testing.assert_array_equal(out['gt_bboxes'].numpy(), before)
    assert 'chip_scale' not in out and 'scale_factor' not in out


@pytest.mark.parametrize('chip,field', [
    (dict(valid_gt=[0, 3]), r"sniper_chip\['valid_gt'\]"),
    (dict(valid_gt=[-1]), r"sniper_chip\['valid_gt'\]"),
    (dict(s=0.0), r"sniper_chip\['scale_factor'\]"),
    (dict(s=float('inf')), r"sniper_chip\['scale_factor'\]"),
    (dict(box=(200, 50, 100, 178)), r"sniper_chip\['box'\]"),
    (dict(box=(100, 50, 100, 178)), r"sniper_chip\['box'\]"),
    (dict(box=(0, 0, 300, 100)), r"sniper_chip\['box'\]"),
    (dict(chip_size=(0, 512)), r"sniper_chip\['chip_size'\]"),
    (dict(chip_size=(256, -1)), r"sniper_chip\['chip_size'\]"),
])
def test_bad_chip_names_the_field_and_the_image(chip, field):
    results = results_for([[110, 60, 130, 90], [140, 60, 160, 90]],
                          chip_dict(**chip))
    with pytest.raises(ValueError, match=field + ".*'data/chip_img.jpg'"):
        crop(results)


def test_scaled_region_one_px_over_the_chip_is_accepted():
    # 513 chip px wide: within the 1 px slack, cut to the chip width.
    out = crop(
        results_for([[110, 60, 130, 90]],
                    chip_dict(box=(100, 50, 356.5, 178), valid_gt=[0])))
    assert out['img_shape'] == (256, 512)
    with pytest.raises(ValueError, match='larger than chip_size'):
        crop(results_for([[110, 60, 130, 90]],
                         chip_dict(box=(100, 50, 357.5, 178))))


def test_ignore_flags_length_checked():
    results = results_for([[110, 60, 130, 90], [140, 60, 160, 90]],
                          chip_dict(valid_gt=[0]),
                          ignore=[False])
    with pytest.raises(ValueError, match="gt_ignore_flags.*1 flags for 2"):
        crop(results)


@pytest.mark.parametrize('kwargs,match', [
    (dict(min_gt_size=-1), 'min_gt_size'),
    (dict(box_tol=-0.5), 'box_tol'),
    (dict(interpolation='area'), 'interpolation'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SniperChipCrop(**kwargs)


def test_masks_and_seg_map_resampled_nearest():
    # Values 0 and 100 with an edge at x = 120.5 orig px (not on the chip
    # grid at s = 2.5): any other interpolation makes values in between.
    seg = np.zeros((IMG_H, IMG_W), dtype=np.uint8)
    seg[:, 121:] = 100
    mask = np.zeros((2, IMG_H, IMG_W), dtype=np.uint8)
    mask[0, 60:90, 110:130] = 1
    mask[1, 500:600, 500:600] = 1
    results = results_for([[110, 60, 130, 90], [500, 500, 600, 600]],
                          chip_dict(valid_gt=[0], s=2.5,
                                    box=(100, 50, 300, 150)),
                          gt_seg_map=seg,
                          gt_masks=BitmapMasks(mask, IMG_H, IMG_W))
    out = crop(results)
    # the chip is not padded (the data preprocessor pads batches): the
    # seg map is the 500 x 250 region, values 0 and 100 only
    assert out['gt_seg_map'].shape == (250, 500)
    assert set(np.unique(out['gt_seg_map']).tolist()) == {0, 100}
    assert out['gt_seg_map'].dtype == np.uint8
    masks = out['gt_masks']
    assert masks.masks.dtype == np.uint8 and masks.masks.shape == (1, 250,
                                                                   500)
    ys, xs = np.nonzero(masks.masks[0])
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (25, 25, 75,
                                                                100)
    assert set(np.unique(masks.masks).tolist()) == {0, 1}


def test_polygon_masks_mapped_like_the_boxes():
    poly = [np.array([110, 60, 130, 60, 130, 90, 110, 90], dtype=np.float64)]
    outside = [np.array([500, 500, 600, 500, 600, 600], dtype=np.float64)]
    results = results_for([[110, 60, 130, 90], [500, 500, 600, 600]],
                          chip_dict(valid_gt=[0]),
                          gt_masks=PolygonMasks([poly, outside], IMG_H,
                                                IMG_W))
    out = crop(results)
    masks = out['gt_masks']
    assert (masks.height, masks.width) == CHIP_SIZE and len(masks) == 1
    corners = masks.masks[0][0].reshape(-1, 2)
    assert sorted(map(tuple, corners.tolist()))[:4] == [(20, 20), (20, 80),
                                                        (60, 20), (60, 80)]


def test_proposals_cut_at_the_chip_origin_and_zero_width_dropped():
    proposals = np.array([[90, 60, 130, 90], [110, 40, 130, 70],
                          [200, 60, 200, 90], [150, 60, 170, 60]],
                         dtype=np.float32)
    out = crop(
        results_for([[110, 60, 130, 90]],
                    chip_dict(valid_gt=[0]),
                    proposals=proposals))
    np.testing.assert_allclose(out['proposals'],
                               [[0, 20, 60, 80], [20, 0, 60, 40]])


def test_fractional_corner_on_one_axis_is_sampled_exactly():
    # Rows hold 10 * y: a chip starting at y = 2.25 shows 22.5 + 10 v in
    # row v (bilinear), not the 20 + 10 v of the integer crop at y = 2.
    img = np.repeat(np.arange(26, dtype=np.uint8)[:, None] * 10, 40, axis=1)
    results = dict(img=img, img_shape=(26, 40), ori_shape=(26, 40),
                   sniper_chip=chip_dict(box=(10, 2.25, 26, 18.25), s=1.0,
                                         chip_size=(16, 16)))
    out = crop(results)
    expected = 22.5 + 10 * np.arange(16)
    assert np.abs(out['img'][:, 0].astype(float) - expected).max() <= 0.5
    results = dict(img=img.T.copy(), img_shape=(40, 26), ori_shape=(40, 26),
                   sniper_chip=chip_dict(box=(2.25, 10, 18.25, 26), s=1.0,
                                         chip_size=(16, 16)))
    out = crop(results)
    assert np.abs(out['img'][0, :].astype(float) - expected).max() <= 0.5
