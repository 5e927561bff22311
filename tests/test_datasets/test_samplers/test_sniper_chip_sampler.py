# Copyright (c) mmsniper contributors. All rights reserved.
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from sniper_test_utils import random_images, run_fork_ranks, write_coco

from mmsniper.datasets.samplers import sniper_chip_sampler
from mmsniper.datasets.samplers.sniper_chip_sampler import SniperChipSampler
from mmsniper.datasets.sniper_chip_dataset import SniperChipDataset

SCALES = (2.0, 1.0, (-1, 512))
RANGES = ((-1, 64), (32, 160), (120, -1))


@pytest.fixture
def dataset(tmp_path):
    write_coco(osp.join(tmp_path, 'ann.json'), random_images(9, seed=11))
    return SniperChipDataset(
        dict(type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
             data_prefix=dict(img=''), metainfo=dict(classes=('a', 'b')),
             pipeline=[]), SCALES, RANGES, chip_size=256)


def ranks(dataset, world_size, epoch=0, **kwargs):
    samplers = []
    for rank in range(world_size):
        sampler = SniperChipSampler(dataset, seed=3, **kwargs)
        sampler.rank, sampler.world_size = rank, world_size
        sampler.set_epoch(epoch)
        samplers.append(sampler)
    return samplers


def key(chip):
    return (chip.img_idx, chip.scale_idx, chip.box)


def test_two_ranks_see_every_chip_exactly_once(dataset):
    num = len(dataset)
    assert num % 2 == 1, 'use an odd count so that padding is exercised'
    seen = [list(s) for s in ranks(dataset, 2, round_up=False)]
    merged = [key(c) for part in seen for c in part]
    assert len(merged) == num and len(set(merged)) == num
    assert {key(dataset.chip_table(0).index(i))
            for i in range(num)} == set(merged)
    samplers = ranks(dataset, 2, round_up=False)
    assert [len(s) for s in samplers] == [len(p) for p in seen]


def table_keys(dataset, epoch=0, seed=None):
    table = dataset.chip_table(epoch, seed)
    return [key(table.index(i)) for i in range(len(table))]


def test_round_up_gives_equal_shards_covering_all(dataset):
    samplers = ranks(dataset, 2)
    seen = [list(s) for s in samplers]
    assert len(seen[0]) == len(seen[1]) == len(samplers[0])
    merged = [key(c) for part in seen for c in part]
    assert set(merged) == set(table_keys(dataset))
    assert len(merged) == len(dataset) + 1
    # the padding repeats the first chip of the permutation (rank 0's first)
    assert merged.count(key(seen[0][0])) == 2


def test_without_shuffle_ranks_take_the_table_in_order(dataset):
    samplers = ranks(dataset, 2, shuffle=False, round_up=False)
    keys = table_keys(dataset)
    for rank, sampler in enumerate(samplers):
        assert [key(c) for c in sampler] == keys[rank::2]
    # the order is the same in every epoch (no jitter, no shuffle)
    samplers[0].set_epoch(4)
    assert [key(c) for c in samplers[0]] == keys[0::2]


def test_rank_world_size_and_seed_come_from_mmengine(dataset, monkeypatch):
    """Through get_dist_info and sync_random_seed, as in a 2-process run."""
    seen = []
    for rank in range(2):
        monkeypatch.setattr(sniper_chip_sampler, 'get_dist_info',
                            lambda rank=rank: (rank, 2))
        monkeypatch.setattr(sniper_chip_sampler, 'sync_random_seed',
                            lambda: 77)
        sampler = SniperChipSampler(dataset, round_up=False)
        assert (sampler.rank, sampler.world_size, sampler.seed) == (rank, 2,
                                                                    77)
        sampler.set_epoch(2)
        seen.append([key(c) for c in sampler])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(table_keys(dataset, 2, 77))
    rng = np.random.default_rng(77 + 2)
    order = [table_keys(dataset, 2, 77)[i] for i in rng.permutation(
        len(dataset))]
    assert seen[0] == order[0::2] and seen[1] == order[1::2]


def _gloo_worker(rank, init_file, ann_dir, out):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=2)
    ds = SniperChipDataset(
        dict(type='CocoDataset', data_root=ann_dir, ann_file='ann.json',
             data_prefix=dict(img=''), metainfo=dict(classes=('a', 'b')),
             pipeline=[]), SCALES, RANGES, chip_size=256,
        stride_jitter=(16, 48))
    sampler = SniperChipSampler(ds, round_up=True)  # seed synced by rank 0
    sampler.set_epoch(1)
    out.put((rank, sampler.seed, [key(c) for c in sampler]))
    dist.destroy_process_group()


