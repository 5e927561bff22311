# Copyright (c) mmsniper contributors. All rights reserved.
"""Stand-ins for the mmcv ops the GPU checks use, for when mmcv 2.1.0's
compiled ops (``mmcv._ext``) did not build on the GPU machine.

:func:`install` puts a module in ``sys.modules['mmcv._ext']`` that has the
four functions Faster R-CNN and the SNIPER / AutoFocus tests call, with
mmcv's signatures, so mmcv's own Python code (``nms``, ``batched_nms``,
``soft_nms``, ``RoIAlign`` and its autograd function) runs unchanged on top:

- ``nms`` and ``roi_align_forward`` / ``roi_align_backward`` (average
  pooling; ``aligned`` as given) call torchvision's ops (the GPU machine's
  image has torchvision; its RoIAlign backward needs only the input's shape,
  as mmcv's does);
- ``softnms`` is mmcv's CPU algorithm in torch, one selected box per step
  with the score decay vectorised; it keeps the remaining candidates in
  their order where mmcv swaps the last one into a removed one's place, so
  the two differ only in which of two exactly equal scores goes first.

Every other ``mmcv._ext`` function raises ``NotImplementedError`` naming
itself when called (importing ``mmcv.ops`` only checks that they exist).
Used by ``gpu_checks.py`` when ``MMSNIPER_MMCV_EXT_FALLBACK=1``; the results
then say so. Not for training or testing anything else.
"""
import importlib.abc
import importlib.machinery
import sys
import types

#: the ``mmcv._ext`` functions that have a stand-in here
PROVIDED = ('nms', 'softnms', 'roi_align_forward', 'roi_align_backward')


def nms(boxes, scores, iou_threshold, offset=0):
    import torchvision
    if offset != 0:
        raise NotImplementedError(
            'mmcv_ext_fallback.nms: only offset=0 (the mmdet 3.x default)')
    return torchvision.ops.nms(boxes.float(), scores.float(),
                               float(iou_threshold))


def softnms(boxes, scores, dets, iou_threshold, sigma, min_score, method,
            offset):
    """mmcv's ``softnms_cpu``: fills ``dets`` (selection order, x1 y1 x2 y2
    score) and returns the kept indices. ``method``: 0 naive, 1 linear,
    2 gaussian."""
    import torch
    num = boxes.size(0)
    if num == 0:
        return boxes.new_zeros(0, dtype=torch.long)
    boxes = boxes.float()
    score = scores.float().clone()
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    order = torch.arange(num, device=boxes.device)
    keep, kept_scores = [], []
    while order.numel():
        pos = int(torch.argmax(score[order]))  # first of equal maxima
        idx = order[pos]
        keep.append(idx)
        kept_scores.append(score[idx])
        rest = order.clone()
        rest[pos] = order[0]  # the C loop swaps the best box into place i
        rest = rest[1:]
        if not rest.numel():
            break
        w = (torch.minimum(x2[idx], x2[rest]) -
             torch.maximum(x1[idx], x1[rest]) + offset).clamp(min=0)
        h = (torch.minimum(y2[idx], y2[rest]) -
             torch.maximum(y1[idx], y1[rest]) + offset).clamp(min=0)
        inter = w * h
        ovr = inter / (areas[idx] + areas[rest] - inter)
        if method == 0:
            weight = (ovr < iou_threshold).float()
        elif method == 1:
            weight = torch.where(ovr >= iou_threshold, 1 - ovr,
                                 torch.ones_like(ovr))
        elif method == 2:
            weight = torch.exp(-(ovr * ovr) / sigma)
        else:
            raise ValueError(f'softnms: unknown method {method}')
        score[rest] = score[rest] * weight
        order = rest[score[rest] >= min_score]
    keep = torch.stack(keep)
    dets[:len(keep), :4] = boxes[keep]
    dets[:len(keep), 4] = torch.stack(kept_scores)
    return keep


def _check_avg(pool_mode):
    if pool_mode != 1:
        raise NotImplementedError(
            'mmcv_ext_fallback: RoIAlign with pool_mode="avg" only')


def roi_align_forward(input, rois, output, argmax_y, argmax_x,
                      aligned_height, aligned_width, spatial_scale,
                      sampling_ratio, pool_mode, aligned):
    import torchvision
    _check_avg(pool_mode)
    out = torchvision.ops.roi_align(
        input, rois.to(input.dtype), (aligned_height, aligned_width),
        spatial_scale, sampling_ratio, aligned)
    output.copy_(out)


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input,
                       aligned_height, aligned_width, spatial_scale,
                       sampling_ratio, pool_mode, aligned):
    import torch
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)
    _check_avg(pool_mode)
    batch, channels, height, width = grad_input.shape
    grad = torch.ops.torchvision._roi_align_backward(
        grad_output, rois.to(grad_output.dtype), spatial_scale,
        aligned_height, aligned_width, batch, channels, height, width,
        sampling_ratio, aligned)
    grad_input.copy_(grad)


def _missing(name):
    if name.startswith('__'):
        raise AttributeError(name)

    def op(*args, **kwargs):
        raise NotImplementedError(
            f'mmcv op {name!r} is not available: mmcv\'s compiled ops did '
            'not build, and benchmarks/gpu/mmcv_ext_fallback.py provides '
            f'only {", ".join(PROVIDED)}')

    op.__name__ = name
    return op


class _Loader(importlib.abc.Loader):

    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        pass


def install(force=False):
    """Provide ``mmcv._ext`` from this module unless the real one imports
    (``force``: replace it even then, for tests).

    Returns:
        bool: True when the stand-ins are in use.
    """
    import mmcv
    if not force:
        try:
            import mmcv._ext  # noqa: F401
            return False
        except ImportError:
            pass
    module = types.ModuleType('mmcv._ext')
    module.__doc__ = __doc__
    # importlib / pkgutil look-ups (mmengine's mmcv_full_available) need a
    # spec with a loader
    module.__spec__ = importlib.machinery.ModuleSpec(
        'mmcv._ext', _Loader(module))
    for name in PROVIDED:
        setattr(module, name, globals()[name])
    module.__getattr__ = _missing
    sys.modules['mmcv._ext'] = module
    mmcv._ext = module
    mmcv._mmsniper_ext_fallback = True
    return True
