from .dense_heads import (FocusPixelHead, SniperCenterNetUpdateHead,
                          SniperConditionalDETRHead, SniperDABDETRHead,
                          SniperDeformableDETRHead, SniperDETRHead,
                          SniperDINOHead, SniperFCOSHead, SniperVFNetHead,
                          SniperYOLOXHead)
from .detectors import AutoFocusDetector
from .ignore_support import check_ignore_support, sniperize_model_cfg
from .roi_heads import SniperRoIHead, SniperSparseRoIHead
from .task_modules import SniperIgnoreAssigner, SniperMaxIoUAssigner
from .test_time_augs import AutoFocusTTAModel, SniperTTAModel
from .valid_range import in_valid_range

__all__ = [
    'SniperMaxIoUAssigner', 'SniperIgnoreAssigner', 'SniperRoIHead',
    'SniperSparseRoIHead', 'SniperTTAModel', 'in_valid_range',
    'FocusPixelHead', 'AutoFocusDetector', 'AutoFocusTTAModel',
    'SniperFCOSHead', 'SniperVFNetHead', 'SniperCenterNetUpdateHead',
    'SniperYOLOXHead', 'SniperDETRHead', 'SniperConditionalDETRHead',
    'SniperDABDETRHead', 'SniperDeformableDETRHead', 'SniperDINOHead',
    'check_ignore_support', 'sniperize_model_cfg'
]
