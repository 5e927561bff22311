"""Helpers of the detector-family matrix (tests/test_models/
test_ignore_families.py): one mmdet model-zoo config per family, converted
with :func:`mmsniper.models.sniperize_model_cfg`, and a spy on the
classification-type losses.
"""
import contextlib
from collections import defaultdict

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmsniper.models import sniperize_model_cfg

#: family -> mmdet 3.3.0 config (``mmdet::``)
FAMILIES = {
    'faster-rcnn': 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'cascade-rcnn': 'cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
    'mask-rcnn': 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'cascade-mask-rcnn': 'cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py',
    'htc': 'htc/htc-without-semantic_r50_fpn_1x_coco.py',
    'rpn': 'rpn/rpn_r50_fpn_1x_coco.py',
    'retinanet': 'retinanet/retinanet_r50_fpn_1x_coco.py',
    'atss': 'atss/atss_r50_fpn_1x_coco.py',
    'gfl': 'gfl/gfl_r50_fpn_1x_coco.py',
    'tood': 'tood/tood_r50_fpn_1x_coco.py',
    'vfnet': 'vfnet/vfnet_r50_fpn_1x_coco.py',
    'paa': 'paa/paa_r50_fpn_1x_coco.py',
    'ddod': 'ddod/ddod_r50_fpn_1x_coco.py',
    'fcos': 'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    'centernet': 'centernet/centernet-update_r50-caffe_fpn_ms-1x_coco.py',
    'rtmdet': 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
    'yolox': 'yolox/yolox_tiny_8xb8-300e_coco.py',
    'detr': 'detr/detr_r50_8xb2-150e_coco.py',
    'conditional-detr':
    'conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    'dab-detr': 'dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    'deformable-detr':
    'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    'dino': 'dino/dino-4scale_r50_8xb2-12e_coco.py',
    'sparse-rcnn': 'sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py',
}
#: families whose heads have masks
MASK_FAMILIES = ('mask-rcnn', 'cascade-mask-rcnn', 'htc')
#: families whose queries are matched one to one (no spatial prior): the
#: ignored box is put where the model predicts a box, so that some query
#: lies on it
QUERY_FAMILIES = ('detr', 'conditional-detr', 'dab-detr', 'deformable-detr',
                  'dino', 'sparse-rcnn')
#: families whose priors are points: a negative prior is ignored when it
#: lies inside the ignored box
POINT_FAMILIES = ('fcos', 'centernet', 'rtmdet', 'yolox')
#: image side per family (DDOD's deformable convolutions need >= 3 x 3
#: cells on the coarsest level)
SIZES = {'ddod': 512}

SIZE = 256


def size_of(family: str) -> int:
    return SIZES.get(family, SIZE)


#: one valid object; one ignored object far from it, large enough to cover
#: many priors at every FPN level
VALID = [[20., 24., 84., 92.]]
IGNORED = [[120., 110., 250., 250.]]


def mmdet_config_path(rel: str) -> str:
    import os.path as osp

    from mmengine.utils import get_installed_path
    return osp.join(get_installed_path('mmdet'), '.mim', 'configs', rel)


def load_family_cfg(family: str) -> Config:
    return Config.fromfile(mmdet_config_path(FAMILIES[family]))


def model_cfg(family: str, convert: bool = True) -> dict:
    cfg = load_family_cfg(family)
    model = cfg.model
    if convert:
        model, _ = sniperize_model_cfg(model)
    # no pretrained weights: only the heads' own initialisation
    model.backbone.init_cfg = None
    return model


def build(family: str, convert: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg(family, convert))
    model.init_weights()  # the heads' own init (e.g. Sparse R-CNN's boxes)
    model.train()
    return model


