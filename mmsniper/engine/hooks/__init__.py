from .sniper_tta_stats_hook import SniperTTAStatsHook

__all__ = ['SniperTTAStatsHook']
