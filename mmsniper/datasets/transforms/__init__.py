# Copyright (c) mmsniper contributors. All rights reserved.
from .chip_crop import (SNIPER_CHIP_META_KEYS, SniperChipCrop, chip_meta_keys,
                        resample_region)
from .drop_ignored import DropIgnoredInstances
from .focus_labels import FocusPixelLabels, PackSniperDetInputs
from .lazy_loading import LAZY_META_KEYS, LoadSniperLazyImage
from .loading import LoadSniperChipFromFile

__all__ = [
    'SniperChipCrop', 'LoadSniperChipFromFile', 'SNIPER_CHIP_META_KEYS',
    'chip_meta_keys', 'resample_region', 'DropIgnoredInstances',
    'FocusPixelLabels', 'PackSniperDetInputs', 'LoadSniperLazyImage',
    'LAZY_META_KEYS'
]
