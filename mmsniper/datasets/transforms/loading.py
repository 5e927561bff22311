# Copyright (c) mmsniper contributors. All rights reserved.
"""Load only the pixels that a SNIPER chip needs."""
import math
import os.path as osp
import warnings
from typing import Optional, Tuple

import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile

from mmdet.registry import TRANSFORMS
from ..image_io import (DEFAULT_MAX_IMAGE_PIXELS, REDUCIBLE_COLOR_TYPES,
                        ImageDecodeError, annotated_size, check_image_pixels,
                        check_image_size, decode_image,
                        expected_reduced_shape, is_jpeg, jpeg_header_size)
from ..tile_store import (StaleTileError, TileStore, level_for_scale,
                          region_for_chip)

_REDUCE_FACTORS = (8, 4, 2)


def _positive_limit(max_image_pixels) -> float:
    """``max_image_pixels`` as a float, refusing what is not a positive
    number (``float('inf')`` turns the check off)."""
    try:
        limit = float(max_image_pixels)
    except (TypeError, ValueError):
        limit = float('nan')
    if isinstance(max_image_pixels, bool) or not limit > 0:
        raise ValueError('LoadSniperChipFromFile: max_image_pixels must be a '
                         f"positive number (float('inf') for no limit), got "
                         f'{max_image_pixels!r}')
    return limit


