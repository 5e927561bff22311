from .hooks import SniperIgnoreCheckHook, SniperTTAStatsHook, TimeBudgetHook

__all__ = ['SniperTTAStatsHook', 'TimeBudgetHook', 'SniperIgnoreCheckHook']
