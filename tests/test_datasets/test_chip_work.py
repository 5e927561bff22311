# Copyright (c) mmsniper contributors. All rights reserved.
"""Per-epoch chip work shared across ranks and prepared in the background
(issue 20 item 2): the tables are the single-process ones, row for row."""
import os.path as osp
import pickle
import time

import numpy as np
import pytest
from mmengine.fileio import dump
from sniper_test_utils import random_images, run_fork_ranks, write_coco

from mmsniper.datasets import chip_work
from mmsniper.datasets.chip_work import BackgroundChipWork, shard_bounds
from mmsniper.datasets.samplers.sniper_chip_sampler import SniperChipSampler
from mmsniper.datasets.sniper_chip_dataset import SniperChipDataset

SCALES = (2.0, 1.0)
RANGES = ((-1, 64), (32, -1))
NUM_IMAGES = 12
EPOCHS = 3
SEED = 5


def write_data(root):
    """12 random images (some without GT) and 150 proposals each: jittered
    GT copies and a cluster elsewhere (which mines negative chips)."""
    rng = np.random.default_rng(3)
    images = random_images(NUM_IMAGES, seed=21, min_size=400,
                           max_size=1100)
    write_coco(osp.join(root, 'ann.json'), images)
    props = {}
    for img_id, img in enumerate(images, start=1):
        boxes = np.array(img['boxes'], dtype=np.float32).reshape(-1, 4)
        parts = []
        if len(boxes):
            src = boxes[rng.integers(len(boxes), size=60)]
            parts.append(src + rng.normal(0, 3, src.shape))
        cx, cy = rng.uniform(100, 300, size=2)
        wh = rng.uniform(8, 30, size=(150 - sum(map(len, parts)), 2))
        xy = np.array([cx, cy]) + rng.uniform(-60, 60, size=wh.shape)
        parts.append(np.concatenate([xy, xy + wh], axis=1))
        bboxes = np.concatenate(parts).astype(np.float32)
        props[f'images/{img["file_name"]}'] = dict(
            bboxes=bboxes, scores=np.linspace(1, 0.1, len(bboxes),
                                              dtype=np.float32),
            img_id=img_id)
    dump(props, osp.join(root, 'props.pkl'))


def build(root, **kwargs):
    inner = dict(
        type='CocoDataset', data_root=str(root), ann_file='ann.json',
        data_prefix=dict(img='images/'), metainfo=dict(classes=('a', 'b')),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[])
    kwargs.setdefault('neg_min_proposals', 5)
    return SniperChipDataset(
        inner, SCALES, RANGES, chip_size=256, stride_jitter=(16, 48),
        neg_proposals=dict(file=osp.join(root, 'props.pkl')), **kwargs)


def as_arrays(table):
    return dict(img_idx=table.img_idx, scale_idx=table.scale_idx,
                boxes=table.boxes, is_negative=table.is_negative,
                gt_ptr=table.gt_ptr, gt_index=table.gt_index)


def assert_same_table(a, b):
    a = a if isinstance(a, dict) else as_arrays(a)
    b = b if isinstance(b, dict) else as_arrays(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture
def data_root(tmp_path):
    write_data(tmp_path)
    return tmp_path


@pytest.fixture
def reference(data_root):
    """The single-process, on-demand tables of epochs 0..EPOCHS-1."""
    ds = build(data_root, shard_chip_work=False, prefetch_next_epoch=False)
    tables = [as_arrays(ds.chip_table(e, SEED)) for e in range(EPOCHS)]
    negs = [ds.negative_table(e, SEED) for e in range(EPOCHS)]
    assert all(t['is_negative'].any() for t in tables), 'negatives drawn'
    assert len({ds.epoch_stride(e, SEED) for e in range(EPOCHS)}) > 1
    return tables, negs


# ---- shard_bounds -----------------------------------------------------------
def test_shard_bounds_are_contiguous_balanced_and_complete():
    rng = np.random.default_rng(0)
    costs = rng.integers(1, 50, size=1000).astype(float)
    for shards in (1, 2, 3, 8):
        bounds = shard_bounds(costs, shards)
        assert bounds[0] == 0 and bounds[-1] == len(costs)
        assert (np.diff(bounds) >= 0).all()
        loads = [costs[lo:hi].sum() for lo, hi in zip(bounds, bounds[1:])]
        assert max(loads) - min(loads) <= 2 * costs.max()
    # one expensive item: the blocks around it stay balanced on the rest
    bounds = shard_bounds([1] * 10 + [100] + [1] * 10, 2)
    assert bounds.tolist() in ([0, 11, 21], [0, 10, 21])
    # more shards than items: empty blocks, still complete
    assert shard_bounds([1, 1], 4).tolist()[-1] == 2
    with pytest.raises(ValueError):
        shard_bounds([1, -1], 2)


def test_background_worker_runs_in_order_and_reports_errors():
    work = BackgroundChipWork()
    order = []
    first = work.submit(lambda: (time.sleep(0.05), order.append(1)))
    second = work.submit(order.append, 2)
    failed = work.submit(lambda: 1 / 0)
    second.result(timeout=10)
    first.result(timeout=10)
    assert order == [1, 2]
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=10)
    assert work._thread.daemon
    copy = pickle.loads(pickle.dumps(work))  # no thread travels
    assert copy._thread is None


