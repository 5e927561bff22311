# Copyright (c) mmsniper contributors. All rights reserved.
import os.path as osp

import numpy as np
import pytest
from sniper_test_utils import random_images, write_coco

from mmsniper.chips import box_sqrt_areas, compute_scale_factors
from mmsniper.datasets.chip_table import ChipIndex
from mmsniper.datasets.sniper_chip_dataset import SniperChipDataset

SCALES = (2.0, 1.0, (-1, 512))
RANGES = ((-1, 64), (32, 160), (120, -1))


def build(tmp_path, images, **kwargs):
    ann = write_coco(osp.join(tmp_path, 'ann.json'), images)
    inner = dict(
        type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
        data_prefix=dict(img=''), metainfo=dict(classes=('a', 'b')),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[])
    assert osp.exists(ann)
    kwargs.setdefault('scales', SCALES)
    kwargs.setdefault('valid_ranges', RANGES)
    return SniperChipDataset(inner, chip_size=256, **kwargs)


def test_every_valid_gt_is_valid_in_exactly_one_chip_per_scale(tmp_path):
    images = random_images(12, seed=1)
    ds = build(tmp_path, images)
    table = ds.chip_table(0)
    assert len(table) == len(ds) > 0
    for img_idx, img in enumerate(images):
        boxes = np.array(img['boxes'], dtype=float).reshape(-1, 4)
        factors = compute_scale_factors(SCALES, (img['height'], img['width']))
        rows = np.flatnonzero(table.img_idx == img_idx)
        for scale_idx, (s, (lo, hi)) in enumerate(zip(factors, RANGES)):
            lo = 0 if lo == -1 else lo
            hi = np.inf if hi == -1 else hi
            area = box_sqrt_areas(boxes)
            sides = np.maximum(boxes[:, 2] - boxes[:, 0],
                               boxes[:, 3] - boxes[:, 1])
            fits = (sides < (256 - 32 - 1) / s) | (
                max(img['height'], img['width']) * s <= 256)
            expected = np.flatnonzero((area >= lo) & (area < hi) & fits)
            scale_rows = rows[table.scale_idx[rows] == scale_idx]
            owners = np.concatenate(
                [table.valid_gt(r) for r in scale_rows] + [np.zeros(0, int)])
            assert sorted(owners.tolist()) == expected.tolist()
            for r in scale_rows:
                x1, y1, x2, y2 = table.boxes[r]
                assert x1 >= -1e-3 and y1 >= -1e-3
                assert x2 <= img['width'] + 1e-3
                assert y2 <= img['height'] + 1e-3
                inside = boxes[table.valid_gt(r)]
                assert (inside[:, :2] >= table.boxes[r, :2] - 1e-2).all()
                assert (inside[:, 2:] <= table.boxes[r, 2:] + 1e-2).all()


def test_chip_dict_and_int_index_agree(tmp_path):
    ds = build(tmp_path, random_images(3, seed=2, max_boxes=10))
    table = ds.chip_table(0)
    info = ds.get_data_info(0)
    chip = info['sniper_chip']
    assert np.allclose(chip['box'], table.boxes[0])
    assert chip['valid_gt'].tolist() == table.valid_gt(0).tolist()
    assert chip['chip_size'] == (256, 256)
    assert chip['valid_range'] == RANGES[chip['scale_idx']]
    size = (info['height'], info['width'])
    assert chip['scale_factor'] == pytest.approx(
        compute_scale_factors(SCALES, size)[chip['scale_idx']])
    same = ds.get_data_info(table.index(0))
    assert same['sniper_chip']['valid_gt'].tolist() == \
        chip['valid_gt'].tolist()


def test_crowd_boxes_never_drive_chips(tmp_path):
    images = [dict(file_name='a.jpg', width=1000, height=800,
                   boxes=[[10, 10, 40, 40], [600, 500, 630, 530]],
                   crowd=[1, 0])]
    ds = build(tmp_path, images)
    table = ds.chip_table(0)
    owners = np.concatenate([table.valid_gt(r) for r in range(len(table))])
    assert 0 not in owners and 1 in owners


