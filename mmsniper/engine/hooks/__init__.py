from .sniper_ignore_check_hook import SniperIgnoreCheckHook
from .sniper_tta_stats_hook import SniperTTAStatsHook
from .time_budget_hook import TimeBudgetHook

__all__ = ['SniperTTAStatsHook', 'TimeBudgetHook', 'SniperIgnoreCheckHook']