# ---- background prefetch ----------------------------------------------------
def test_prefetched_tables_equal_the_synchronous_ones(data_root, reference):
    tables, negs = reference
    ds = build(data_root)
    sampler = SniperChipSampler(ds, seed=SEED)
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        chips = list(sampler)
        assert len(chips) == len(tables[epoch]['img_idx'])
        assert_same_table(ds.chip_table(epoch, SEED), tables[epoch])
        assert_same_table(ds.negative_table(epoch, SEED), negs[epoch])
        # the next epoch is on its way as soon as this one started
        assert any(k[0] == ds._epoch_key(epoch + 1, SEED)
                   for k in ds._futures)
    for epoch in range(1, EPOCHS):
        assert ds.chip_work_log[(epoch, SEED)]['how'] == 'background'
        assert sampler.chip_wait_s[epoch] >= 0
    # epoch 0 is computed when the dataset is built (seed None), and for
    # the sampler's seed at its first draw
    assert ds.chip_work_log[(0, SEED)]['how'] == 'on demand'


def test_the_epoch_waits_only_for_work_still_running(data_root, monkeypatch):
    ds = build(data_root)
    original = ds._epoch_parts
    release = []

    def slow(*args, **kwargs):
        while not release:
            time.sleep(0.01)
        return original(*args, **kwargs)

    monkeypatch.setattr(ds, '_epoch_parts', slow)
    assert ds.prefetch(1, SEED)
    assert not ds.prefetch(1, SEED), 'already on its way'
    release.append(True)
    table = ds.chip_table(1, SEED, collective=True)
    assert ds.chip_work_log[(1, SEED)]['how'] == 'background'
    fresh = build(data_root, prefetch_next_epoch=False)
    assert_same_table(table, fresh.chip_table(1, SEED))
    assert not ds.prefetch(1, SEED), 'cached'
    off = build(data_root, prefetch_next_epoch=False)
    assert not off.prefetch(1, SEED)


def test_fixed_stride_without_negatives_prefetches_nothing(data_root):
    ds = SniperChipDataset(
        dict(type='CocoDataset', data_root=str(data_root),
             ann_file='ann.json', data_prefix=dict(img='images/'),
             metainfo=dict(classes=('a', 'b')), pipeline=[]), SCALES,
        RANGES, chip_size=256)
    assert not ds.prefetch(1, SEED)
    assert not ds._futures


def test_dataset_with_work_in_flight_pickles(data_root):
    ds = build(data_root)
    ds.prefetch(2, SEED)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._futures == {}
    assert_same_table(copy.chip_table(0), ds.chip_table(0))


