# Copyright (c) mmsniper contributors. All rights reserved.
"""Convert torchvision's ImageNet MobileNetV2 weights for mmdet's
``MobileNetV2`` backbone (``widen_factor=1.0``).

Usage::

    python tools/model_converters/torchvision_mobilenetv2_to_mmdet.py \\
        IN.pth OUT.pth

IN is a torchvision ``mobilenet_v2`` state dict (e.g.
``mobilenet_v2-b0353104.pth``), read with ``torch.load(weights_only=True)``.
Keys are renamed: ``features.0`` -> ``conv1``, ``features.1`` ..
``features.17`` -> the blocks of ``layer1`` .. ``layer7`` in the order of
mmdet's ``MobileNetV2.arch_settings``, ``features.18`` -> ``conv2``; the
ImageNet classifier (``classifier.*``) is dropped and the summary says so.
Any other key, a missing backbone key, a non-tensor value or a shape that
differs from mmdet's backbone stops the conversion with an error naming IN
and the key; so does an empty, truncated or damaged IN (one error line,
exit status 1). OUT holds ``{'state_dict': ..., 'meta': {...}}`` (source path,
its sha256, dropped keys), loadable weights-only, for::

    backbone=dict(type='MobileNetV2', out_indices=(1, 2, 4, 7),
                  init_cfg=dict(type='Pretrained', checkpoint='OUT.pth'))

mmdet out_indices -> torchvision ``features`` index (channels, stride):
0 -> 1 (16, 2), 1 -> 3 (24, 4), 2 -> 6 (32, 8), 3 -> 10 (64, 16),
4 -> 13 (96, 16), 5 -> 16 (160, 32), 6 -> 17 (320, 32), 7 -> 18 (1280, 32).
The weights expect torchvision's input: RGB normalised with ImageNet's mean
and std, as the ``data_preprocessor`` of mmdet's ``faster-rcnn_r50_fpn.py``
base (``bgr_to_rgb=True``).
"""
import argparse
import hashlib
import os
import os.path as osp
import pickle
import re
import sys

import torch

# torchvision's InvertedResidual.conv, by whether the block expands:
# (torchvision sub-module, mmdet sub-module) pairs.
_EXPAND_BLOCK = (('0.0', 'expand_conv.conv'), ('0.1', 'expand_conv.bn'),
                 ('1.0', 'depthwise_conv.conv'), ('1.1', 'depthwise_conv.bn'),
                 ('2', 'linear_conv.conv'), ('3', 'linear_conv.bn'))
_PLAIN_BLOCK = (('0.0', 'depthwise_conv.conv'), ('0.1', 'depthwise_conv.bn'),
                ('1', 'linear_conv.conv'), ('2', 'linear_conv.bn'))
DROPPED_PREFIX = 'classifier.'
BN_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


def module_map(arch_settings):
    """torchvision module prefix -> mmdet module prefix, one entry per conv
    and per BN, for mmdet's ``MobileNetV2.arch_settings``."""
    mapping = {'features.0.0': 'conv1.conv', 'features.0.1': 'conv1.bn'}
    idx = 1
    for layer, (expand_ratio, _, num_blocks, _) in enumerate(arch_settings):
        pairs = _EXPAND_BLOCK if expand_ratio != 1 else _PLAIN_BLOCK
        for block in range(num_blocks):
            for tv, mm in pairs:
                mapping[f'features.{idx}.conv.{tv}'] = \
                    f'layer{layer + 1}.{block}.{mm}'
            idx += 1
    mapping[f'features.{idx}.0'] = 'conv2.conv'
    mapping[f'features.{idx}.1'] = 'conv2.bn'
    return mapping


