# Copyright (c) mmsniper contributors. All rights reserved.
"""Negative chips in SniperChipDataset: mining, per-epoch draws, sharding."""
import os.path as osp

import numpy as np
import pytest
from mmengine.fileio import dump
from sniper_test_utils import write_coco

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


def build(tmp_path, props, **kwargs):
    inner = dict(
        type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
        data_prefix=dict(img='images/'), metainfo=dict(classes=('a', 'b')),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[])
    kwargs.setdefault('neg_min_proposals', 10)
    return SniperChipDataset(
        inner, SCALES, RANGES, chip_size=CHIP,
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
        keys += [(c.img_idx, c.scale_idx, c.box, c.is_negative)
                 for c in sampler]
    table = ds.chip_table(1, seed=9)
    assert len(keys) == len(set(keys)) == len(table)
    assert sum(k[3] for k in keys) == int(table.is_negative.sum())


def test_missing_proposal_file_key_is_named(tmp_path, data):
    with pytest.raises(ValueError, match='file'):
        build(tmp_path, None)
