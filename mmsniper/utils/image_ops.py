# Copyright (c) mmsniper contributors. All rights reserved.
"""Image operations shared by the multi-scale test and the lazy reading of
huge images: :func:`crop_resize`."""
import cv2
import numpy as np
import torch

__all__ = ['crop_resize']

_CV2_INTERP = dict(
    nearest=cv2.INTER_NEAREST,
    bilinear=cv2.INTER_LINEAR,
    bicubic=cv2.INTER_CUBIC,
    area=cv2.INTER_AREA,
    lanczos=cv2.INTER_LANCZOS4)


def crop_resize(img: torch.Tensor, region, out_size,
                interpolation: str = 'bilinear') -> torch.Tensor:
    """Cut an integer-pixel region of a ``(C, H, W)`` image and resize it.

    Only the region is read: each channel plane of the crop is resized by
    ``cv2.resize`` straight from a strided view, so neither the whole image
    nor its enlarged copy is ever materialised.

    Args:
        img (Tensor): ``(C, H, W)`` CPU image (any dtype cv2 accepts).
        region (Sequence[int]): ``(x1, y1, x2, y2)`` orig px.
        out_size (Sequence[int]): ``(w, h)`` of the output.
        interpolation (str): cv2 interpolation name.

    Returns:
        Tensor: ``(C, h, w)`` image of ``img``'s dtype.
    """
    x1, y1, x2, y2 = (int(v) for v in region)
    out_w, out_h = (int(v) for v in out_size)
    planes = img.numpy() if isinstance(img, torch.Tensor) else img
    crop = planes[:, y1:y2, x1:x2]
    if (out_w, out_h) == (x2 - x1, y2 - y1):
        return torch.from_numpy(np.ascontiguousarray(crop))
    flag = _CV2_INTERP[interpolation]
    out = np.empty((crop.shape[0], out_h, out_w), dtype=crop.dtype)
    for c in range(crop.shape[0]):
        cv2.resize(crop[c], (out_w, out_h), dst=out[c], interpolation=flag)
    return torch.from_numpy(out)
