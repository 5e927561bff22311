# Copyright (c) mmsniper contributors. All rights reserved.
"""AutoFocus around any mmdet detector: the detector plus a FocusPixel
head on its own neck features."""
import copy
from typing import Optional, Union

from mmengine.logging import print_log
from torch import Tensor

from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList

FOCUS_PREFIX = 'focus_head.'
DETECTOR_PREFIX = 'detector.'


@MODELS.register_module()
class AutoFocusDetector(BaseDetector):
    """Any mmdet detector with an AutoFocus FocusPixel head.

    The detector trains and predicts exactly as it would alone; the head
    reads the level of the detector's neck (or backbone, without a neck)
    whose stride matches its label grid. The features are computed once
    per step: a forward hook on the neck hands the detector's own features
    to the head.

    Checkpoints interchange with the plain detector: the wrapper's state
    dict holds the detector's keys unchanged plus ``focus_head.*``, so a
    plain detector checkpoint loads into the wrapper (the focus head keeps
    its fresh initialisation, and a log line says so), and a wrapper
    checkpoint loads into the plain detector (mmengine reports the
    ``focus_head.*`` keys as unexpected and skips them).

    Args:
        detector (dict): Config of any mmdet detector.
        focus_head (dict): Config of the focus head (e.g.
            ``dict(type='FocusPixelHead')``).
        data_preprocessor (dict, optional): Defaults to the detector's.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 detector: dict,
                 focus_head: dict,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        detector = copy.deepcopy(detector)
        if data_preprocessor is None:
            data_preprocessor = detector.pop('data_preprocessor', None)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.detector = MODELS.build(detector)
        self.focus_head = MODELS.build(focus_head)
        self._features = None
        source = getattr(self.detector, 'neck', None)
        if source is None:
            source = getattr(self.detector, 'backbone', None)
        if source is None:
            raise TypeError(
                f'AutoFocusDetector: {type(self.detector).__name__} has '
                'neither a neck nor a backbone to read features from')
        source.register_forward_hook(self._keep_features)
        self._register_state_dict_hook(_drop_detector_prefix)
        self._register_load_state_dict_pre_hook(_add_detector_prefix)

    def _keep_features(self, module, args, output) -> None:
        self._features = output

    def _take_features(self):
        feats, self._features = self._features, None
        if feats is None:
            raise RuntimeError('AutoFocusDetector: the detector ran without '
                               'its neck/backbone forward')
        return feats

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Union[dict, list]:
        """The detector's losses plus ``loss_focus``."""
        losses = self.detector.loss(batch_inputs, batch_data_samples)
        losses.update(
            self.focus_head.loss(self._take_features(),
                                 batch_inputs.shape[-2:], batch_data_samples))
        return losses

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """The detector's predictions; each sample also gets
        ``pred_focus_map`` (foreground probability per ``stride`` cell of
        the network input)."""
        results = self.detector.predict(
            batch_inputs, batch_data_samples, rescale=rescale)
        self.focus_head.predict(self._take_features(),
                                batch_inputs.shape[-2:], results)
        return results

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None):
        """The detector's raw outputs and the focus logits."""
        outs = self.detector._forward(batch_inputs, batch_data_samples)
        feat = self.focus_head.select_level(self._take_features(),
                                            batch_inputs.shape[-2:])
        return outs, self.focus_head(feat)

    def extract_feat(self, batch_inputs: Tensor):
        """The detector's features."""
        feats = self.detector.extract_feat(batch_inputs)
        self._features = None
        return feats


def _drop_detector_prefix(module, state_dict, prefix, local_metadata):
    """Save the detector's keys as the plain detector would."""
    head = prefix + DETECTOR_PREFIX
    for key in [k for k in state_dict if k.startswith(head)]:
        state_dict[prefix + key[len(head):]] = state_dict.pop(key)
    return state_dict


def _add_detector_prefix(state_dict, prefix, local_metadata, strict,
                         missing_keys, unexpected_keys, error_msgs):
    """Load plain detector keys (and old prefixed ones) into the wrapper."""
    own = [k for k in state_dict if k.startswith(prefix)]
    focus = prefix + FOCUS_PREFIX
    for key in own:
        rest = key[len(prefix):]
        if rest.startswith(FOCUS_PREFIX) or rest.startswith(DETECTOR_PREFIX):
            continue
        state_dict[prefix + DETECTOR_PREFIX + rest] = state_dict.pop(key)
    if own and not any(k.startswith(focus) for k in own):
        print_log(
            'AutoFocusDetector: the checkpoint has no focus head (a plain '
            'detector checkpoint): the detector is loaded, the focus head '
            'keeps its fresh initialisation', logger='current')
