"""Test doubles for SniperTTAModel: detectors that find exactly the objects
drawn in their input (no learning, no randomness)."""
import cv2
import numpy as np
import torch
from mmengine.model import BaseDataPreprocessor
from mmengine.structures import InstanceData
from torch import nn

from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.structures import DetDataSample

#: Channel-1 value of an object of class ``k``: 60 + 60 * k.
LABEL_STEP = 60


def draw_objects(size, boxes, labels) -> np.ndarray:
    """A black (H, W, 3) uint8 image with each box filled in (255, 60 +
    60 * label, 0); boxes are integer xyxy, pixel ``i`` covering
    ``[i, i + 1)``."""
    height, width = size
    img = np.zeros((height, width, 3), dtype=np.uint8)
    for (x1, y1, x2, y2), label in zip(np.asarray(boxes, int), labels):
        img[y1:y2, x1:x2] = (255, LABEL_STEP + LABEL_STEP * label, 0)
    return img


def random_objects(size, num, min_side, max_side, seed=0, gap=6):
    """Non-touching integer boxes (at least ``gap`` px apart) inside an
    image of ``size`` (h, w), with labels 0 or 1."""
    rng = np.random.default_rng(seed)
    height, width = size
    boxes = []
    for _ in range(num * 50):
        if len(boxes) == num:
            break
        w, h = rng.integers(min_side, max_side + 1, size=2)
        x1 = int(rng.integers(0, width - w + 1))
        y1 = int(rng.integers(0, height - h + 1))
        box = np.array([x1, y1, x1 + w, y1 + h])
        if all(
                box[0] >= b[2] + gap or b[0] >= box[2] + gap
                or box[1] >= b[3] + gap or b[1] >= box[3] + gap
                for b in boxes):
            boxes.append(box)
    boxes = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    return boxes, rng.integers(0, 2, size=len(boxes))


class DrawnObjectsDetector(nn.Module):
    """Finds the objects drawn by :func:`draw_objects` in its input.

    Each 8-connected region of channel 0 above 127 is one detection: its
    bounding box in input px (so an object cut by the input border is
    returned cut, as a real detector clips to its input), score 0.9, label
    read from channel 1. Inputs are BGR uint8 as packed; no normalisation.
    With ``with_masks``, each detection also has its region's pixels as
    its mask (input px), as Mask R-CNN's ``rescale=False`` output.
    """

    def __init__(self, with_masks: bool = False):
        super().__init__()
        self.data_preprocessor = DetDataPreprocessor(pad_size_divisor=1)
        self.calls = []
        self.with_masks = with_masks

    def test_step(self, data):  # pragma: no cover - BaseTTAModel requires it
        data = self.data_preprocessor(data, False)
        return self.predict(data['inputs'], data['data_samples'])

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        assert not rescale
        results = []
        for img, sample in zip(batch_inputs, batch_data_samples):
            height, width = sample.img_shape
            self.calls.append((height, width))
            planes = img[:, :height, :width].cpu().numpy()
            mask = (planes[0] > 127).astype(np.uint8)
            num, comps, stats, _ = cv2.connectedComponentsWithStats(
                mask, connectivity=8)
            boxes, labels = [], []
            for comp in range(1, num):
                x, y, w, h, _ = stats[comp]
                boxes.append([x, y, x + w, y + h])
                region = planes[1, y:y + h, x:x + w][mask[y:y + h,
                                                          x:x + w] > 0]
                labels.append(
                    int(round(float(np.median(region)) / LABEL_STEP)) - 1)
            out = DetDataSample(metainfo=sample.metainfo)
            out.pred_instances = InstanceData(
                bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                scores=torch.full((len(boxes), ), 0.9),
                labels=torch.tensor(labels, dtype=torch.long))
            if self.with_masks:  # each component's own pixels
                out.pred_instances.masks = torch.from_numpy(
                    comps[None] == np.arange(1, num)[:, None, None])
            results.append(out)
        return results


class CheapDetector(nn.Module):
    """Returns nothing, at no cost: for memory and accounting tests. Records
    the input shapes it was given."""

    def __init__(self):
        super().__init__()
        self.data_preprocessor = BaseDataPreprocessor()
        self.shapes = []

    def test_step(self, data):  # pragma: no cover
        return self.predict(data['inputs'], data['data_samples'])

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        results = []
        for img, sample in zip(batch_inputs, batch_data_samples):
            self.shapes.append(tuple(img.shape))
            assert tuple(img.shape[-2:]) == tuple(sample.img_shape)
            out = DetDataSample(metainfo=sample.metainfo)
            out.pred_instances = InstanceData(
                bboxes=torch.zeros((0, 4)),
                scores=torch.zeros(0),
                labels=torch.zeros(0, dtype=torch.long))
            results.append(out)
        return results
