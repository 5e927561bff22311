# Copyright (c) mmsniper contributors. All rights reserved.
"""``enable_tta`` / ``sniper_tta_config``: the config of ``tools/test.py
--tta``, shared by the demo, the KIT AIS study and the GPU checks."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmsniper.apis import enable_tta, sniper_tta_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs', 'sniper',
                'faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py')
AUTOFOCUS = osp.join(
    ROOT, 'configs', 'sniper',
    'faster-rcnn_r18-slim_fpn_sniper-autofocus-demo_synthetic.py')


def _types(steps):
    return [str(s['type']).split('.')[-1] for s in steps]


def _hooks(cfg):
    return [h['type'] for h in cfg.get('custom_hooks', None) or []]


def test_sniper_config_wraps_the_model_and_leaves_the_input_alone():
    cfg = Config.fromfile(DEMO)
    before = cfg.pretty_text
    tta = sniper_tta_config(cfg, dict(batch_size=3), load_from='x.pth')
    assert cfg.pretty_text == before  # a copy
    assert tta.model.type == 'SniperTTAModel'
    assert tta.model.module == cfg.model
    assert tta.model.batch_size == 3
    assert list(tta.model.scales) == list(cfg.tta_model.scales)
    assert tta.test_dataloader.dataset.pipeline == cfg.tta_pipeline
    assert 'Resize' not in _types(tta.test_dataloader.dataset.pipeline)
    assert _hooks(tta).count('SniperTTAStatsHook') == 1
    assert tta.load_from == 'x.pth'
    assert tta.experiment_name.startswith('sniper_tta_')
    assert sniper_tta_config(cfg).load_from is None


def test_autofocus_overrides_reach_the_tta_model():
    cfg = Config.fromfile(AUTOFOCUS)
    off = sniper_tta_config(cfg, dict(focus=False))
    on = sniper_tta_config(cfg, dict(focus=True, vis_dir='v'))
    assert off.model.type == on.model.type == 'AutoFocusTTAModel'
    assert off.model.focus is False
    assert on.model.focus is True and on.model.vis_dir == 'v'
    assert _hooks(on).count('SniperTTAStatsHook') == 1


def test_missing_tta_pipeline_drops_the_resizing_steps():
    cfg = Config.fromfile(DEMO)
    cfg.pop('tta_pipeline')
    cfg.custom_hooks = []
    with pytest.warns(UserWarning, match='without its resizing steps'):
        enable_tta(cfg)
    test_steps = _types(Config.fromfile(DEMO).test_dataloader.dataset.pipeline)
    assert 'Resize' in test_steps
    assert _types(cfg.test_dataloader.dataset.pipeline) == [
        t for t in test_steps if t not in ('Resize', 'RandomFlip', 'Pad')
    ]
    assert _hooks(cfg) == ['SniperTTAStatsHook']


def test_without_tta_model_mmdets_flip_default():
    cfg = Config.fromfile(DEMO)
    cfg.pop('tta_model')
    cfg.pop('tta_pipeline')
    cfg.custom_hooks = []
    with pytest.warns(UserWarning, match='tta_model'):
        enable_tta(cfg)
    assert cfg.model.type == 'DetTTAModel'
    last = cfg.test_dataloader.dataset.pipeline[-1]
    assert last['type'] == 'TestTimeAug'
    assert [t['prob'] for t in last['transforms'][0]] == [1., 0.]
    assert _hooks(cfg) == []  # the stats hook is for SNIPER tests only
