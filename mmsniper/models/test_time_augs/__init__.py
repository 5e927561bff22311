from .sniper_tta import SniperTTAModel, crop_resize, format_sniper_stats

__all__ = ['SniperTTAModel', 'crop_resize', 'format_sniper_stats']