def test_pool_started_from_the_background_thread_uses_forkserver(
        data_root, reference, monkeypatch):
    tables, _ = reference
    contexts = []
    get_context = chip_work.multiprocessing.get_context

    def spy(method):
        contexts.append(method)
        return get_context(method)

    monkeypatch.setattr(chip_work.multiprocessing, 'get_context', spy)
    ds = build(data_root, num_proc=2)
    # built in the main thread, as before: generation and mining
    assert contexts == ['fork', 'fork']
    ds.prefetch(1, SEED)
    ds._futures[next(iter(ds._futures))].result(timeout=120)
    assert len(contexts) >= 4 and set(contexts[2:]) == {'forkserver'}
    assert_same_table(ds.chip_table(1, SEED, collective=True), tables[1])


# ---- two gloo ranks ---------------------------------------------------------
def _rank_worker(rank, init_file, root, out):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=2)
    from mmsniper.datasets import sniper_chip_dataset as scd
    sent = []
    gather = scd.all_gather_object

    def spy(payload):
        sent.append(payload)  # this rank's shard: (positives, negatives, s)
        return gather(payload)

    scd.all_gather_object = spy
    try:
        ds = build(root)
        sampler = SniperChipSampler(ds, seed=SEED)
        assert len(sent) == 1 and sent[0][1] is not None, 'one gather'
        tables, shares = [], []
        for epoch in range(EPOCHS):
            sampler.set_epoch(epoch)
            list(sampler)
            tables.append(as_arrays(ds.chip_table(epoch, SEED)))
            shares.append(ds._shard(collective=True)[2:])
        log = {k: dict(v) for k, v in ds.chip_work_log.items()}
        # the shards of epochs 0..EPOCHS-1 for the sampler's seed (the
        # first gather is the build's, seed None)
        shards = [(as_arrays(p), as_arrays(n)) for p, n, _ in sent[1:]]
        out.put((rank, tables, shares, log, shards))
    except BaseException as exc:  # fail the test now, not at its timeout
        out.put((rank, repr(exc), None, None, None))
        raise
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_share_the_work_and_gather_the_same_tables(
        tmp_path, data_root, reference):
    tables, negs = reference
    ranks = run_fork_ranks(_rank_worker,
                           (tmp_path / 'init', str(data_root)))
    results, sent = {}, {}
    for rank, (got, shares, log, shards) in ranks.items():
        assert shares is not None, f'rank {rank}: {got}'
        results[rank] = (got, shares, log)
        sent[rank] = shards
    (got0, shares0, log0), (got1, shares1, log1) = results[0], results[1]
    # each rank's image block: disjoint, together every image
    (lo0, hi0), (lo1, hi1) = shares0[0], shares1[0]
    assert (lo0, hi1) == (0, NUM_IMAGES) and hi0 == lo1
    assert 0 < hi0 < NUM_IMAGES, 'both ranks have work'
    for epoch in range(EPOCHS):
        assert_same_table(got0[epoch], tables[epoch])
        assert_same_table(got1[epoch], tables[epoch])
        for log, images in ((log0, hi0 - lo0), (log1, hi1 - lo1)):
            entry = log[(epoch, SEED)]
            assert entry['world_size'] == 2 and entry['images'] == images
            assert len(entry['rank_work_s']) == 2
        if epoch:
            assert log0[(epoch, SEED)]['how'] == 'background'

    # each rank computed only its images: its shard, as a set of chips, is
    # the single-process chips of those images (positive, and every mined
    # negative before the draw)
    def chip_set(arrays, lo=0, hi=NUM_IMAGES):
        return {(int(i), int(s), tuple(b), bool(n))
                for i, s, b, n in zip(arrays['img_idx'], arrays['scale_idx'],
                                      arrays['boxes'].tolist(),
                                      arrays['is_negative'])
                if lo <= i < hi}

    for epoch in range(EPOCHS):
        ref_pos = {c for c in chip_set(tables[epoch]) if not c[3]}
        ref_neg = chip_set(as_arrays(negs[epoch]))
        assert len(sent[0]) == len(sent[1]) == EPOCHS
        for rank, (lo, hi) in ((0, (lo0, hi0)), (1, (lo1, hi1))):
            pos, neg = sent[rank][epoch]
            assert chip_set(pos) == {c for c in ref_pos if lo <= c[0] < hi}
            assert chip_set(neg) == {c for c in ref_neg if lo <= c[0] < hi}
            assert set(pos['img_idx'].tolist()) <= set(range(lo, hi))