def test_images_without_boxes_give_no_chips(tmp_path):
    images = [
        dict(file_name='a.jpg', width=800, height=600,
             boxes=[[10, 10, 30, 30]]),
        dict(file_name='b.jpg', width=800, height=600,
             boxes=[[400, 300, 520, 420]]),
        dict(file_name='empty.jpg', width=900, height=700),
    ]
    ds = build(tmp_path, images)
    assert sorted(set(ds.chip_table(0).img_idx.tolist())) == [0, 1]
    assert ds.chip_stats()['images_without_chips'] == 1


def test_every_chip_gets_the_factor_of_its_own_scale(tmp_path):
    """Bug 4 of issue 13: each row's ``sniper_chip['scale_factor']``, checked
    against the factor computed here (2.0, 1.0, 512 / long side)."""
    images = random_images(8, seed=21, min_size=700, max_size=1600,
                           max_boxes=30)
    ds = build(tmp_path, images)
    table = ds.chip_table(0)
    assert set(table.scale_idx.tolist()) == {0, 1, 2}
    for row in range(len(table)):
        info = ds.get_data_info(row)
        chip = info['sniper_chip']
        img = images[int(table.img_idx[row])]
        expected = (2.0, 1.0, 512 / max(img['width'], img['height']))[
            int(table.scale_idx[row])]
        assert chip['scale_idx'] == table.scale_idx[row]
        assert chip['scale_factor'] == pytest.approx(expected, rel=1e-12)
        assert chip['valid_range'] == RANGES[chip['scale_idx']]
        np.testing.assert_array_equal(chip['box'], table.boxes[row])


def test_chip_stats_pixel_figures(tmp_path):
    """One 20 px box per image: valid only at the finest scale (2.0), so
    one chip each; the figures by hand."""
    images = [
        dict(file_name='a.jpg', width=1000, height=800,
             boxes=[[100, 100, 120, 120]]),
        dict(file_name='b.jpg', width=600, height=400,
             boxes=[[50, 50, 70, 70]]),
    ]
    stats = build(tmp_path, images).chip_stats()
    assert stats['num_images'] == 2
    assert stats['num_chips'] == stats['num_positive_chips'] == 2
    assert stats['chips_per_scale'] == [2, 0, 0]
    assert stats['chips_per_image'] == 1.0
    assert stats['images_without_chips'] == 0
    assert stats['chip_pixels_per_image'] == 256 * 256
    # the whole image at 2.0: (1000 * 2) (800 * 2) and (600 * 2) (400 * 2)
    assert stats['finest_scale_pixels_per_image'] == pytest.approx(
        (2000 * 1600 + 1200 * 800) / 2)
    # 800 x 1333 resize: factor 1 for 1000 x 800, 2 for 600 x 400
    assert stats['resize_800x1333_pixels_per_image'] == pytest.approx(
        (1000 * 800 + 1200 * 800) / 2)
    assert stats['num_negative_chips_mined'] == 0
    assert stats['negative_chips_per_epoch'] == 0