def sample(family: str, ignored=None) -> DetDataSample:
    """One chip with one valid GT and the ``ignored`` boxes."""
    size = size_of(family)
    ds = DetDataSample()
    ds.set_metainfo(
        dict(img_shape=(size, size), ori_shape=(size, size),
             pad_shape=(size, size), batch_input_shape=(size, size),
             scale_factor=(1., 1.), img_id=0))
    gt = InstanceData(bboxes=torch.tensor(VALID),
                      labels=torch.tensor([1]))
    ign_boxes = torch.tensor(ignored if ignored is not None else
                             []).reshape(-1, 4).float()
    ign = InstanceData(bboxes=ign_boxes,
                       labels=torch.full((len(ign_boxes), ), 2))
    if family in MASK_FAMILIES:
        for inst in (gt, ign):
            masks = np.zeros((len(inst), size, size), np.uint8)
            for i, (x1, y1, x2, y2) in enumerate(inst.bboxes.int().tolist()):
                masks[i, y1:y2, x1:x2] = 1
            inst.masks = BitmapMasks(masks, size, size)
    ds.gt_instances = gt
    ds.ignored_instances = ign
    return ds


def inputs(family: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    size = size_of(family)
    return torch.randn(1, 3, size, size, generator=g)


def ignored_boxes(family: str, model) -> list:
    """The ignored GT of the family's test chip.

    Dense and RoI heads: :data:`IGNORED`, away from the valid GT. Query
    heads have no prior there: the box is one the model itself predicts
    (eval mode, same weights), away from the valid GT, so that the queries
    predicting it lie on the ignored GT.
    """
    if family not in QUERY_FAMILIES:
        return IGNORED
    from mmdet.structures.bbox import bbox_overlaps
    model.eval()
    with torch.no_grad():
        pred = model.predict(inputs(family), [sample(family)],
                             rescale=False)[0].pred_instances
    model.train()
    boxes = pred.bboxes
    wh = boxes[:, 2:] - boxes[:, :2]
    far = bbox_overlaps(boxes, torch.tensor(VALID)).max(dim=1).values < 0.1
    ok = far & (wh.min(dim=1).values > 8)
    assert bool(ok.any()), f'{family}: no predicted box to ignore'
    return boxes[ok][:1].tolist()


def set_epoch(epoch: int) -> None:
    """The epoch as the runner publishes it (TOOD switches assigners)."""
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('epoch', epoch)


class LossSpy:
    """Records every call of the classification-type losses of a model."""

    #: attribute names of classification-type losses
    NAMES = ('loss_cls', 'initial_loss_cls', 'loss_obj', 'loss_centerness',
             'loss_iou')

    def __init__(self, model):
        self.model = model
        self.calls = defaultdict(list)
        self.num_classes = {}
        self.samples = []

    @contextlib.contextmanager
    def watch(self):
        handles = []
        for path, module in self.model.named_modules():
            for name in self.NAMES:
                loss = getattr(module, name, None)
                if isinstance(loss, torch.nn.Module) and name in dict(
                        module.named_children()):
                    key = f'{path}.{name}'
                    self.num_classes[key] = getattr(module, 'num_classes', 0)
                    handles.append(
                        loss.register_forward_pre_hook(
                            self._hook(key), with_kwargs=True))
        restore = []
        for module in self.model.modules():
            for name in ('sampler', 'bbox_sampler'):
                value = module.__dict__.get(name)
                values = value if isinstance(value, list) else [value]
                for sampler in values:
                    if sampler is None or not hasattr(sampler, 'sample'):
                        continue
                    original = sampler.sample
                    sampler.sample = self._sample_spy(original, name)
                    restore.append((sampler, original))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()
            for sampler, original in restore:
                del sampler.sample
                assert sampler.sample == original

    def _sample_spy(self, original, name):

        def sample(*args, **kwargs):
            result = original(*args, **kwargs)
            self.samples.append((name, result))
            return result

        return sample

    def _hook(self, key):

        def hook(module, args, kwargs):
            pred = args[0]
            target = args[1] if len(args) > 1 else kwargs.get('target')
            weight = args[2] if len(args) > 2 else kwargs.get('weight')
            self.calls[key].append(
                dict(pred=pred.detach(), target=_detach(target),
                     weight=None if weight is None else weight.detach(),
                     pos_inds=kwargs.get('pos_inds')))

        return hook


def _detach(t):
    if isinstance(t, (tuple, list)):
        return type(t)(_detach(x) for x in t)
    return t.detach() if isinstance(t, torch.Tensor) else t


def effective_count(call, num_classes) -> int:
    """Predictions that count in a classification-type loss call (nonzero
    weight; for the Gaussian heatmap, not the all-ones 'ignored' rows)."""
    pred, target, weight = call['pred'], call['target'], call['weight']
    n = pred.shape[0]
    keep = torch.ones(n, dtype=torch.bool)
    if weight is not None:
        w = weight.reshape(n, -1)
        keep &= (w > 0).any(dim=1)
    if isinstance(target, torch.Tensor):
        heatmap = target.dim() == 2 and target.shape == pred.shape and \
            call['pos_inds'] is not None
        if heatmap:
            keep &= ~(target == 1).all(dim=1)  # CenterNet's ignored rows
        if target.dtype in (torch.int64, torch.int32):
            keep &= target.reshape(n, -1)[:, 0] >= 0
        elif target.shape == pred.shape:
            keep &= (target.reshape(n, -1) >= 0).all(dim=1)
    return int(keep.sum())


def positive_count(call, num_classes) -> int:
    target = call['target']
    if isinstance(target, tuple):  # QualityFocalLoss (labels, scores)
        target = target[0]
    if call['pos_inds'] is not None:
        return int(len(call['pos_inds']))
    if target.dtype in (torch.int64, torch.int32):
        return int(((target >= 0) & (target < num_classes)).sum())
    return int((target.reshape(target.shape[0], -1) > 0).any(dim=1).sum())


def run_loss(model, family: str, ignored=None, seed: int = 0):
    """Losses and the spy of one forward on the fixed sample."""
    torch.manual_seed(seed)
    spy = LossSpy(model)
    with spy.watch():
        losses = model.loss(inputs(family, seed), [sample(family, ignored)])
    return losses, spy


def counts(spy) -> tuple:
    """(effective, positive) predictions per spied loss."""
    eff = {
        k: sum(effective_count(c, spy.num_classes[k]) for c in v)
        for k, v in spy.calls.items()
    }
    pos = {
        k: sum(positive_count(c, spy.num_classes[k]) for c in v)
        for k, v in spy.calls.items()
    }
    return eff, pos


def negatives_on_ignored(spy, family: str, ignored) -> int:
    """Sampled negatives lying on an ignored box (all samplers): IoU > 0.3
    for anchors, > 0.5 for RoIs (``ROI_IGNORE_IOU``), inside for points."""
    from mmsniper.models.ignore import ignore_mask
    from mmsniper.models.ignore_support import (ANCHOR_IGNORE_IOU,
                                                ROI_IGNORE_IOU)
    kind = 'point' if family in POINT_FAMILIES else 'box'
    boxes = torch.tensor(ignored).reshape(-1, 4).float()
    total = 0
    for name, result in spy.samples:
        iou_thr = ROI_IGNORE_IOU if name == 'bbox_sampler' else \
            ANCHOR_IGNORE_IOU
        neg = result.neg_priors
        if family == 'yolox':  # offset priors: centres at x + stride / 2
            neg = torch.cat([neg[:, :2] + neg[:, 2:] * 0.5, neg[:, 2:]], 1)
        total += int(ignore_mask(neg, boxes, kind, iou_thr).sum())
    return total


def scalar_losses(losses) -> dict:
    out = {}
    for k, v in losses.items():
        if isinstance(v, (list, tuple)):
            v = sum(v)
        if isinstance(v, torch.Tensor):
            out[k] = float(v.detach().sum())
    return out
