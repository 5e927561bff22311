import copy

import numpy as np
import pytest
from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import TRANSFORMS

from mmsniper.datasets.transforms import DropIgnoredInstances, SniperChipCrop

INSTANCES = [
    dict(bbox=[10, 10, 60, 60], bbox_label=0, ignore_flag=0),
    dict(bbox=[100, 100, 200, 200], bbox_label=1, ignore_flag=1),  # crowd
    dict(bbox=[210, 210, 260, 260], bbox_label=2, ignore_flag=0),
    dict(bbox=[300, 300, 350, 350], bbox_label=3, ignore_flag=0),
]


def _results(valid_gt=(0, 3), instances=INSTANCES):
    return dict(
        img=np.zeros((400, 400, 3), dtype=np.uint8),
        img_shape=(400, 400),
        ori_shape=(400, 400),
        img_path='data/crowd.jpg',
        instances=copy.deepcopy(instances),
        sniper_chip=dict(
            box=np.array([0, 0, 400, 400], dtype=np.float32),
            scale_factor=1.0,
            scale_idx=0,
            valid_range=(-1, -1),
            valid_gt=np.array(valid_gt, dtype=np.int64),
            chip_size=(512, 512),
            is_negative=False))


def _chip(results, drop):
    if drop:
        results = DropIgnoredInstances()(results)
    return SniperChipCrop()(LoadAnnotations()(results))


def test_registry_and_repr():
    t = TRANSFORMS.build(dict(type='DropIgnoredInstances'))
    assert isinstance(t, DropIgnoredInstances)
    assert repr(t) == 'DropIgnoredInstances()'


def test_crowd_ignored_by_default_dropped_with_the_transform():
    # default: the crowd box stays, ignored, with the other invalid GT
    out = _chip(_results(), drop=False)
    assert out['gt_bboxes_labels'].tolist() == [0, 1, 2, 3]
    assert out['gt_ignore_flags'].tolist() == [False, True, True, False]
    # reference: the crowd box is gone (background); the chip's valid GT
    # (instances 0 and 3) are still the valid ones
    out = _chip(_results(), drop=True)
    assert out['gt_bboxes_labels'].tolist() == [0, 2, 3]
    assert out['gt_ignore_flags'].tolist() == [False, True, False]
    assert out['gt_bboxes'].tensor.tolist() == [[10, 10, 60, 60],
                                                [210, 210, 260, 260],
                                                [300, 300, 350, 350]]


def test_renumbers_valid_gt_without_touching_the_input():
    results = _results(valid_gt=(2, 3, 0))
    chip = results['sniper_chip']
    out = DropIgnoredInstances()(results)
    assert out['sniper_chip']['valid_gt'].tolist() == [1, 2, 0]
    assert [i['bbox_label'] for i in out['instances']] == [0, 2, 3]
    assert chip['valid_gt'].tolist() == [2, 3, 0]  # a new dict
    assert out['sniper_chip']['box'] is chip['box']


def test_nothing_to_drop_and_no_chip():
    plain = [dict(inst, ignore_flag=0) for inst in INSTANCES]
    results = _results(instances=plain)
    before = copy.deepcopy(results)
    out = DropIgnoredInstances()(results)
    assert out['instances'] == before['instances']
    assert out['sniper_chip'] is results['sniper_chip']
    assert DropIgnoredInstances()(dict(instances=[])) == dict(instances=[])
    assert DropIgnoredInstances()(dict(img_path='x')) == dict(img_path='x')
    # test mode (no chip) and an instance without the flag
    results = dict(instances=[dict(bbox=[0, 0, 5, 5], bbox_label=0)] +
                   copy.deepcopy(INSTANCES[1:3]))
    out = DropIgnoredInstances()(results)
    assert [i['bbox_label'] for i in out['instances']] == [0, 2]
    assert 'sniper_chip' not in out


@pytest.mark.parametrize('valid_gt', [(1, ), (0, 4), (-1, )])
def test_valid_gt_naming_a_dropped_or_missing_instance(valid_gt):
    with pytest.raises(ValueError, match=r'data/crowd\.jpg.*valid_gt'):
        DropIgnoredInstances()(_results(valid_gt=valid_gt))
