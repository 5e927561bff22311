# Copyright (c) mmsniper contributors. All rights reserved.
"""Negative chips in SniperChipDataset: mining, per-epoch draws, sharding."""
import os.path as osp

import numpy as np
import pytest
from mmengine.fileio import dump
from sniper_test_utils import write_coco

from mmsniper.chips import compute_scale_factors, generate_negative_chips
from mmsniper.datasets.samplers.sniper_chip_sampler import SniperChipSampler
from mmsniper.datasets.sniper_chip_dataset import SniperChipDataset

SCALES = (2.0, 1.0)
RANGES = ((-1, 64), (32, -1))
CHIP = 256


def cluster(cx, cy, num, rng, side=(8, 24)):
    """``num`` small proposals around (cx, cy)."""
    wh = rng.uniform(*side, size=(num, 2))
    xy = np.stack([cx, cy]) + rng.uniform(-40, 40, size=(num, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def write_proposals(path, per_image):
    """Our extraction tool's format: key -> bboxes, scores, img_id."""
    dump({
        f'images/{name}': dict(
            bboxes=boxes, scores=np.linspace(1, 0.1, len(boxes),
                                             dtype=np.float32),
            img_id=img_id)
        for img_id, (name, boxes) in enumerate(per_image, start=1)
    }, path)
    return path


@pytest.fixture
def data(tmp_path):
    """Three images: GT top-left; proposal clusters far from the GT; the
    third image has no GT (negative-only)."""
    rng = np.random.default_rng(0)
    images = [
        dict(file_name='a.jpg', width=900, height=700,
             boxes=[[20, 20, 40, 40], [60, 30, 80, 50]]),
        dict(file_name='b.jpg', width=900, height=700,
             boxes=[[30, 40, 50, 60]]),
        dict(file_name='c.jpg', width=900, height=700),
    ]
    write_coco(osp.join(tmp_path, 'ann.json'), images)
    per_image = []
    for img in images:
        props = [cluster(cx, cy, 40, rng)
                 for cx, cy in ((450, 350), (700, 150), (750, 600))]
        per_image.append((img['file_name'], np.concatenate(props)))
    return write_proposals(osp.join(tmp_path, 'props.pkl'), per_image)


def build(tmp_path, props, scales=SCALES, ranges=RANGES, **kwargs):
    inner = dict(
        type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
        data_prefix=dict(img='images/'), metainfo=dict(classes=('a', 'b')),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[])
    kwargs.setdefault('neg_min_proposals', 10)
    return SniperChipDataset(
        inner, scales, ranges, chip_size=CHIP,
        neg_proposals=dict(file=props), **kwargs)


def test_negatives_are_mined_away_from_positive_chips(tmp_path, data):
    ds = build(tmp_path, data)
    neg = ds.negative_table()
    assert len(neg) > 0 and neg.is_negative.all()
    assert set(neg.img_idx.tolist()) == {0, 1, 2}
    pos = ds.chip_table(0)
    pos = pos.take(np.flatnonzero(~pos.is_negative))
    # The GT sit top-left; clusters are elsewhere, so no negative chip is a
    # positive chip.
    for row in range(len(neg)):
        same = pos.boxes[(pos.img_idx == neg.img_idx[row])
                         & (pos.scale_idx == neg.scale_idx[row])]
        assert not any(np.allclose(b, neg.boxes[row]) for b in same)
    report = ds.proposal_report
    assert report['images_with_proposals'] == 3


def test_each_epoch_draws_k_negatives_per_image(tmp_path, data):
    ds = build(tmp_path, data, num_neg_chips_per_image=2)
    neg_per_image = np.bincount(ds.negative_table().img_idx, minlength=3)
    assert (neg_per_image > 2).any(), 'the draw must have a choice'
    draws = []
    for epoch in range(4):
        table = ds.chip_table(epoch, seed=3)
        negs = table.is_negative
        counts = np.bincount(table.img_idx[negs], minlength=3)
        assert counts.tolist() == np.minimum(neg_per_image, 2).tolist()
        assert (~negs).sum() == len(ds._positive_table(0, None))
        draws.append(sorted(map(tuple, table.boxes[negs].round(2))))
    assert len({tuple(d) for d in draws}) > 1, 'draws never change'
    again = ds.chip_table(2, seed=3)
    assert sorted(map(tuple, again.boxes[again.is_negative].round(2))) == \
        draws[2]
    assert len(ds) == len(ds.chip_table(0))


def test_negative_only_image_contributes_only_negatives(tmp_path, data):
    ds = build(tmp_path, data)
    table = ds.chip_table(0)
    assert table.is_negative[table.img_idx == 2].all()
    assert (table.img_idx == 2).any()


def test_gt_inside_a_negative_chip_is_valid_there(tmp_path):
    rng = np.random.default_rng(1)
    images = [dict(file_name='a.jpg', width=900, height=700,
                   boxes=[[20, 20, 40, 40], [440, 340, 460, 360]])]
    write_coco(osp.join(tmp_path, 'ann.json'), images)
    # Positives cover both GT; proposals crowd around the second one but
    # spread beyond the positive chip that covers it.
    props = np.concatenate([cluster(450, 350, 60, rng, side=(10, 30)),
                            cluster(520, 420, 60, rng)])
    path = write_proposals(osp.join(tmp_path, 'p.pkl'), [('a.jpg', props)])
    ds = build(tmp_path, path)
    neg = ds.negative_table()
    for row in range(len(neg)):
        x1, y1, x2, y2 = neg.boxes[row]
        inside = x1 <= 440 and y1 <= 340 and x2 >= 460 and y2 >= 360
        assert (1 in neg.valid_gt(row).tolist()) == bool(
            inside and neg.scale_idx[row] == 0)


def test_two_ranks_see_every_chip_once_with_negatives(tmp_path, data):
    ds = build(tmp_path, data)
    keys = []
    for rank in range(2):
        sampler = SniperChipSampler(ds, seed=9, round_up=False)
        sampler.rank, sampler.world_size = rank, 2
        sampler.set_epoch(1)
        keys += [(c.img_idx, c.scale_idx, c.box, c.is_negative, c.valid_gt)
                 for c in sampler]
    table = ds.chip_table(1, seed=9)
    expected = [tuple(table.index(i)) for i in range(len(table))]
    assert sorted(keys) == sorted(expected)
    assert len(set(keys)) == len(keys)
    assert 0 < sum(k[3] for k in keys) < len(keys)


def on_grid(origins, extent, chip, stride):
    """Scaled origins that are a multiple of ``stride`` or flush with the
    far edge (or 0 for an extent that fits one chip)."""
    flush = max(extent - chip, 0.0)
    return all(
        abs(o - flush) < 1e-3 or abs(o / stride - round(o / stride)) < 1e-6
        for o in origins)


def test_negatives_are_mined_per_epoch_on_its_stride(
        tmp_path, data, monkeypatch):
    """Issue 7 item 2: with stride_jitter, each epoch's negative chips are
    mined on that epoch's grid against that epoch's positive chips."""
    calls = []
    original = SniperChipDataset._mine_negatives

    def counting(self, positives, stride, *args, **kwargs):
        calls.append(stride)
        return original(self, positives, stride, *args, **kwargs)

    monkeypatch.setattr(SniperChipDataset, '_mine_negatives', counting)
    ds = build(tmp_path, data, stride_jitter=(20, 60), num_proc=2)
    strides = [ds.epoch_stride(e, 3) for e in range(4)]
    assert len(set(strides)) == 4
    proposals = [ds._proposals.get(i)[0] for i in range(3)]
    calls.clear()
    tables = []
    for epoch, stride in enumerate(strides):
        neg = ds.negative_table(epoch, 3)
        assert ds.negative_table(epoch, 3) is neg
        ds.chip_table(epoch, 3)
        assert calls == strides[:epoch + 1], 'mined once per epoch'
        pos = ds._positive_table(epoch, 3)
        assert len(neg) > 0
        for img in range(3):
            size = (700, 900)
            factors = compute_scale_factors(SCALES, size)
            for k, factor in enumerate(factors):
                rows = (neg.img_idx == img) & (neg.scale_idx == k)
                chips = neg.boxes[rows].astype(float) * factor
                assert on_grid(chips[:, 0], 900 * factor, CHIP, stride)
                assert on_grid(chips[:, 1], 700 * factor, CHIP, stride)
            # the mining used this epoch's positives and stride
            pos_chips = [
                pos.boxes[(pos.img_idx == img) & (pos.scale_idx == k)]
                .astype(float) for k in range(2)
            ]
            expected = generate_negative_chips(
                proposals[img], pos_chips, size, SCALES, RANGES,
                chip_size=CHIP, stride=stride, min_proposals=10)
            for k in range(2):
                rows = (neg.img_idx == img) & (neg.scale_idx == k)
                np.testing.assert_allclose(neg.boxes[rows], expected[k],
                                           atol=1e-3)
        tables.append(sorted(map(tuple, neg.boxes.round(2))))
    assert len({tuple(t) for t in tables}) == 4
    # without jitter: mined once for every epoch
    calls.clear()
    fixed = build(tmp_path, data)
    for epoch in range(3):
        fixed.chip_table(epoch, seed=epoch)
    assert calls == [32]


@pytest.mark.parametrize('rule, small_gt_valid',
                         [('all', False), ('coarsest', True)])
def test_negative_chip_at_a_coarser_scale_honours_its_range(
        tmp_path, rule, small_gt_valid):
    """Issue 13 bug 8: a 20 px GT (valid at scale 2.0, below scale 1.0's
    range 32..160) sits inside a negative chip mined at scale 1.0: it is not
    valid there (unless lower_bound_scales='coarsest', scale 1.0 not being
    the coarsest)."""
    rng = np.random.default_rng(3)
    images = [dict(file_name='a.jpg', width=900, height=700,
                   boxes=[[440, 340, 460, 360]])]
    write_coco(osp.join(tmp_path, 'ann.json'), images)
    props = cluster(450, 350, 40, rng, side=(35, 60))
    path = write_proposals(osp.join(tmp_path, 'p.pkl'), [('a.jpg', props)])
    scales = (2.0, 1.0, 0.5)
    ranges = ((-1, 64), (32, 160), (120, -1))
    ds = build(tmp_path, path, scales=scales, ranges=ranges,
               lower_bound_scales=rule)
    neg = ds.negative_table()
    holds = [(neg.boxes[r, :2] <= [440, 340]).all()
             and (neg.boxes[r, 2:] >= [460, 360]).all()
             for r in range(len(neg))]
    at_scale_1 = [r for r in range(len(neg))
                  if holds[r] and neg.scale_idx[r] == 1]
    assert len(at_scale_1) == 1
    assert (0 in neg.valid_gt(at_scale_1[0]).tolist()) == small_gt_valid
    # at the finest scale it is in range: valid in a negative chip there
    for r in range(len(neg)):
        if holds[r] and neg.scale_idx[r] == 0:
            assert neg.valid_gt(r).tolist() == [0]
    # no negative chip at 0.5 (range from 120, 'coarsest' keeps it)
    assert 2 not in neg.scale_idx.tolist()


def test_nan_score_rows_are_counted_and_reported(tmp_path):
    """A proposal with a NaN score is a bad row of the file: the loader
    drops it and counts it (never silently). 11 proposals, one NaN: 10 left,
    no chip above the threshold of 10."""
    images = [dict(file_name='a.jpg', width=900, height=700,
                   boxes=[[20, 20, 40, 40]])]
    write_coco(osp.join(tmp_path, 'ann.json'), images)
    x = 500 + 12 * np.arange(11, dtype=np.float32)
    boxes = np.stack([x, x * 0 + 300, x + 40, x * 0 + 340], axis=1)
    scores = np.linspace(1, 0.1, 11, dtype=np.float32)
    for nan_at, chips in ((None, 1), (5, 0)):
        if nan_at is not None:
            scores[nan_at] = np.nan
        dump({'images/a.jpg': dict(bboxes=boxes, scores=scores, img_id=1)},
             osp.join(tmp_path, 'p.pkl'))
        ds = build(tmp_path, osp.join(tmp_path, 'p.pkl'), scales=(1.0, ),
                   ranges=((-1, -1), ))
        assert ds.proposal_report['dropped_nan'] == (nan_at is not None)
        assert len(ds.negative_table()) == chips


def test_missing_proposal_file_key_is_named(tmp_path, data):
    with pytest.raises(ValueError, match='file'):
        build(tmp_path, None)
