# Copyright (c) mmsniper contributors. All rights reserved.
import os.path as osp
import pickle

import numpy as np
import pytest
from sniper_test_utils import random_images, write_coco

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


def test_round_up_gives_equal_shards_covering_all(dataset):
    samplers = ranks(dataset, 2)
    seen = [list(s) for s in samplers]
    assert len(seen[0]) == len(seen[1]) == len(samplers[0])
    merged = [key(c) for part in seen for c in part]
    assert len(set(merged)) == len(dataset)
    assert len(merged) - len(dataset) == 1


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
