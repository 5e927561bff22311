from .dense_heads import FocusPixelHead
from .detectors import AutoFocusDetector
from .roi_heads import SniperRoIHead
from .task_modules import SniperMaxIoUAssigner
from .test_time_augs import AutoFocusTTAModel, SniperTTAModel
from .valid_range import in_valid_range

__all__ = [
    'SniperMaxIoUAssigner', 'SniperRoIHead', 'SniperTTAModel',
    'in_valid_range', 'FocusPixelHead', 'AutoFocusDetector',
    'AutoFocusTTAModel'
]
