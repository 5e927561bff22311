"""tools/model_converters/torchvision_mobilenetv2_to_mmdet.py: torchvision's
MobileNetV2 weights into mmdet's ``MobileNetV2`` backbone.

The reference is a small pure-torch MobileNetV2 in torchvision's module
layout (torchvision is not a dependency), written from torchvision's
``mobilenet_v2`` definition, not from mmdet's; it loads a torchvision state
dict with ``strict=True``. Each check runs on a random-weight torchvision
state dict (always) and on the ImageNet file in ``../shared/weights``
(skipped when it is absent).
"""
import contextlib
import functools
import importlib.util
import io
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from conftest import SHARED, shared_path
from mmengine.runner.checkpoint import load_checkpoint

from mmdet.models.backbones import MobileNetV2
from mmdet.registry import MODELS
import tiny_coco as tc

TOOL = tc.TOOLS / 'model_converters' / 'torchvision_mobilenetv2_to_mmdet.py'
WEIGHTS = ('weights', 'mobilenet_v2-b0353104.pth')
# torchvision's inverted_residual_setting: t (expansion), c, n, s
TV_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
              [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
# mmdet out_index -> (torchvision features index whose output it is,
# channels, stride)
OUT_INDEX_TO_FEATURES = {
    0: (1, 16, 2),
    1: (3, 24, 4),
    2: (6, 32, 8),
    3: (10, 64, 16),
    4: (13, 96, 16),
    5: (16, 160, 32),
    6: (17, 320, 32),
    7: (18, 1280, 32)
}


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    """Tiny convolutions: one thread is faster, and on a busy machine two
    threads' hand-offs made a 0.02 s forward take 3 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load_tool():
    spec = importlib.util.spec_from_file_location('mmsniper_mnv2_converter',
                                                  TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def _conv_bn_relu(cin, cout, kernel, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(
            cin,
            cout,
            kernel,
            stride, (kernel - 1) // 2,
            groups=groups,
            bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class TvInvertedResidual(nn.Module):

    def __init__(self, cin, cout, stride, expand_ratio):
        super().__init__()
        hidden = cin * expand_ratio
        layers = [] if expand_ratio == 1 else [_conv_bn_relu(cin, hidden, 1)]
        layers += [
            _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout)
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TvMobileNetV2(nn.Module):
    """torchvision.models.mobilenet_v2(width_mult=1.0), same key names."""

    def __init__(self):
        super().__init__()
        features = [_conv_bn_relu(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in TV_SETTING:
            for i in range(n):
                features.append(TvInvertedResidual(cin, c, s if i == 0 else 1,
                                                   t))
                cin = c
        features.append(_conv_bn_relu(cin, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def feature_maps(self, x):
        """Output of every ``features[i]``, by i."""
        outs = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            outs[i] = x
        return outs


def _random_tv_state_dict():
    """A torchvision-layout state dict with random weights and BN stats
    (a fresh copy of one cached draw)."""
    return {k: v.clone() for k, v in _random_tv_state().items()}


@functools.lru_cache(maxsize=None)
def _random_tv_state():
    gen = torch.Generator().manual_seed(0)
    model = TvMobileNetV2()
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(7)
        elif key.endswith('running_var'):
            state[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=gen) * 0.1
    return state


@pytest.fixture(scope='module', params=['random', 'imagenet'])
def converted(request, tmp_path_factory):
    """(source path, torchvision state dict, output path, converter stdout),
    converted through the command line's ``main`` (in-process: fast)."""
    tmp = tmp_path_factory.mktemp(f'mnv2_{request.param}')
    if request.param == 'random':
        src = tmp / 'tv_random.pth'
        torch.save(_random_tv_state_dict(), src)
    else:
        src = shared_path(*WEIGHTS)
    out = tmp / 'sub' / 'mobilenet_v2_mmdet.pth'
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert tool.main([str(src), str(out)]) == 0
    source = torch.load(src, map_location='cpu', weights_only=True)
    return src, source, out, stdout.getvalue()


def test_summary_and_meta(converted):
    src, source, out, stdout = converted
    assert 'converted 312 of 314 tensors: 156 parameters' in stdout
    assert ('dropped 2 ImageNet classifier key(s), not part of the backbone: '
            'classifier.1.weight (1000, 1280), classifier.1.bias (1000,)'
            in stdout)
    meta = torch.load(out, weights_only=True)['meta']
    assert meta['source'] == str(src)
    assert meta['source_sha256'] == tool.sha256sum(src)
    assert meta['dropped_keys'] == {
        'classifier.1.weight': [1000, 1280],
        'classifier.1.bias': [1000]
    }
    if str(src).startswith(SHARED):  # torchvision names files by sha256
        assert meta['source_sha256'].startswith('b0353104')


def test_every_tensor_loaded_with_source_values(converted):
    _, source, out, _ = converted
    model = MobileNetV2()
    # strict: raises on any missing or unexpected key or shape mismatch
    load_checkpoint(model, str(out), map_location='cpu', strict=True)
    loaded = model.state_dict()
    assert len(loaded) == 312
    # Pair independently of the converter's mapping: both layouts list
    # conv/BN tensors in the same network order.
    backbone = [(k, v) for k, v in source.items()
                if not k.startswith('classifier.')]
    assert len(backbone) == len(loaded)
    for (tv_key, tv_val), (mm_key, mm_val) in zip(backbone, loaded.items()):
        assert tv_key.rsplit('.', 1)[1] == mm_key.rsplit('.', 1)[1]
        assert torch.equal(tv_val, mm_val), (tv_key, mm_key)


def test_features_match_torchvision_layout(converted):
    _, source, out, _ = converted
    reference = TvMobileNetV2().eval()
    reference.load_state_dict(source, strict=True)
    model = MobileNetV2(out_indices=tuple(range(8)))
    load_checkpoint(model, str(out), map_location='cpu', strict=True)
    model.eval()  # mmdet's MobileNetV2.train() returns None: no chaining
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference.feature_maps(x)
        outs = model(x)
    assert len(outs) == 8
    for out_index, (feat_idx, channels, stride) in \
            OUT_INDEX_TO_FEATURES.items():
        got = outs[out_index]
        assert got.shape == (2, channels, 64 // stride, 96 // stride)
        assert got.abs().max() > 0
        torch.testing.assert_close(got, expected[feat_idx])


def test_config_pretrained_init(converted):
    _, source, out, _ = converted
    backbone = MODELS.build(
        dict(
            type='MobileNetV2',
            out_indices=(1, 2, 4, 7),
            init_cfg=dict(type='Pretrained', checkpoint=str(out))))
    backbone.init_weights()
    # depthwise conv of layer5's last block = torchvision features.13
    torch.testing.assert_close(
        backbone.layer5[2].depthwise_conv.conv.weight.detach(),
        source['features.13.conv.1.0.weight'],
        rtol=0,
        atol=0)
    # every tensor came from the file (Pretrained loads with strict=False)
    expected = torch.load(out, weights_only=True)['state_dict']
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, expected[key]), key


@pytest.mark.parametrize(
    'corrupt, message',
    [(lambda sd: sd.pop('features.7.conv.1.1.running_var'),
      r"missing, first 'features\.7\.conv\.1\.1\.running_var' "
      r"\(for 'layer4\.0\.depthwise_conv\.bn\.running_var'\)"),
     (lambda sd: sd.__setitem__('features.13.conv.2.weight',
                                torch.zeros(96, 576, 3, 3)),
      r"key 'features\.13\.conv\.2\.weight' has shape \(96, 576, 3, 3\), "
      r"mmdet's 'layer5\.2\.linear_conv\.conv\.weight' needs "
      r'\(96, 576, 1, 1\)'),
     (lambda sd: sd.__setitem__('features.19.0.weight', torch.zeros(1)),
      r"key 'features\.19\.0\.weight' has no counterpart"),
     (lambda sd: sd.__setitem__('features.2.conv.4.weight', torch.zeros(1)),
      r"key 'features\.2\.conv\.4\.weight' has no counterpart"),
     (lambda sd: sd.__setitem__('features.0.1.extra', torch.zeros(1)),
      r"key 'features\.0\.1\.extra' -> 'conv1\.bn\.extra' is not in"),
     (lambda sd: sd.__setitem__('meta', {'epoch': 1}),
      r"key 'meta' holds a dict, not a tensor")],
    ids=['missing', 'shape', 'extra_block', 'extra_module', 'extra_tensor',
         'not_tensor'])
def test_corrupt_input_names_file_and_key(tmp_path, corrupt, message):
    state = _random_tv_state_dict()
    corrupt(state)
    src = tmp_path / 'bad.pth'
    torch.save(state, src)
    out = tmp_path / 'out.pth'
    with pytest.raises(ValueError, match=message) as info:
        tool.convert(str(src), str(out))
    assert str(info.value).startswith(f'{src}: ')
    assert not out.exists()


def test_command_line_error_exits_with_message(tmp_path):
    state = _random_tv_state_dict()
    del state['features.18.1.bias']
    src = tmp_path / 'bad.pth'
    torch.save(state, src)
    out = tmp_path / 'out.pth'
    with pytest.raises(SystemExit) as info:
        tool.main([str(src), str(out)])
    assert info.value.code == (
        f'torchvision_mobilenetv2_to_mmdet.py: error: {src}: 1 backbone '
        "key(s) missing, first 'features.18.1.bias' (for 'conv2.bn.bias')")
    assert not out.exists()


def test_refuses_pickled_objects(tmp_path):
    src = tmp_path / 'model.pth'
    torch.save(TvMobileNetV2(), src)  # a whole module, not weights
    with pytest.raises(ValueError, match=f'{src}: not a weights-only') as e:
        tool.convert(str(src))
    assert '\n' not in str(e.value) and 'TvMobileNetV2' in str(e.value)


def _damaged_files(tmp_path):
    src = tmp_path / 'tv.pth'
    torch.save(_random_tv_state_dict(), src)
    data = src.read_bytes()
    files = {
        'empty.pth': (b'', 'empty file (0 bytes)'),
        'truncated.pth': (data[:len(data) // 2], 'truncated, damaged'),
        'head.pth': (data[:100], 'truncated, damaged'),
        'text.pth': (b'not a checkpoint\n' * 8, 'truncated, damaged'),
    }
    for name, (content, _) in files.items():
        (tmp_path / name).write_bytes(content)
    return {str(tmp_path / n): why for n, (_, why) in files.items()}


def test_damaged_input_names_the_file(tmp_path):
    """Issue 19 item 11: a truncated or empty IN gave torch's raw
    ``RuntimeError: PytorchStreamReader failed ...`` / ``EOFError``."""
    out = tmp_path / 'out.pth'
    for src, why in _damaged_files(tmp_path).items():
        with pytest.raises(ValueError) as info:
            tool.convert(src, str(out))
        assert str(info.value).startswith(f'{src}: ') and why in str(
            info.value), info.value
        with pytest.raises(SystemExit) as info:
            tool.main([src, str(out)])
        msg = info.value.code
        assert msg.startswith(f'torchvision_mobilenetv2_to_mmdet.py: error: '
                              f'{src}: ') and '\n' not in msg, msg
        assert not out.exists()


def test_damaged_input_one_error_line_exit_1(tmp_path):
    src = next(s for s in _damaged_files(tmp_path) if 'truncated' in s)
    proc = subprocess.run([sys.executable, str(TOOL), src,
                           str(tmp_path / 'out.pth')],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f'torchvision_mobilenetv2_to_mmdet.py: error: {src}: cannot read '
        'it as a torch file'), proc.stderr
    assert 'PytorchStreamReader' in lines[0]


def test_script_runs_standalone(tmp_path):
    """As users run it; a list payload fails before mmdet is imported."""
    src = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], src)
    proc = subprocess.run([sys.executable, str(TOOL),
                           str(src), str(tmp_path / 'out.pth')],
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f'torchvision_mobilenetv2_to_mmdet.py: error: {src}: expected a '
        'state dict (a dict of tensors), got list')


def test_out_through_a_symlinked_folder_is_still_in(tmp_path, capsys):
    """Issue 19, item 10: abspath let OUT overwrite IN through a link."""
    src = tmp_path / 'real' / 'tv.pth'
    src.parent.mkdir()
    torch.save(_random_tv_state_dict(), src)
    before = src.read_bytes()
    (tmp_path / 'link').symlink_to(tmp_path / 'real')
    with pytest.raises(SystemExit) as info:
        tool.main([str(src), str(tmp_path / 'link' / 'tv.pth')])
    assert info.value.code == 2
    assert 'OUT must differ from IN' in capsys.readouterr().err
    assert src.read_bytes() == before