@pytest.mark.parametrize('kwargs, match', [
    (dict(stride=255), r'stride=255 yields no chips with chip_size=256'),
    # a stride above the chip size: caught by the settings check first
    (dict(stride=300), r'chip_size = 256 is not larger than '
     r'SniperChipDataset\.stride = 300'),
    (dict(stride_jitter=(200, 300)), r'chip_size = 256 is not larger than '
     r'SniperChipDataset\.stride_jitter = \(200, 300\)'),
    (dict(stride_jitter=(200, 255)),
     r'no GT is valid at any scale.*stride_jitter=\(200, 255\) against '
     r'chip_size=256'),
])
def test_settings_without_room_for_any_gt_are_refused(
        tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(tmp_path, random_images(2, seed=8), **kwargs)


def test_no_valid_gt_anywhere_is_refused_at_build(tmp_path):
    images = [dict(file_name='a.jpg', width=800, height=600,
                   boxes=[[10, 10, 30, 30], [100, 100, 130, 120]])]
    # sqrt-areas 20 and 24.5: in no range
    with pytest.raises(ValueError, match=r'no chips from 1 images with 2 GT '
                       r'boxes: no GT is valid at any scale\. Change '
                       r'valid_ranges=\(\(100, 200\), \(300, -1\)\)'):
        build(tmp_path, images, scales=(1.0, 0.5),
              valid_ranges=((100, 200), (300, -1)))
    with pytest.raises(ValueError, match='hold no usable GT box'):
        build(tmp_path, [dict(file_name='e.jpg', width=80, height=60)])


def test_absurd_declared_size_is_refused(tmp_path):
    images = [dict(file_name='ok.jpg', width=800, height=600,
                   boxes=[[10, 10, 30, 30]]),
              dict(file_name='corrupt.jpg', width=1_000_000_000, height=480,
                   boxes=[[10, 10, 30, 30]])]
    with pytest.raises(ValueError, match=r'corrupt\.jpg declares '
                       r'width=1000000000 .*above max_image_pixels=2\.5e\+09'
                       r'.*max_image_pixels=\.\.\.'):
        build(tmp_path, images)
    # the bound is configurable: a 800 x 600 image against 4e5 and 5e5 px
    with pytest.raises(ValueError, match=r'ok\.jpg declares width=800'):
        build(tmp_path, images[:1], max_image_pixels=4e5)
    assert len(build(tmp_path, images[:1], max_image_pixels=5e5)) == 1
    with pytest.raises(ValueError, match='max_image_pixels must be positive'):
        build(tmp_path, images[:1], max_image_pixels=0)


def test_lower_bound_scales_coarsest_validates_small_gt(tmp_path):
    """At scale 1 (range 32..160) a 40 px GT drives a chip; a 20 px GT
    beside it is valid there only with lower_bound_scales='coarsest'. At the
    coarsest scale (range 120..) a small GT stays invalid either way."""
    images = [dict(file_name='a.jpg', width=1600, height=1200,
                   boxes=[[400, 400, 440, 440], [300, 300, 320, 320],
                          [900, 600, 1050, 750], [1500, 1100, 1510, 1110]])]
    spec = build(tmp_path, images)
    code = build(tmp_path, images, lower_bound_scales='coarsest')
    for ds, small_valid in ((spec, False), (code, True)):
        table = ds.chip_table(0)
        np.testing.assert_array_equal(table.boxes, spec.chip_table(0).boxes)
        per_scale = {
            k: sorted(int(g) for r in np.flatnonzero(table.scale_idx == k)
                      for g in table.valid_gt(r))
            for k in range(3)
        }
        # finest (range -1..64): GT 0, 1 and 3 drive chips in both
        assert per_scale[0] == [0, 1, 3]
        assert per_scale[1] == ([0, 1, 2] if small_valid else [0, 2])
        # coarsest: only the 150 px GT (2); the small ones never
        assert per_scale[2] == [2]
    assert repr(code).endswith("lower_bound_scales='coarsest')")
    with pytest.raises(ValueError, match='lower_bound_scales'):
        build(tmp_path, images, lower_bound_scales='none')


@pytest.mark.parametrize('rule,ignored', [('all', True), ('coarsest', False)])
def test_coarsest_small_gt_partly_in_its_chip_is_trained_clipped(
        tmp_path, rule, ignored):
    """The authors' box_assigner makes a GT under lo valid in the chip it
    overlaps most, partial overlap included: the chip crop keeps its part
    inside the chip as a valid GT."""
    from mmdet.structures.bbox import HorizontalBoxes
    from mmsniper.datasets.transforms import SniperChipCrop
    # scale 1 (range 32..160): the 40 px GT drives chip (192, 192, 448,
    # 448); the 30 x 16 px GT has 18 x 16 px of itself inside it
    boxes = [[400, 400, 440, 440], [430, 300, 460, 316]]
    ds = build(tmp_path, [dict(file_name='a.jpg', width=1600, height=1200,
                               boxes=boxes)], lower_bound_scales=rule)
    table = ds.chip_table(0)
    (row, ) = np.flatnonzero(table.scale_idx == 1)
    np.testing.assert_allclose(table.boxes[row], [192, 192, 448, 448])
    assert table.valid_gt(row).tolist() == ([0] if ignored else [0, 1])
    info = ds.get_data_info(int(row))
    img = np.zeros((1200, 1600, 3), dtype=np.uint8)
    out = SniperChipCrop()(dict(
        img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
        gt_bboxes=HorizontalBoxes(np.array(boxes, dtype=np.float32)),
        gt_bboxes_labels=np.zeros(2, dtype=np.int64),
        gt_ignore_flags=np.zeros(2, dtype=bool),
        sniper_chip=info['sniper_chip']))
    np.testing.assert_allclose(out['gt_bboxes'].numpy(),
                               [[208, 208, 248, 248], [238, 108, 256, 124]])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False, ignored])


