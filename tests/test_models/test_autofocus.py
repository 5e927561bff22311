# Copyright (c) mmsniper contributors. All rights reserved.
"""FocusPixel head and the AutoFocus wrapper around mmdet detectors."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import load_state_dict
from mmengine.structures import InstanceData, PixelData

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmsniper.models import AutoFocusDetector, FocusPixelHead
from mmsniper.models.detectors import autofocus

IMG = 128


def _small(detector_cfg):
    cfg = detector_cfg
    cfg.backbone.update(depth=18, init_cfg=None)
    cfg.neck.update(in_channels=[64, 128, 256, 512], out_channels=32)
    if 'rpn_head' in cfg:
        cfg.rpn_head.update(in_channels=32, feat_channels=32)
        cfg.roi_head.bbox_roi_extractor.out_channels = 32
        cfg.roi_head.bbox_head.update(in_channels=32, fc_out_channels=32)
    else:
        cfg.bbox_head.update(in_channels=32, feat_channels=32)
    return cfg


def _detector_cfg(kind):
    base = dict(
        faster='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
        retina='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py')[kind]
    return _small(Config.fromstring(f"_base_ = '{base}'", '.py').model)


def _wrapper_cfg(kind):
    return dict(
        type='AutoFocusDetector',
        detector=_detector_cfg(kind),
        focus_head=dict(type='FocusPixelHead', in_channels=32,
                        feat_channels=16))


def _sample(focus=True):
    sample = DetDataSample(metainfo=dict(
        img_shape=(IMG, IMG), ori_shape=(IMG, IMG), pad_shape=(IMG, IMG),
        batch_input_shape=(IMG, IMG), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[20., 20., 44., 40.]]), labels=torch.tensor([1]))
    sample.ignored_instances = InstanceData(
        bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    if focus:
        labels = torch.zeros(1, IMG // 16, IMG // 16, dtype=torch.long)
        labels[0, 1:3, 1:3] = 1
        labels[0, 5:, 5:] = -1
        sample.gt_focus_map = PixelData(data=labels)
    return sample


class TestFocusPixelHead:

    def test_layers_and_level(self):
        head = FocusPixelHead(in_channels=8, feat_channels=4)
        convs = [m for m in head.layers if isinstance(m, torch.nn.Conv2d)]
        assert [(c.in_channels, c.out_channels, c.kernel_size[0])
                for c in convs] == [(8, 4, 3), (4, 4, 1), (4, 2, 1)]
        feats = [torch.zeros(1, 8, 32 // s, 32 // s) for s in (4, 8, 16)]
        assert head.select_level(feats, (32, 32)) is feats[2]
        with pytest.raises(ValueError, match='no neck level has stride 16'):
            head.select_level(feats[:2], (32, 32))

    def test_loss_is_mean_over_non_ignored_cells(self):
        head = FocusPixelHead(in_channels=4, feat_channels=4, loss_weight=2.)
        feat = torch.randn(1, 4, 4, 4)
        labels = torch.tensor([[1, 0, -1, -1], [0, 0, -1, -1],
                               [-1, -1, -1, -1], [-1, -1, -1, -1]])
        sample = DetDataSample()
        sample.gt_focus_map = PixelData(data=labels[None])
        loss = head.loss([feat], (64, 64), [sample])['loss_focus']
        logits = head(feat)[0]
        expected = 0.
        for (y, x), label in zip([(0, 0), (0, 1), (1, 0), (1, 1)],
                                 [1, 0, 0, 0]):
            expected -= logits[:, y, x].log_softmax(0)[label]
        assert torch.allclose(loss, 2. * expected / 4)

    def test_label_map_cut_or_padded_to_features(self):
        head = FocusPixelHead(in_channels=4, feat_channels=4)
        feat = torch.randn(1, 4, 3, 3)
        sample = DetDataSample()
        sample.gt_focus_map = PixelData(data=torch.ones(1, 2, 5).long())
        loss = head.loss([feat], (48, 48), [sample])['loss_focus']
        logits = head(feat)[0]
        expected = -logits[:, :2, :3].log_softmax(0)[1].mean()
        assert torch.allclose(loss, expected)
        # all ignored: zero, not NaN
        sample.gt_focus_map = PixelData(data=-torch.ones(1, 3, 3).long())
        assert head.loss([feat], (48, 48), [sample])['loss_focus'] == 0

    def test_missing_labels_named(self):
        head = FocusPixelHead(in_channels=4, feat_channels=4)
        with pytest.raises(KeyError, match='FocusPixelLabels'):
            head.loss([torch.zeros(1, 4, 2, 2)], (32, 32), [DetDataSample()])


@pytest.mark.parametrize('kind', ['faster', 'retina'])
def test_wrapper_train_step_and_predict(kind):
    torch.manual_seed(0)
    model = MODELS.build(_wrapper_cfg(kind))
    assert isinstance(model, AutoFocusDetector)
    calls = []
    model.detector.neck.register_forward_hook(
        lambda *args: calls.append(1))
    model.train()
    losses = model.loss(torch.rand(2, 3, IMG, IMG), [_sample(), _sample()])
    assert len(calls) == 1  # features computed once for both heads
    assert 'loss_focus' in losses
    det_keys = {'loss_cls', 'loss_bbox'}
    assert det_keys <= set(losses)
    total, _ = model.parse_losses(losses)
    assert math.isfinite(total.item())
    total.backward()
    assert model.focus_head.layers[0].weight.grad.abs().sum() > 0
    # the detector trains too (conv1 is frozen by the ResNet config)
    assert model.detector.backbone.layer4[0].conv1.weight.grad is not None

    model.eval()
    calls.clear()
    with torch.no_grad():
        results = model.predict(torch.rand(1, 3, IMG, IMG), [_sample(False)])
    assert len(calls) == 1
    fmap = results[0].pred_focus_map
    assert fmap.data.shape == (1, IMG // 16, IMG // 16)
    assert ((fmap.data >= 0) & (fmap.data <= 1)).all()
    assert 'pred_instances' in results[0]


def test_checkpoint_interchange(monkeypatch):
    torch.manual_seed(0)
    plain = MODELS.build(_detector_cfg('faster'))
    wrapper = MODELS.build(_wrapper_cfg('faster'))
    keys = set(wrapper.state_dict())
    assert set(plain.state_dict()) <= keys
    assert keys - set(plain.state_dict()) == {
        k for k in keys if k.startswith('focus_head.')} != set()

    # plain -> wrapper: detector loaded, head kept, a log line says so
    head_before = wrapper.focus_head.layers[0].weight.clone()
    messages = []
    monkeypatch.setattr(autofocus, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    load_state_dict(wrapper, plain.state_dict())
    for name, value in plain.state_dict().items():
        assert torch.equal(wrapper.state_dict()[name], value), name
    assert torch.equal(wrapper.focus_head.layers[0].weight, head_before)
    assert len(messages) == 1 and 'no focus head' in messages[0]

    # wrapper -> plain: every detector weight loaded, focus keys skipped
    other = MODELS.build(_detector_cfg('faster'))
    state = {k: v + 1 if v.is_floating_point() else v
             for k, v in wrapper.state_dict().items()}
    load_state_dict(other, state)
    for name, value in other.state_dict().items():
        assert torch.equal(value, state[name]), name
    # and back into a wrapper, head included
    again = MODELS.build(_wrapper_cfg('faster'))
    again.load_state_dict(state, strict=True)
    assert torch.equal(again.focus_head.layers[0].weight,
                       state['focus_head.layers.0.weight'])


@pytest.mark.parametrize('image_size, scale', [((266, 500), (480, 512)),
                                               ((421, 640), (800, 1280))])
def test_head_map_of_a_rounded_scaled_image_makes_focus_chips(
        image_size, scale):
    """Issue 19, item 1: the head's map of an image whose scaled side is a
    fraction of a pixel above a multiple of 16 (272.38 px, 1216.15 px) is
    accepted by generate_focus_chips (it raised 'does not cover')."""
    from mmsniper.chips import (compute_scale_factor, generate_focus_chips,
                                scaled_size)
    factor = compute_scale_factor(scale, image_size)
    seen_h, seen_w = scaled_size(image_size, factor)
    pad_h, pad_w = -(-seen_h // 32) * 32, -(-seen_w // 32) * 32
    head = FocusPixelHead(in_channels=4, feat_channels=4)
    sample = DetDataSample(metainfo=dict(img_shape=(seen_h, seen_w)))
    feats = [torch.zeros(1, 4, pad_h // 16, pad_w // 16)]
    fmap = head.predict(feats, (pad_h, pad_w), [sample])[0]
    assert (fmap.shape[0] * 16 < image_size[0] * factor
            or fmap.shape[1] * 16 < image_size[1] * factor)  # the case
    chips = generate_focus_chips(fmap.detach().numpy(), 0.0, 3, 4, image_size,
                                 scale=factor)
    assert len(chips) and chips[:, 2:].max() <= max(image_size)
