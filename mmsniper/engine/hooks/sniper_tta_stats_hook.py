# Copyright (c) mmsniper contributors. All rights reserved.
"""Log the pixels and time of a SNIPER test next to the metric."""
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS


def _sniper_tta_model(runner):
    from mmsniper.models.test_time_augs import SniperTTAModel
    model = runner.model
    if is_model_wrapper(model):
        model = model.module
    return model if isinstance(model, SniperTTAModel) else None


@HOOKS.register_module()
class SniperTTAStatsHook(Hook):
    """Report :attr:`SniperTTAModel.sniper_stats` at the end of a test.

    Does nothing unless the runner's model is a ``SniperTTAModel`` (so it
    can sit in a config's ``custom_hooks`` for training too). After the test
    epoch it sums the counters over ranks, logs one line per scale, and adds
    ``sniper/images``, ``sniper/Mpx_per_img``, ``sniper/s_per_img`` and
    ``sniper/Mpx_per_img_scale{i}`` to the test metrics (so they print on
    the metric line and ``runner.test()`` returns them).
    """

    # after RuntimeInfoHook (VERY_HIGH), before LoggerHook (BELOW_NORMAL)
    priority = 'NORMAL'

    def before_test_epoch(self, runner) -> None:
        model = _sniper_tta_model(runner)
        if model is not None:
            model.reset_stats()

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        from mmsniper.models.test_time_augs import format_sniper_stats
        model = _sniper_tta_model(runner)
        if model is None:
            return
        stats = dict(model.sniper_stats)
        num = len(model.scales)
        # AutoFocusTTAModel also counts the full multi-scale test's pixels
        full = stats.get('full_pixels', None)
        flat = np.concatenate([[stats['images'], stats['seconds']],
                               stats['pixels'], stats['views'],
                               stats['tiled_images'], stats['scale_seconds'],
                               full if full is not None else []
                               ]).astype(np.float64)
        if get_world_size() > 1:
            # counts and seconds add up over ranks: seconds per image is
            # then the time one process spends on one image
            tensor = torch.from_numpy(flat)
            all_reduce(tensor)
            flat = tensor.numpy()
        summed = dict(
            images=flat[0],
            seconds=flat[1],
            pixels=flat[2:2 + num],
            views=flat[2 + num:2 + 2 * num],
            tiled_images=flat[2 + 2 * num:2 + 3 * num],
            scale_seconds=flat[2 + 3 * num:2 + 4 * num])
        if full is not None:
            summed['full_pixels'] = flat[2 + 4 * num:2 + 5 * num]
        for line in format_sniper_stats(summed, model.scales):
            runner.logger.info(line)
        images = max(summed['images'], 1)
        extra = {
            'sniper/images': float(summed['images']),
            'sniper/Mpx_per_img': float(summed['pixels'].sum() / images / 1e6),
            'sniper/s_per_img': float(summed['seconds'] / images),
        }
        for idx in range(num):
            extra[f'sniper/Mpx_per_img_scale{idx}'] = float(
                summed['pixels'][idx] / images / 1e6)
        if full is not None:
            total_full = max(float(summed['full_pixels'].sum()), 1.0)
            extra['sniper/px_fraction_of_full'] = float(
                summed['pixels'].sum() / total_full)
            for idx in range(num):
                extra[f'sniper/px_fraction_scale{idx}'] = float(
                    summed['pixels'][idx] /
                    max(float(summed['full_pixels'][idx]), 1.0))
        for key, value in extra.items():
            runner.message_hub.update_scalar(f'test/{key}', value)
        if metrics is not None:
            metrics.update(extra)
