# Copyright (c) mmsniper contributors. All rights reserved.
from .chip_table import ChipIndex, ChipTable
from .proposals import ProposalSet, load_proposals, proposal_key
from .samplers import SniperChipSampler
from .sniper_chip_dataset import SniperChipDataset
from .transforms import *  # noqa: F401,F403

__all__ = [
    'ChipIndex', 'ChipTable', 'SniperChipDataset', 'SniperChipSampler',
    'ProposalSet', 'load_proposals', 'proposal_key'
]
