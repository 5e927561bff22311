# Copyright (c) mmsniper contributors. All rights reserved.
"""The FocusPixel head of AutoFocus (SNIPER spec, section 7)."""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import PixelData
from torch import Tensor, nn

from mmdet.registry import MODELS
from mmdet.structures import SampleList

#: Label of cells left out of the loss (as in the FocusPixel label maps).
IGNORE_LABEL = -1


@MODELS.register_module()
class FocusPixelHead(BaseModule):
    """Predicts, per cell of the ``stride`` grid, whether the cell holds a
    small object that a finer scale should look at.

    As in the reference: 3x3 conv (``feat_channels``), ReLU, 1x1 conv
    (``feat_channels``), ReLU, 1x1 conv (2 classes); softmax cross-entropy
    per cell, label -1 ignored, mean over the other cells, times
    ``loss_weight``, logged as ``loss_focus``. It reads one level of the
    detector's neck: the level whose stride (input size / feature size)
    equals ``stride``.

    Args:
        in_channels (int): Channels of the neck level. Defaults to 256.
        feat_channels (int): Channels of the two hidden convs. Defaults to
            256.
        stride (int): Stride of the level it reads, and of the label grid.
            Defaults to 16.
        loss_weight (float): Weight of ``loss_focus``. Defaults to 1.0.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int = 256,
                 feat_channels: int = 256,
                 stride: int = 16,
                 loss_weight: float = 1.0,
                 init_cfg=dict(type='Normal', layer='Conv2d', std=0.01)):
        super().__init__(init_cfg=init_cfg)
        if stride < 1 or int(stride) != stride:
            raise ValueError(f'stride must be a positive integer, got '
                             f'{stride!r}')
        self.stride = int(stride)
        self.loss_weight = float(loss_weight)
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, feat_channels, 3, padding=1),
            nn.ReLU(inplace=True), nn.Conv2d(feat_channels, feat_channels, 1),
            nn.ReLU(inplace=True), nn.Conv2d(feat_channels, 2, 1))

    def select_level(self, feats: Sequence[Tensor],
                     input_shape: Tuple[int, int]) -> Tensor:
        """The level of ``feats`` whose stride is ``self.stride``."""
        if isinstance(feats, Tensor):
            feats = [feats]
        strides = []
        for feat in feats:
            stride = input_shape[0] / feat.shape[-2]
            strides.append(round(stride, 2))
            # a padded input can end a few px short of a whole cell
            if abs(stride - self.stride) < self.stride / 4:
                return feat
        raise ValueError(
            f'FocusPixelHead(stride={self.stride}): no neck level has stride '
            f'{self.stride} for an input of {tuple(input_shape)} (level '
            f'strides: {strides}); set focus_head.stride to one of them')

    def forward(self, feat: Tensor) -> Tensor:
        """Logits ``(N, 2, H, W)`` of one neck level."""
        return self.layers(feat)

    def loss(self, feats: Sequence[Tensor], input_shape: Tuple[int, int],
             batch_data_samples: SampleList) -> dict:
        """``loss_focus`` against each sample's ``gt_focus_map``.

        A label map and the feature map may differ in size (the batch is
        padded to its largest chip): labels are cut to the feature map, and
        feature cells past a label map are ignored.
        """
        logits = self(self.select_level(feats, input_shape))
        num, _, height, width = logits.shape
        targets = logits.new_full((num, height, width),
                                  IGNORE_LABEL,
                                  dtype=torch.long)
        for i, sample in enumerate(batch_data_samples):
            if 'gt_focus_map' not in sample:
                raise KeyError(
                    'FocusPixelHead needs gt_focus_map in every data sample: '
                    "put dict(type='FocusPixelLabels') after RandomFlip in "
                    'the training pipeline and pack with '
                    "dict(type='PackSniperDetInputs')")
            labels = sample.gt_focus_map.data.reshape(
                sample.gt_focus_map.data.shape[-2:]).long()
            rows, cols = min(height, labels.shape[0]), min(
                width, labels.shape[1])
            targets[i, :rows, :cols] = labels[:rows, :cols].to(
                targets.device)
        counted = (targets != IGNORE_LABEL).sum()
        loss = F.cross_entropy(
            logits.float(), targets, ignore_index=IGNORE_LABEL,
            reduction='sum') / counted.clamp(min=1)
        return dict(loss_focus=loss * self.loss_weight)

    def predict(self, feats: Sequence[Tensor], input_shape: Tuple[int, int],
                batch_data_samples: SampleList) -> List[Tensor]:
        """Foreground probability maps, one ``(H, W)`` tensor per sample,
        cut to ``ceil(img_shape / stride)`` cells; also set as each sample's
        ``pred_focus_map`` (:class:`PixelData`, metainfo ``stride``)."""
        probs = self(self.select_level(feats, input_shape)).softmax(1)[:, 1]
        maps = []
        for prob, sample in zip(probs, batch_data_samples):
            img_h, img_w = sample.metainfo.get('img_shape', input_shape)
            rows = min(prob.shape[0], -(-int(img_h) // self.stride))
            cols = min(prob.shape[1], -(-int(img_w) // self.stride))
            fmap = prob[:rows, :cols]
            sample.pred_focus_map = PixelData(
                data=fmap[None], metainfo=dict(stride=self.stride))
            maps.append(fmap)
        return maps