def sha256sum(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _first_sentence(exc):
    """``Type: first sentence`` of an exception (or a str), on one line."""
    if isinstance(exc, str):
        return exc
    text = ' '.join(str(exc).split())
    cut = text.find('. ')
    text = text[:cut] if cut > 0 else text.rstrip('.')
    return f'{type(exc).__name__}: {text}' if text else type(exc).__name__


def _load_state(src):
    """``torch.load(src, weights_only=True)``; an empty, truncated or
    damaged file raises ``ValueError`` naming it (torch's own errors, e.g.
    ``EOFError`` or ``PytorchStreamReader failed``, do not)."""
    size = os.path.getsize(src)  # OSError naming src if it is missing
    if size == 0:
        raise ValueError(f'{src}: empty file (0 bytes), not a state dict')
    try:
        return torch.load(src, map_location='cpu', weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as exc:
        weights_only = 'weights_only' in str(exc) or 'Weights only' in str(
            exc)
        # an opcode the weights-only unpickler does not know: not a pickle
        not_a_pickle = re.search(r'Unsupported operand \d+', str(exc))
        if weights_only and not not_a_pickle:
            found = re.search(r'Unsupported global: GLOBAL (\S+)', str(exc))
            what = (f'it holds {found.group(1)}' if found else
                    _first_sentence(exc))
            raise ValueError(f'{src}: not a weights-only loadable state dict '
                             f'({what}); loading it would run code from '
                             'the file') from None
        reason = not_a_pickle.group(0) if not_a_pickle else exc
    except Exception as exc:  # EOFError, RuntimeError, KeyError, ...
        reason = exc
    raise ValueError(
        f'{src}: cannot read it as a torch file ({size} bytes): truncated, '
        f'damaged or not a checkpoint; download or save it again (torch: '
        f'{_first_sentence(reason)})') from None


def convert(src, dst=None):
    """Convert the torchvision state dict in ``src``; write ``dst`` if given.

    Returns the ``{'state_dict', 'meta'}`` dict (``meta['dropped_keys']``:
    dropped classifier key -> shape). Raises ``ValueError`` naming
    ``src`` and the key when anything does not map.
    """
    source = _load_state(src)
    if not isinstance(source, dict):
        raise ValueError(f'{src}: expected a state dict (a dict of tensors), '
                         f'got {type(source).__name__}')
    from mmdet.models.backbones import MobileNetV2
    target = MobileNetV2(widen_factor=1.0).state_dict()
    mapping = module_map(MobileNetV2.arch_settings)
    state_dict, dropped = {}, {}
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f'{src}: key {key!r} holds a '
                             f'{type(value).__name__}, not a tensor: not a '
                             'plain torchvision state dict')
        if key.startswith(DROPPED_PREFIX):
            dropped[key] = list(value.shape)
            continue
        module, _, name = key.rpartition('.')
        if module not in mapping:
            raise ValueError(f'{src}: key {key!r} has no counterpart in '
                             "mmdet's MobileNetV2 (widen_factor=1.0)")
        new_key = f'{mapping[module]}.{name}'
        if new_key not in target:
            raise ValueError(f'{src}: key {key!r} -> {new_key!r} is not in '
                             "mmdet's MobileNetV2 (widen_factor=1.0)")
        if value.shape != target[new_key].shape:
            raise ValueError(
                f'{src}: key {key!r} has shape {tuple(value.shape)}, '
                f"mmdet's {new_key!r} needs {tuple(target[new_key].shape)} "
                '(only widen_factor=1.0 is supported)')
        state_dict[new_key] = value
    missing = [k for k in target if k not in state_dict]
    if missing:
        inverse = {mm: tv for tv, mm in mapping.items()}
        names = [
            inverse[k.rpartition('.')[0]] + '.' + k.rpartition('.')[2]
            for k in missing
        ]
        raise ValueError(f'{src}: {len(missing)} backbone key(s) missing, '
                         f'first {names[0]!r} (for {missing[0]!r})')
    # mmdet's module order, so the file reads like mmdet's own checkpoints
    state_dict = {k: state_dict[k] for k in target}
    checkpoint = dict(
        state_dict=state_dict,
        meta=dict(
            source=osp.abspath(src),
            source_sha256=sha256sum(src),
            converter='tools/model_converters/'
            'torchvision_mobilenetv2_to_mmdet.py',
            backbone='mmdet MobileNetV2(widen_factor=1.0)',
            dropped_keys=dropped))
    if dst is not None:
        os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
        torch.save(checkpoint, dst)
    return checkpoint


def summary(checkpoint):
    """Two lines: what was converted, what was dropped."""
    state_dict = checkpoint['state_dict']
    dropped = checkpoint['meta']['dropped_keys']
    params = [k for k in state_dict if k.rpartition('.')[2] not in BN_BUFFERS]
    n_param = len(params)
    n_values = sum(state_dict[k].numel() for k in params)
    lines = [
        f'converted {len(state_dict)} of {len(state_dict) + len(dropped)} '
        f'tensors: {n_param} '
        f'parameters ({n_values:,} values) and '
        f'{len(state_dict) - n_param} BN buffers',
        f'dropped {len(dropped)} ImageNet classifier key(s), not part of the '
        'backbone: ' + ', '.join(
            f'{k} {tuple(shape)}' for k, shape in dropped.items())
    ]
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert torchvision MobileNetV2 weights for mmdet's "
        'MobileNetV2 backbone')
    parser.add_argument('src', help='torchvision mobilenet_v2 state dict')
    parser.add_argument('dst', help='output checkpoint for mmdet')
    args = parser.parse_args(argv)
    # real paths: OUT reached through a symlinked folder is still IN
    if osp.realpath(args.src) == osp.realpath(args.dst):
        parser.error('OUT must differ from IN')
    try:
        checkpoint = convert(args.src, args.dst)
    except (ValueError, OSError) as exc:
        sys.exit(f'torchvision_mobilenetv2_to_mmdet.py: error: {exc}')
    print(summary(checkpoint))
    print(f'wrote {args.dst} (source sha256 '
          f"{checkpoint['meta']['source_sha256']})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
