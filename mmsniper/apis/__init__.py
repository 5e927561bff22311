from .inference import inference_sniper, init_sniper_detector, list_images

__all__ = ['init_sniper_detector', 'inference_sniper', 'list_images']
