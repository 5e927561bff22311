from .inference import (ImageFailure, InferenceResults, inference_sniper,
                        init_sniper_detector, list_images)
from .sniper_config import make_sniper_config
from .tta import enable_tta, sniper_tta_config

__all__ = [
    'init_sniper_detector', 'inference_sniper', 'list_images', 'enable_tta',
    'sniper_tta_config', 'make_sniper_config', 'InferenceResults',
    'ImageFailure'
]
