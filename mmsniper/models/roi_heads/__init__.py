from .sniper_roi_head import SniperRoIHead
from .sniper_sparse_roi_head import SniperSparseRoIHead

__all__ = ['SniperRoIHead', 'SniperSparseRoIHead']