def test_lazy_init_defers_loading_and_chips(tmp_path, monkeypatch):
    images = random_images(3, seed=9, max_boxes=10)
    calls = []
    original = SniperChipDataset._collect_image_gt

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(SniperChipDataset, '_collect_image_gt', counting)
    eager = build(tmp_path, images)
    assert len(calls) == 1
    lazy = build(tmp_path, images, lazy_init=True)
    assert len(calls) == 1 and lazy._image_gt is None
    assert len(lazy) == len(eager)
    assert len(calls) == 2
    np.testing.assert_array_equal(lazy.chip_table(0).boxes,
                                  eager.chip_table(0).boxes)
    lazy.full_init()
    assert len(calls) == 2


def test_num_proc_gives_the_serial_tables(tmp_path):
    images = random_images(12, seed=10, max_boxes=20)
    serial = build(tmp_path, images, stride_jitter=(16, 48), num_proc=1)
    forked = build(tmp_path, images, stride_jitter=(16, 48), num_proc=2)
    for epoch in (0, 3):
        left, right = serial.chip_table(epoch, 5), forked.chip_table(epoch, 5)
        assert len(left) > 12
        for name in ('img_idx', 'scale_idx', 'boxes', 'is_negative',
                     'gt_ptr', 'gt_index'):
            np.testing.assert_array_equal(getattr(left, name),
                                          getattr(right, name))


def test_max_refetch_retries_then_names_the_pipeline(tmp_path):
    images = random_images(3, seed=13, max_boxes=10)

    class NoneFirst:
        """Returns None for the first ``misses`` calls."""

        def __init__(self, misses):
            self.misses = misses
            self.seen = []

        def __call__(self, results):
            self.seen.append(results['sniper_chip']['box'].tolist())
            if len(self.seen) <= self.misses:
                return None
            return results

    ds = build(tmp_path, images, max_refetch=2)
    ds.pipeline = NoneFirst(2)
    out = ds[0]
    assert len(ds.pipeline.seen) == 3
    assert out['sniper_chip']['box'].tolist() == ds.pipeline.seen[-1]
    ds.pipeline = NoneFirst(3)
    with pytest.raises(RuntimeError,
                       match='the pipeline returned None for 3 chips in a '
                       'row'):
        ds[0]
    assert len(ds.pipeline.seen) == 3


