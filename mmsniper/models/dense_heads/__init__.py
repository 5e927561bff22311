# Copyright (c) mmsniper contributors. All rights reserved.
from .focus_head import FocusPixelHead
from .sniper_ignore_heads import (SniperCenterNetUpdateHead,
                                  SniperConditionalDETRHead,
                                  SniperDABDETRHead, SniperDeformableDETRHead,
                                  SniperDETRHead, SniperDINOHead,
                                  SniperFCOSHead, SniperVFNetHead,
                                  SniperYOLOXHead)

__all__ = [
    'FocusPixelHead', 'SniperFCOSHead', 'SniperVFNetHead',
    'SniperCenterNetUpdateHead', 'SniperYOLOXHead', 'SniperDETRHead',
    'SniperConditionalDETRHead', 'SniperDABDETRHead',
    'SniperDeformableDETRHead', 'SniperDINOHead'
]