@TRANSFORMS.register_module()
class LoadSniperChipFromFile(LoadImageFromFile):
    """Load an image for a SNIPER chip, decoding as little as possible.

    A drop-in replacement for ``LoadImageFromFile`` in a chip pipeline,
    followed (after ``LoadAnnotations``) by
    :class:`~mmsniper.datasets.transforms.SniperChipCrop`. With
    ``results['sniper_chip']`` (box ``(x1, y1, x2, y2)`` in original px and
    scale ``s``) it loads, in this order of preference:

    1. **Tile store** (``tile_store=DIR``, built once by
       ``tools/dataset_converters/build_tile_store.py``): the pyramid level
       ``k`` with ``2**-k >= s`` (the coarsest one that still has the chip's
       resolution) and only the tiles that overlap the chip box plus
       ``crop_margin`` level px. Lossless: the pixels are exactly those of
       the level (level 0 = the file as ``mmcv.imfrombytes`` decodes it).
       The whole image is never decoded, at any scale.
       Every load compares the image file's size and mtime (one
       ``stat()``; its SHA-256 when they differ) with those recorded in its
       store file: a store file built from another version of the image or
       from another file, or a truncated one, is not used; with
       ``stale_store='fallback'`` the image file is read instead (case 2
       or 3) after one warning per file and process, with ``'error'``
       :class:`~mmsniper.datasets.tile_store.StaleTileError` names both
       files. An image that is gone is read from its store file.
    2. **Reduced decode** (``reduced_decode=True``, a JPEG, ``s <= 1/2``,
       ``color_type`` one of 'color', 'grayscale' and their
       '_ignore_orientation' forms): cv2's ``IMREAD_REDUCED_*_d`` (libjpeg
       DCT scaling, as PIL's draft mode; measured 4-26% faster than it, and
       it returns BGR directly, applies the EXIF orientation as mmcv does
       and has no PIL decompression-bomb limit; ``benchmarks/RESULTS.md``)
       at ``1/d``, ``d`` the largest of 2, 4, 8 with ``d * s <= 1``; the
       whole image is decoded at ``1/d`` size and the chip box plus
       ``crop_margin`` decoded px is kept.
    3. Otherwise the whole file, as ``LoadImageFromFile`` does.

    In cases 1 and 2 the result describes the kept region:

    - ``img``: the region, BGR (or 2-D for grayscale), like ``mmcv.imread``;
    - ``sniper_chip_img_origin`` (tuple[float, float]): its corner (x0, y0)
      in original px;
    - ``sniper_chip_img_scale`` (float): ``f``, ``img`` px per original px,
      so that ``img`` px ``= (orig px - (x0, y0)) * f``.

    ``img_shape`` and ``ori_shape`` are the full original (h, w) in every
    case, so that ``SniperChipCrop`` gives the same boxes, shapes and metas
    as with a full decode; only pixel values differ (a reduced decode or a
    coarser pyramid level instead of a bilinear resize of the full image).

    Without ``sniper_chip`` (test mode, plain datasets) the whole image is
    loaded (from level 0 of the store when there is one).

    Checks: when ``results`` has the annotation's ``height`` and ``width``,
    the image size (EXIF orientation applied as mmcv applies it for
    ``color_type``) must equal them, else :class:`ImageSizeError` names the
    file and both sizes (``check_size=False`` turns this off). Empty,
    garbage and truncated files, and images over PIL's or OpenCV's pixel
    limit, raise :class:`ImageDecodeError` naming the file (and the setting
    that allows a large image) on every path. So does an image over
    ``max_image_pixels``, read from the file's header before decoding
    (:func:`~mmsniper.datasets.image_io.image_header_size`), and a JPEG
    with too few bytes for the size its header declares. Test pipelines
    (``tta_pipeline``) use this loader for these checks: without
    ``sniper_chip`` it loads the whole image, as ``LoadImageFromFile``.

    Required Keys:

    - img_path
    - sniper_chip (optional)
    - height, width (optional, for the size check)

    Modified Keys:

    - img
    - img_shape
    - ori_shape

    Added Keys:

    - sniper_chip_img_origin (only for a partial load)
    - sniper_chip_img_scale (only for a partial load)

    Args:
        to_float32 (bool): Whether to convert the loaded image to float32.
            Defaults to False.
        color_type (str): As for ``mmcv.imfrombytes``. Defaults to 'color'.
        imdecode_backend (str): Backend of the full decode, as for
            ``mmcv.imfrombytes``. Defaults to 'cv2'.
        file_client_args (dict, optional): Deprecated, see
            ``LoadImageFromFile``. Defaults to None.
        ignore_empty (bool): Whether to return None for a missing or
            undecodable file. Defaults to False.
        backend_args (dict, optional): File backend arguments, see
            ``LoadImageFromFile``. Defaults to None.
        reduced_decode (bool): Whether to use reduced JPEG decoding at
            scales <= 1/2. Defaults to True.
        crop_margin (int): Decoded (or level) px kept around the chip region
            so that interpolation near the chip border sees real
            neighbours. Defaults to 8.
        tile_store (str, optional): Directory of a tile store; None to read
            the image files. Defaults to None.
        check_size (bool): Whether to compare the image size with the
            annotated ``height``/``width``. Defaults to True.
        stale_store (str): What to do when an image's store file is stale,
            truncated or built from another file: 'fallback' (read the
            image file, one warning per file) or 'error'. Defaults to
            'fallback'.
        max_image_pixels (float): Refuse an image with more px (width x
            height, from the file's header before decoding), naming the
            file; ``float('inf')`` for no limit. Defaults to
            ``DEFAULT_MAX_IMAGE_PIXELS`` (2.5e9, as
            ``SniperChipDataset(max_image_pixels=...)``).
    """

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 file_client_args: Optional[dict] = None,
                 ignore_empty: bool = False,
                 *,
                 backend_args: Optional[dict] = None,
                 reduced_decode: bool = True,
                 crop_margin: int = 8,
                 tile_store: Optional[str] = None,
                 check_size: bool = True,
                 stale_store: str = 'fallback',
                 max_image_pixels: float = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        super().__init__(
            to_float32=to_float32,
            color_type=color_type,
            imdecode_backend=imdecode_backend,
            file_client_args=file_client_args,
            ignore_empty=ignore_empty,
            backend_args=backend_args)
        if crop_margin < 0:
            raise ValueError(f'crop_margin must be >= 0, got {crop_margin}')
        self.reduced_decode = reduced_decode
        self.crop_margin = int(crop_margin)
        self.check_size = check_size
        self.max_image_pixels = _positive_limit(max_image_pixels)
        self.tile_store = tile_store
        if stale_store not in ('fallback', 'error'):
            raise ValueError(f"stale_store must be 'fallback' or 'error', "
                             f'got {stale_store!r}')
        self.stale_store = stale_store
        self._stale_warned = set()
        self._store = None
        if tile_store is not None:
            self._store = TileStore(tile_store)
            if self._store.color_type != color_type:
                raise ValueError(
                    f'the tile store {tile_store!r} holds images decoded with '
                    f"color_type={self._store.color_type!r}, not "
                    f'{color_type!r}; rebuild it or change color_type')
        #: Bytes read from files or tiles by this process (for benchmarks).
        self.bytes_read = 0

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

    def _check(self, results: dict, filename: str,
               decoded_hw: Tuple[int, int]) -> None:
        check_image_pixels(filename, decoded_hw, self.max_image_pixels)
        expected = annotated_size(results)
        if self.check_size and expected is not None:
            check_image_size(filename, decoded_hw, expected, self.color_type)

    def _get_bytes(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            file_client = fileio.FileClient.infer_client(
                self.file_client_args, filename)
            img_bytes = file_client.get(filename)
        else:
            img_bytes = fileio.get(filename, backend_args=self.backend_args)
        self.bytes_read += len(img_bytes)
        return img_bytes

    def _load_from_store(self, results: dict, filename: str,
                         box_s: Optional[tuple]) -> tuple:
        tiled = self._store.open(filename)
        full_hw = tuple(int(v) for v in tiled.shape[:2])
        try:
            self._check(results, filename, full_hw)
        except ValueError as e:
            raise type(e)(f'{e} (size read from the tile store file '
                          f'{tiled.path})') from e
        before = tiled.bytes_read
        if box_s is None:
            img = tiled.read_region(0, 0, 0, full_hw[1], full_hw[0])
            region = None
        else:
            box, s = box_s
            level = level_for_scale(s, tiled.num_levels)
            shape = tiled.levels[level]['shape'][:2]
            x0, y0, x1, y1 = region_for_chip(box, level, shape,
                                             self.crop_margin)
            img = tiled.read_region(level, x0, y0, x1, y1)
            f = 2.0**-level
            region = ((x0 / f, y0 / f), f)
        self.bytes_read += tiled.bytes_read - before
        return img, full_hw, region

    def _load_reduced(self, results: dict, filename: str, img_bytes: bytes,
                      box_s: tuple) -> Optional[tuple]:
        """Reduced decode of the chip's region; None when it does not
        apply."""
        box, s = box_s
        d = next((d for d in _REDUCE_FACTORS if d * s <= 1 + 1e-9), None)
        if (d is None or self.color_type not in REDUCIBLE_COLOR_TYPES
                or not is_jpeg(img_bytes)):
            return None
        header = jpeg_header_size(img_bytes)
        if header is None:
            return None  # let the full decode report the problem
        img = decode_image(img_bytes, filename, self.color_type, reduce=d,
                           max_image_pixels=self.max_image_pixels)
        dec_hw = img.shape[:2]
        # libjpeg's reduced size is ceil(size / d); EXIF may transpose it.
        if dec_hw == expected_reduced_shape(header[0], header[1], d):
            full_hw = header
        elif dec_hw == expected_reduced_shape(header[1], header[0], d):
            full_hw = (header[1], header[0])
        else:
            raise ImageDecodeError(
                f'{filename}: reduced decode at 1/{d} gave {dec_hw} for a '
                f'JPEG header of {header} (h, w)')
        self._check(results, filename, full_hw)
        dec_h, dec_w = dec_hw
        x1, y1, x2, y2 = box
        m = self.crop_margin
        rx0 = min(max(int(math.floor(x1 / d)) - m, 0), dec_w - 1)
        ry0 = min(max(int(math.floor(y1 / d)) - m, 0), dec_h - 1)
        rx1 = max(min(int(math.ceil(x2 / d)) + m, dec_w), rx0 + 1)
        ry1 = max(min(int(math.ceil(y2 / d)) + m, dec_h), ry0 + 1)
        region = np.ascontiguousarray(img[ry0:ry1, rx0:rx1])
        return region, full_hw, ((float(rx0 * d), float(ry0 * d)), 1.0 / d)

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
        box_s = None if chip is None else self._chip_box_and_scale(chip)
        filename = results['img_path']

        loaded = None
        if self._store is not None:
            try:
                loaded = self._load_from_store(results, filename, box_s)
            except StaleTileError as e:
                if self.stale_store == 'error' or not osp.isfile(filename):
                    raise
                if filename not in self._stale_warned:
                    self._stale_warned.add(filename)
                    warnings.warn(f'{e}; reading the image file instead '
                                  '(slower) until the store is rebuilt with '
                                  'tools/dataset_converters/'
                                  'build_tile_store.py')
        if loaded is not None:
            img, full_hw, region = loaded
        else:
            try:
                img_bytes = self._get_bytes(filename)
                decoded = None
                if self.reduced_decode and box_s is not None:
                    decoded = self._load_reduced(results, filename, img_bytes,
                                                 box_s)
                if decoded is None:
                    img = decode_image(
                        img_bytes, filename, self.color_type,
                        self.imdecode_backend,
                        max_image_pixels=self.max_image_pixels)
                    full_hw, region = img.shape[:2], None
                else:
                    img, full_hw, region = decoded
            except (OSError, ImageDecodeError):
                if self.ignore_empty:
                    return None
                raise
            if region is None:
                self._check(results, filename, full_hw)

        if region is not None:
            results['sniper_chip_img_origin'] = region[0]
            results['sniper_chip_img_scale'] = region[1]
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = tuple(full_hw)
        results['ori_shape'] = tuple(full_hw)
        return results

    def __repr__(self) -> str:
        repr_str = super().__repr__()[:-1]
        repr_str += (f', reduced_decode={self.reduced_decode}, '
                     f'crop_margin={self.crop_margin}, '
                     f'tile_store={self.tile_store!r}, '
                     f'check_size={self.check_size}, '
                     f'max_image_pixels={self.max_image_pixels:.4g})')
        return repr_str
