# Copyright (c) mmsniper contributors. All rights reserved.
"""Chip geometry for SNIPER: pure numpy, no mmdet/mmcv/torch import.

Scales and valid ranges (:mod:`.scales`), the candidate chip grid
(:mod:`.geometry`), greedy cover and assignment (:mod:`.cover`), the fast
cover of a grid (:mod:`.grid_cover`), positive chips (:mod:`.positive`),
negative chips mined from proposals (:mod:`.negative`), settings checks
and per-box validity (:mod:`.settings`), the scale advisor
(:mod:`.advisor`); at test time, tiles of huge images (:mod:`.tiles`),
boxes between chip and original px and pruning at chip edges
(:mod:`.mapping`), test valid ranges (:mod:`.merge`); AutoFocus
FocusPixel labels and FocusChips (:mod:`.focus`).
"""
from .advisor import (DEFAULT_BAND, ScaleProposal, SettingsReport,
                      evaluate_settings, propose_scales, resize_pixels,
                      size_percentiles)
from .cover import assign_boxes_to_chips, greedy_cover
from .focus import focus_pixel_labels, generate_focus_chips
from .geometry import (FIT_TOLERANCE, candidate_chip_origins, candidate_chips,
                       check_bboxes, clip_bboxes, containment_matrix)
from .grid_cover import grid_greedy_cover
from .mapping import (IMAGE_EDGE_TOLERANCE, edge_cut_mask, flip_boxes,
                      map_boxes_to_chip, map_boxes_to_original)
from .merge import in_test_valid_range, scale_valid_range_mask
from .negative import (generate_negative_chips, generate_negative_scale_chips,
                       negative_proposal_mask)
from .positive import (MIN_BOX_SIDE, ScaleChips, chip_driving_mask,
                       generate_multiscale_chips, generate_positive_chips,
                       generate_scale_chips)
from .scales import (LOWER_BOUND_SCALES, box_sqrt_areas,
                     check_lower_bound_scales, compute_scale_factor,
                     compute_scale_factors, in_valid_range,
                     normalize_valid_range, normalize_valid_ranges,
                     validity_ranges)
from .settings import (GtValidity, check_chip_settings,
                       check_scales_and_ranges, gt_scale_validity,
                       image_scale_factors)
from .tiles import (axis_tiles, plan_scale_tiles, scaled_size, tile_layout,
                    tile_overlap)

__all__ = [
    'compute_scale_factor', 'compute_scale_factors', 'box_sqrt_areas',
    'in_valid_range', 'normalize_valid_range', 'normalize_valid_ranges',
    'chip_driving_mask', 'candidate_chip_origins', 'candidate_chips',
    'greedy_cover', 'grid_greedy_cover', 'assign_boxes_to_chips', 'ScaleChips',
    'generate_scale_chips', 'generate_multiscale_chips',
    'generate_positive_chips', 'generate_negative_chips',
    'generate_negative_scale_chips', 'negative_proposal_mask', 'check_bboxes',
    'clip_bboxes', 'containment_matrix', 'FIT_TOLERANCE', 'MIN_BOX_SIDE',
    'check_chip_settings', 'check_scales_and_ranges',
    'GtValidity', 'gt_scale_validity',
    'image_scale_factors', 'DEFAULT_BAND', 'ScaleProposal', 'propose_scales',
    'size_percentiles', 'resize_pixels', 'SettingsReport', 'evaluate_settings',
    'LOWER_BOUND_SCALES', 'check_lower_bound_scales', 'validity_ranges',
    'flip_boxes', 'map_boxes_to_original', 'map_boxes_to_chip',
    'edge_cut_mask', 'IMAGE_EDGE_TOLERANCE', 'in_test_valid_range',
    'scale_valid_range_mask', 'axis_tiles', 'tile_layout', 'scaled_size',
    'tile_overlap', 'plan_scale_tiles', 'focus_pixel_labels',
    'generate_focus_chips'
]