def test_degenerate_boxes_warn_or_raise(tmp_path):
    images = [dict(file_name='bad.jpg', width=600, height=600,
                   boxes=[[10, 10, 50, 50], [100, 100, 100, 140]])]
    ann = write_coco(osp.join(tmp_path, 'ann.json'), images)
    # mmdet's CocoDataset drops zero-area boxes itself, so feed the wrapper a
    # dataset whose data_info still has one.
    ds = build(tmp_path, images)
    info = ds.dataset.get_data_info(0)
    assert len(info['instances']) == 1 and osp.exists(ann)

    class WithDegenerate:
        metainfo = dict(classes=('a', 'b'))
        test_mode = False

        def __len__(self):
            return 1

        def get_data_info(self, idx):
            return dict(img_path='bad.jpg', height=600, width=600,
                        instances=[
                            dict(bbox=[10, 10, 50, 50], bbox_label=0,
                                 ignore_flag=0),
                            dict(bbox=[100, 100, 90, 140], bbox_label=0,
                                 ignore_flag=0)])

    ok = SniperChipDataset(WithDegenerate(), SCALES, RANGES, chip_size=256)
    assert ok._degenerate[0] == 1 and 'bad.jpg' in ok._degenerate[1][0]
    owners = {int(g) for r in range(len(ok)) for g in
              ok.chip_table(0).valid_gt(r)}
    assert owners == {0}
    with pytest.raises(ValueError, match='bad.jpg'):
        SniperChipDataset(WithDegenerate(), SCALES, RANGES, chip_size=256,
                          on_degenerate_box='error')


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match='3 scales but 2 valid_ranges'):
        build(tmp_path, random_images(1), valid_ranges=RANGES[:2])
    with pytest.raises(ValueError, match='stride_jitter'):
        build(tmp_path, random_images(1), stride_jitter=(60, 56))


def test_stride_jitter_redraws_chips_per_epoch(tmp_path):
    images = random_images(10, seed=4, min_size=1200, max_size=1800,
                           max_boxes=40)
    ds = build(tmp_path, images, stride_jitter=(8, 64))
    strides = {ds.epoch_stride(e, seed=7) for e in range(8)}
    assert len(strides) > 1
    assert ds.epoch_stride(3, seed=7) == ds.epoch_stride(3, seed=7)
    tables = [ds.chip_table(e, seed=7) for e in range(8)]
    assert any(len(t) != len(tables[0]) or
               not np.array_equal(t.boxes, tables[0].boxes)
               for t in tables[1:])
    again = ds.chip_table(5, seed=7)
    assert np.array_equal(again.boxes, tables[5].boxes)


def test_test_mode_is_the_wrapped_dataset(tmp_path):
    images = random_images(3, seed=5)
    ann = write_coco(osp.join(tmp_path, 'ann.json'), images)
    ds = SniperChipDataset(
        dict(type='CocoDataset', data_root=str(tmp_path), ann_file=ann,
             data_prefix=dict(img=''), metainfo=dict(classes=('a', 'b')),
             test_mode=True, pipeline=[]), SCALES, RANGES)
    assert len(ds) == 3
    assert 'sniper_chip' not in ds.get_data_info(0)
    assert ds[1]['img_id'] == 2


def test_getitem_runs_the_pipeline_with_the_chip(tmp_path):
    images = random_images(2, seed=6, max_boxes=8)
    ds = build(tmp_path, images, pipeline=[
        dict(type='mmdet.LoadAnnotations', with_bbox=True)])
    chip = ds.chip_table(0).index(0)
    out = ds[chip]
    assert isinstance(chip, ChipIndex)
    assert out['sniper_chip']['valid_gt'].tolist() == list(chip.valid_gt)
    assert out['gt_bboxes'].shape[0] == len(
        ds.dataset.get_data_info(chip.img_idx)['instances'])


def test_update_skip_type_keys_drops_those_steps(tmp_path):
    """What YOLOXModeSwitchHook calls on the training dataset."""
    images = random_images(2, seed=6, max_boxes=8)
    ds = build(tmp_path, images, pipeline=[
        dict(type='mmdet.LoadAnnotations', with_bbox=True),
        dict(type='mmdet.YOLOXHSVRandomAug'),
        dict(type='mmdet.FilterAnnotations', min_gt_bbox_wh=(1, 1))])
    ds.update_skip_type_keys(['YOLOXHSVRandomAug', 'Mosaic'])
    assert [type(t).__name__ for t in ds.pipeline.transforms] == [
        'LoadAnnotations', 'FilterAnnotations']
    assert len(ds[ds.chip_table(0).index(0)]['gt_bboxes'])  # still runs
    with pytest.raises(TypeError, match='transform names'):
        ds.update_skip_type_keys('Mosaic')
