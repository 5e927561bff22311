"""``init_sniper_detector`` and checkpoint files (issue 19, items 9 and 11):
a checkpoint is loaded weights-only and read once; one that is not
weights-only loadable (a payload) is refused unless
``trust_checkpoint=True``; a damaged one names the file."""
import functools
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import CheckpointLoader

from mmdet.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / ('configs/sniper/'
                 'faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py')
CLASSES = ('vehicle', 'roof', 'tank')
TTA = dict(scales=[1.0], valid_ranges=[(-1, -1)])
KEY = 'roi_head.bbox_head.fc_cls.weight'


class _Payload:
    """Unpickled fully, runs ``touch marker`` (and yields its status)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture(autouse=True)
def no_env_trust(monkeypatch):
    for var in ('MMSNIPER_TRUSTED_CHECKPOINT_DIRS',
                'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD',
                'TORCH_FORCE_WEIGHTS_ONLY_LOAD'):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope='module')
def weights():
    import mmsniper  # noqa: F401
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(CONFIG)).model)
    return OrderedDict(model.state_dict())


def _init(ckpt, **kwargs):
    from mmsniper.apis import init_sniper_detector
    return init_sniper_detector(
        str(CONFIG), str(ckpt), device='cpu', tta_model=TTA, **kwargs)


def test_payload_checkpoint_is_refused_unless_trusted(weights, tmp_path):
    """Before: the named checkpoint was trusted, so the payload ran after
    one warning line."""
    from mmsniper.utils import UntrustedCheckpointError
    marker = tmp_path / 'PAYLOAD_RAN'
    ckpt = tmp_path / 'downloaded.pth'
    torch.save(
        dict(state_dict=weights,
             meta=dict(dataset_meta=dict(classes=CLASSES)),
             payload=_Payload(marker)), ckpt)
    local_loader = CheckpointLoader._schemes['']
    with pytest.raises(UntrustedCheckpointError) as err:
        _init(ckpt)
    assert not marker.exists()
    msg = str(err.value)
    assert f'Refusing to load checkpoint {ckpt}:' in msg
    assert 'not weights-only loadable' in msg
    assert 'would run code from it' in msg
    assert 'pass trust_checkpoint=True' in msg
    assert '--trust-checkpoint' not in msg  # not a command line here
    assert CheckpointLoader._schemes[''] is local_loader  # scoped

    model = _init(ckpt, trust_checkpoint=True)
    assert marker.exists()  # the switch is what lets the file run code
    key = KEY
    assert torch.equal(model.module.state_dict()[key], weights[key])
    assert model.dataset_meta['classes'] == CLASSES


def test_mmengine_checkpoint_loads_without_trust_and_is_read_once(
        weights, tmp_path, monkeypatch):
    """A checkpoint as mmengine's runner saves it (message hub with
    HistoryBuffer, numpy info, optimizer state, dataset_meta) loads
    weights-only with no switch, and the file is read once (before: twice,
    init_detector's load and the match check)."""
    hub = MessageHub.get_instance('h3_init_checkpoint')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/lr', np.float64(0.02))
    hub.update_info('iter', 2)
    params = [torch.nn.Parameter(torch.ones(2))]
    optim = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    params[0].grad = torch.ones(2)
    optim.step()
    ckpt = tmp_path / 'iter_2.pth'
    torch.save(
        dict(meta=dict(epoch=0, iter=2, seed=0, cfg='x = 1\n',
                       mmengine_version='0.10.7',
                       dataset_meta=dict(classes=CLASSES,
                                         palette=[(1, 2, 3)] * 3)),
             state_dict=weights,
             message_hub=hub.state_dict(),
             optimizer=optim.state_dict()), ckpt)
    assert isinstance(hub.state_dict()['log_scalars']['train/loss'],
                      HistoryBuffer)
    reads = []
    real_load = torch.load

    @functools.wraps(real_load)  # keeps torch.load's signature
    def counting_load(f, *args, **kwargs):
        reads.append((str(f), kwargs.get('weights_only')))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, 'load', counting_load)
    model = _init(ckpt)
    assert reads == [(str(ckpt), True)]
    key = KEY
    assert torch.equal(model.module.state_dict()[key], weights[key])
    assert model.dataset_meta['classes'] == CLASSES


def test_truncated_checkpoint_names_the_file(weights, tmp_path):
    """Before: torch's raw ``PytorchStreamReader failed reading zip
    archive: failed finding central directory``, without the file."""
    from mmsniper.utils import CorruptCheckpointError
    good = tmp_path / 'good.pth'
    torch.save(dict(state_dict=weights), good)
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError,
                       match=rf'Cannot read checkpoint {cut}: it is '
                       'truncated or corrupt'):
        _init(cut)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(CorruptCheckpointError, match='empty'):
        _init(empty)


def test_image_demo_refuses_a_payload_naming_its_flag(weights, tmp_path,
                                                      capsys):
    """demo/image_demo.py (through tools/infer.py): the payload does not
    run, exit status 2, the message names the file and --trust-checkpoint
    (not the API's argument)."""
    import importlib.util

    import cv2
    spec = importlib.util.spec_from_file_location(
        'h3_image_demo', str(REPO / 'demo/image_demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    (tmp_path / 'images').mkdir()
    cv2.imwrite(str(tmp_path / 'images/a.jpg'),
                np.full((40, 50, 3), 128, np.uint8))
    marker = tmp_path / 'PAYLOAD_RAN'
    ckpt = tmp_path / 'downloaded.pth'
    torch.save(dict(state_dict=weights, payload=_Payload(marker)), ckpt)
    status = demo.main([
        str(tmp_path / 'images'),
        str(CONFIG),
        str(ckpt), '--out-dir',
        str(tmp_path / 'out'), '--no-vis'
    ])
    err = capsys.readouterr().err
    assert status == 2
    assert not marker.exists()
    assert f'Refusing to load checkpoint {ckpt}:' in err
    assert 'pass --trust-checkpoint' in err
    assert 'trust_checkpoint=True' not in err
