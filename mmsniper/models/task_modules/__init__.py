from .sniper_ignore_assigner import SniperIgnoreAssigner
from .sniper_max_iou_assigner import SniperMaxIoUAssigner

__all__ = ['SniperMaxIoUAssigner', 'SniperIgnoreAssigner']
