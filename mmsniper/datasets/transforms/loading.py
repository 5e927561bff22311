# Copyright (c) mmsniper contributors. All rights reserved.
"""Load only the part of a large image that a SNIPER chip needs."""
import io
import math
from typing import Optional, Tuple

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile

from mmdet.registry import TRANSFORMS

_DRAFT_COLOR_TYPES = ('color', 'grayscale', 'color_ignore_orientation',
                      'grayscale_ignore_orientation')
_EXIF_ORIENTATION = 0x0112


@TRANSFORMS.register_module()
class LoadSniperChipFromFile(LoadImageFromFile):
    """Load an image, decoding only what a SNIPER chip needs.

    A drop-in replacement for ``LoadImageFromFile`` in a chip pipeline,
    followed (after ``LoadAnnotations``) by
    :class:`~mmsniper.datasets.transforms.SniperChipCrop`.

    When ``results['sniper_chip']`` is present, the file is a baseline or
    progressive JPEG (RGB or grayscale, no EXIF rotation to apply) and the
    chip scale ``s <= 0.5``, the JPEG is decoded by PIL in draft mode at a
    reduced size ``1/d`` with ``d`` the largest of 2, 4, 8 such that
    ``d * s <= 1`` (so the decoded image still has at least the chip's
    resolution), and only the chip region (plus a margin of ``crop_margin``
    decoded px) is kept. The result then describes that region:

    - ``img``: the region, BGR (or 2-D for grayscale), like ``mmcv.imread``;
    - ``sniper_chip_img_origin`` (tuple[float, float]): the region's corner
      (x0, y0) in original px;
    - ``sniper_chip_img_scale`` (float): ``f = 1/d``, ``img`` px per
      original px, so that ``img`` px ``= (orig px - (x0, y0)) * f``.

    ``img_shape`` and ``ori_shape`` are still the full original (h, w), as
    ``LoadImageFromFile`` sets them, so that ``LoadAnnotations`` (masks)
    and ``SniperChipCrop`` see the original geometry. ``SniperChipCrop``
    gives exactly the same boxes, shapes and metas as with a full decode;
    pixel values differ slightly (JPEG DCT-domain scaling instead of a
    bilinear resize).

    In every other case (no ``sniper_chip``, ``s > 0.5``, other formats,
    ``color_type='unchanged'``, an EXIF orientation to apply, ``draft=False``)
    it behaves exactly like ``LoadImageFromFile``, and SniperChipCrop then
    crops the full image.

    Required Keys:

    - img_path
    - sniper_chip (optional)

    Modified Keys:

    - img
    - img_shape
    - ori_shape

    Added Keys:

    - sniper_chip_img_origin (only for a partial decode)
    - sniper_chip_img_scale (only for a partial decode)

    Args:
        to_float32 (bool): Whether to convert the loaded image to float32.
            Defaults to False.
        color_type (str): As for ``mmcv.imfrombytes``. Defaults to 'color'.
        imdecode_backend (str): Backend of the full decode (fallback), as
            for ``mmcv.imfrombytes``. Defaults to 'cv2'.
        file_client_args (dict, optional): Deprecated, see
            ``LoadImageFromFile``. Defaults to None.
        ignore_empty (bool): Whether to return None for an unreadable file.
            Defaults to False.
        backend_args (dict, optional): File backend arguments, see
            ``LoadImageFromFile``. Defaults to None.
        draft (bool): Whether to use reduced-size JPEG decoding at all.
            Defaults to True.
        crop_margin (int): Decoded px kept around the chip region so that
            interpolation near the chip border sees real neighbours.
            Defaults to 8.
    """

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 file_client_args: Optional[dict] = None,
                 ignore_empty: bool = False,
                 *,
                 backend_args: Optional[dict] = None,
                 draft: bool = True,
                 crop_margin: int = 8) -> None:
        super().__init__(
            to_float32=to_float32,
            color_type=color_type,
            imdecode_backend=imdecode_backend,
            file_client_args=file_client_args,
            ignore_empty=ignore_empty,
            backend_args=backend_args)
        if crop_margin < 0:
            raise ValueError(f'crop_margin must be >= 0, got {crop_margin}')
        self.draft = draft
        self.crop_margin = int(crop_margin)

    @staticmethod
    def _chip_box_and_scale(chip) -> Optional[Tuple[Tuple[float, ...], float]]:
        """(box, s) if they look usable, else None (SniperChipCrop reports
        the problem)."""
        try:
            box = np.asarray(chip['box'], dtype=np.float64).reshape(-1)
            s = float(chip['scale_factor'])
        except (KeyError, TypeError, ValueError):
            return None
        if (box.shape != (4, ) or not np.isfinite(box).all()
                or not (math.isfinite(s) and s > 0) or box[2] <= box[0]
                or box[3] <= box[1]):
            return None
        return tuple(float(v) for v in box), s

    def _decode_draft(self, img_bytes: bytes, box: Tuple[float, ...],
                      s: float) -> Optional[tuple]:
        """Partial decode; None when it does not apply."""
        if self.color_type not in _DRAFT_COLOR_TYPES:
            return None
        if img_bytes[:3] != b'\xff\xd8\xff':  # not a JPEG
            return None
        factor = next((d for d in (8, 4, 2) if d * s <= 1 + 1e-9), None)
        if factor is None:
            return None
        from PIL import Image
        with Image.open(io.BytesIO(img_bytes)) as im:
            if im.format != 'JPEG' or im.mode not in ('RGB', 'L'):
                return None
            if 'ignore_orientation' not in self.color_type:
                orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
                if orientation not in (None, 1):
                    return None
            full_w, full_h = im.size
            if full_w // factor < 1 or full_h // factor < 1:
                return None
            gray = self.color_type.startswith('grayscale')
            if im.draft('L' if gray else 'RGB',
                        (full_w // factor, full_h // factor)) is None:
                return None
            d = im.decoderconfig[0] if im.decoderconfig else 1
            if (d <= 1 or d * s > 1 + 1e-9
                    or im.size != ((full_w + d - 1) // d,
                                   (full_h + d - 1) // d)):
                return None
            dec_w, dec_h = im.size
            x1, y1, x2, y2 = box
            m = self.crop_margin
            rx0 = min(max(int(math.floor(x1 / d)) - m, 0), dec_w - 1)
            ry0 = min(max(int(math.floor(y1 / d)) - m, 0), dec_h - 1)
            rx1 = max(min(int(math.ceil(x2 / d)) + m, dec_w), rx0 + 1)
            ry1 = max(min(int(math.ceil(y2 / d)) + m, dec_h), ry0 + 1)
            region = im.crop((rx0, ry0, rx1, ry1))
        if gray:
            region = region.convert('L')
            img = np.asarray(region)
        else:
            region = region.convert('RGB')
            img = np.ascontiguousarray(np.asarray(region)[..., ::-1])
        return img, (full_h, full_w), (float(rx0 * d), float(ry0 * d)), 1.0 / d

    def transform(self, results: dict) -> Optional[dict]:
        """Load the image, or only the chip's region of it.

        Args:
            results (dict): Result dict from the dataset.

        Returns:
            dict: The dict with the image and its meta information.
        """
        results.pop('sniper_chip_img_origin', None)
        results.pop('sniper_chip_img_scale', None)
        chip = results.get('sniper_chip', None)
        box_s = None
        if self.draft and chip is not None:
            box_s = self._chip_box_and_scale(chip)
        reducible = box_s is not None and any(
            d * box_s[1] <= 1 + 1e-9 for d in (8, 4, 2))
        if not reducible:
            return super().transform(results)

        filename = results['img_path']
        try:
            if self.file_client_args is not None:
                file_client = fileio.FileClient.infer_client(
                    self.file_client_args, filename)
                img_bytes = file_client.get(filename)
            else:
                img_bytes = fileio.get(
                    filename, backend_args=self.backend_args)
            decoded = self._decode_draft(img_bytes, *box_s)
            if decoded is None:
                img = mmcv.imfrombytes(
                    img_bytes,
                    flag=self.color_type,
                    backend=self.imdecode_backend)
        except Exception as e:
            if self.ignore_empty:
                return None
            raise e

        if decoded is None:
            assert img is not None, f'failed to load image: {filename}'
            full_shape = img.shape[:2]
        else:
            img, full_shape, origin, img_scale = decoded
            results['sniper_chip_img_origin'] = origin
            results['sniper_chip_img_scale'] = img_scale
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = full_shape
        results['ori_shape'] = full_shape
        return results

    def __repr__(self) -> str:
        repr_str = super().__repr__()[:-1]
        repr_str += f', draft={self.draft}, crop_margin={self.crop_margin})'
        return repr_str