def test_two_gloo_processes_share_the_seed_and_split_the_chips(tmp_path):
    write_coco(osp.join(tmp_path, 'ann.json'), random_images(5, seed=14))
    results = run_fork_ranks(_gloo_worker, (tmp_path / 'init',
                                            str(tmp_path)))
    (seed0, keys0), (seed1, keys1) = results[0], results[1]
    assert seed0 == seed1
    local = SniperChipDataset(
        dict(type='CocoDataset', data_root=str(tmp_path),
             ann_file='ann.json', data_prefix=dict(img=''),
             metainfo=dict(classes=('a', 'b')), pipeline=[]), SCALES,
        RANGES, chip_size=256, stride_jitter=(16, 48))
    expected = table_keys(local, 1, seed0)
    assert len(keys0) == len(keys1) == -(-len(expected) // 2)
    assert set(keys0) | set(keys1) == set(expected)
    assert len(set(keys0) & set(keys1)) == len(keys0) * 2 - len(expected)


def test_follows_the_seed_the_runner_restores(dataset):
    """mmengine builds the sampler with ``seed=runner.seed`` (having called
    ``torch.manual_seed(runner.seed)``), then ``--resume`` re-seeds torch
    with the checkpoint's seed: the sampler takes that one up until its
    first iteration."""
    def order(sampler):
        return [key(c) for c in sampler]

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(1234)
        sampler = SniperChipSampler(dataset, seed=1234)
        sampler.set_epoch(1)
        torch.manual_seed(99)  # what Runner.resume does
        resumed = order(sampler)
        assert sampler.seed == 99
        fixed = SniperChipSampler(dataset, seed=99)
        fixed.set_epoch(1)
        assert resumed == order(fixed)
        other = SniperChipSampler(dataset, seed=1234)
        other.set_epoch(1)
        assert resumed != order(other)
        # once drawn, the seed stays
        torch.manual_seed(5)
        assert order(sampler) == resumed and sampler.seed == 99
        # a seed that is not the runner's is never replaced
        explicit = SniperChipSampler(dataset, seed=3)
        torch.manual_seed(7)
        assert explicit.seed == 3
        # setting the seed fixes it too
        torch.manual_seed(11)
        pinned = SniperChipSampler(dataset, seed=11)
        pinned.seed = 11
        torch.manual_seed(12)
        assert pinned.seed == 11
    finally:
        torch.random.set_rng_state(state)


def test_order_depends_only_on_seed_and_epoch(dataset):
    first = [key(c) for c in ranks(dataset, 1, epoch=2)[0]]
    again = [key(c) for c in ranks(dataset, 1, epoch=2)[0]]
    other = [key(c) for c in ranks(dataset, 1, epoch=3)[0]]
    assert first == again
    assert first != other and sorted(first) == sorted(other)


def test_yields_self_contained_picklable_chips(dataset):
    chip = next(iter(ranks(dataset, 1)[0]))
    restored = pickle.loads(pickle.dumps(chip))
    assert restored == chip
    info = dataset.get_data_info(restored)
    assert np.allclose(info['sniper_chip']['box'], chip.box, atol=1e-3)


def test_rejects_plain_datasets():
    with pytest.raises(TypeError, match='SniperChipDataset'):
        SniperChipSampler(list(range(4)), seed=0)


def test_dataloader_with_persistent_workers_follows_epochs(tmp_path):
    from torch.utils.data import DataLoader
    write_coco(osp.join(tmp_path, 'ann.json'),
               random_images(6, seed=12, min_size=1000, max_boxes=30))
    ds = SniperChipDataset(
        dict(type='CocoDataset', data_root=str(tmp_path), ann_file='ann.json',
             data_prefix=dict(img=''), metainfo=dict(classes=('a', 'b')),
             pipeline=[]), SCALES, RANGES, chip_size=256,
        stride_jitter=(8, 64))
    sampler = SniperChipSampler(ds, seed=5)
    loader = DataLoader(ds, batch_size=None, sampler=sampler, num_workers=1,
                        persistent_workers=True,
                        collate_fn=lambda x: x['sniper_chip']['box'])
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        got = sorted(tuple(np.round(box, 2)) for box in loader)
        table = ds.chip_table(epoch, seed=5)
        want = sorted(tuple(np.round(box, 2)) for box in table.boxes)
        assert got == want, f'epoch {epoch}: workers saw stale chips'
        epochs.append(got)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]
