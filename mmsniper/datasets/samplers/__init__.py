# Copyright (c) mmsniper contributors. All rights reserved.
from .sniper_chip_sampler import SniperChipSampler

__all__ = ['SniperChipSampler']
