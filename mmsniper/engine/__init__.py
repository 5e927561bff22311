from .hooks import SniperTTAStatsHook

__all__ = ['SniperTTAStatsHook']
