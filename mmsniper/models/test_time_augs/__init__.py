from .autofocus_tta import AutoFocusTTAModel
from .sniper_tta import SniperTTAModel, crop_resize, format_sniper_stats

__all__ = [
    'SniperTTAModel', 'AutoFocusTTAModel', 'crop_resize',
    'format_sniper_stats'
]
