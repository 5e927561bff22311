from .sniper_roi_head import SniperRoIHead

__all__ = ['SniperRoIHead']
