# Copyright (c) mmsniper contributors. All rights reserved.
"""Test-time reading of images too large to decode: window by window from a
tiled TIFF (a plain tiled BigTIFF, with or without pyramid levels, or a tile
store file of ``tools/dataset_converters/build_tile_store.py``).

:class:`~mmsniper.datasets.transforms.LoadSniperLazyImage` does not decode
such an image: it packs a 1 x 1 placeholder and a handle (``results
['sniper_lazy_image']``, see :func:`lazy_handle`) with the full size as
``img_shape`` / ``ori_shape``; :class:`~mmsniper.models.SniperTTAModel`
then reads each view (one scale's whole image or tile) with
:func:`read_view`, from the coarsest pyramid level that still has the
view's resolution, so that the whole image is never in memory.

Pixels: at level 0 and within ``max_source_pixels`` a view is cut and
resized exactly as the whole-image path does
(:func:`mmsniper.utils.image_ops.crop_resize`), so the
detector sees the same pixels. From a coarser level ``k`` (or in row bands
when the level-0 region is too large to hold), the same output grid is
sampled by ``cv2.warpAffine`` with the same pixel-centre geometry (output px
``u`` <- original px ``x1 + (u + 0.5) / sx``), level ``k`` pixel ``j``
covering original px ``[j * 2**k, (j + 1) * 2**k)``: the pixel values
differ slightly from a resize of the full image (a 2 x 2 block mean per
level instead of bilinear sampling of the original px), the geometry not.
"""
import math
import os
import os.path as osp
from collections import OrderedDict
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from mmsniper.utils.image_ops import crop_resize
from .tile_store import (StaleTileError, TiledImage, _DESCRIPTION_KEY,
                         level_for_scale)

__all__ = [
    'LazyTiledImage', 'is_tiled_tiff', 'lazy_handle', 'open_lazy_image',
    'read_view', 'LAZY_KEY', 'TIFF_EXTENSIONS'
]

#: ``results`` / metainfo key of the handle.
LAZY_KEY = 'sniper_lazy_image'
TIFF_EXTENSIONS = ('.tif', '.tiff')
#: Source px (of one level) held at once by :func:`read_view`.
DEFAULT_MAX_SOURCE_PIXELS = 2**25

_INTERP = dict(
    nearest=cv2.INTER_NEAREST,
    bilinear=cv2.INTER_LINEAR,
    bicubic=cv2.INTER_CUBIC,
    area=cv2.INTER_LINEAR,  # the pyramid level is already a block mean
    lanczos=cv2.INTER_LANCZOS4)


def is_tiled_tiff(path: str) -> bool:
    """Whether ``path`` is a ``.tif``/``.tiff`` file whose first page is
    tiled (read from its header only)."""
    if not str(path).lower().endswith(TIFF_EXTENSIONS) or not osp.isfile(
            path):
        return False
    import tifffile
    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.pages[0].is_tiled)
    except Exception:
        return False  # not a TIFF after all: the decoder names the problem


class LazyTiledImage(TiledImage):
    """Any tiled TIFF open for region reads, as :class:`TiledImage`.

    Level 0 is the first page. Pyramid levels are the following pages (or
    the SubIFD levels of the first series) that halve it (each side
    ``ceil`` or ``floor`` of the previous one / 2), are tiled and have its
    dtype and channels; the chain stops at the first page that does not,
    so a TIFF without levels has one level. ``channels`` is ``'bgr'`` for
    a tile store file (stored as mmcv decodes, BGR), ``'rgb'`` for a 3 or
    4-sample RGB TIFF, ``'gray'`` for one sample.

    Args:
        path (str): The TIFF file.
    """

    def __init__(self, path: str) -> None:  # noqa: C901
        import tifffile
        self.path = path
        self._fd = None
        self.bytes_read = 0
        try:
            self._tif = tifffile.TiffFile(path)
        except Exception as e:
            raise StaleTileError(f'{path}: not a readable TIFF '
                                 f'({type(e).__name__}: {e})') from e
        try:
            self._open_levels()
        except Exception:
            self._tif.close()
            raise
        self._fd = os.open(path, os.O_RDONLY)

    def _open_levels(self) -> None:
        path = self.path
        pages = list(self._tif.pages)
        series = self._tif.series
        if series and len(series[0].levels) > 1:
            # SubIFD pyramids (e.g. OME-TIFF): one page per level
            pages = [lvl.keyframe for lvl in series[0].levels]
        first = pages[0]
        if not first.is_tiled:
            raise StaleTileError(
                f'{path}: not a tiled TIFF (strips); it cannot be read '
                'window by window: convert it with build_tile_store.py')
        try:
            import json
            desc = json.loads(first.description or '{}')
        except ValueError:
            desc = {}
        self.source = (desc.get(_DESCRIPTION_KEY, {}) if isinstance(
            desc, dict) else {})
        self.is_store_file = isinstance(desc, dict) and (_DESCRIPTION_KEY
                                                         in desc)
        samples = first.shape[2] if len(first.shape) == 3 else 1
        if len(first.shape) not in (2, 3) or first.dtype != np.uint8:
            raise StaleTileError(
                f'{path}: only uint8 (H, W) or (H, W, C) TIFFs are read '
                f'lazily, got shape {first.shape} {first.dtype}')
        orientation = int(getattr(first, 'orientation', 1) or 1)
        if orientation != 1 and not self.is_store_file:
            raise StaleTileError(
                f'{path}: TIFF orientation {orientation} is not read '
                'lazily; convert it with build_tile_store.py')
        if self.is_store_file:
            self.channels = 'bgr' if samples >= 3 else 'gray'
        elif samples == 1:
            self.channels = 'gray'
        elif samples in (3, 4) and int(first.photometric) == 2:  # RGB
            self.channels = 'rgb'
        else:
            raise StaleTileError(
                f'{path}: {samples} samples with photometric '
                f'{first.photometric!s} are not read lazily (1 gray, or 3-4 '
                'RGB samples)')
        file_size = os.fstat(self._tif.filehandle.fileno()).st_size
        height, width = first.shape[:2]
        self.levels = []
        for k, page in enumerate(pages):
            if k:
                lh, lw = page.shape[:2]
                halves = (lambda n: (n // 2, -(-n // 2)))
                if (not page.is_tiled or page.dtype != first.dtype
                        or page.shape[2:] != first.shape[2:]
                        or lh not in halves(height)
                        or lw not in halves(width)):
                    break
                height, width = lh, lw
            info = dict(
                page=page,
                shape=page.shape,
                tile=(page.tilelength, page.tilewidth),
                offsets=np.asarray(page.dataoffsets, np.int64),
                counts=np.asarray(page.databytecounts, np.int64))
            th, tw = info['tile']
            ntiles = -(-height // th) * -(-width // tw)
            if (len(info['offsets']) < ntiles
                    or (info['counts'][:ntiles] <= 0).any()
                    or (info['offsets'][:ntiles] + info['counts'][:ntiles]
                        ).max() > file_size):
                raise StaleTileError(
                    f'{path}: truncated or incomplete tiled TIFF (page {k})')
            self.levels.append(info)


_OPEN: 'OrderedDict[Tuple[str, int], LazyTiledImage]' = OrderedDict()
_MAX_OPEN = 4


def open_lazy_image(handle: dict) -> LazyTiledImage:
    """The TIFF of a handle, open (a few per process are kept open; a file
    changed since is reopened)."""
    path = handle['path']
    st = os.stat(path)
    key = (path, os.getpid(), int(st.st_size), int(st.st_mtime_ns))
    img = _OPEN.get(key)
    if img is None:
        img = LazyTiledImage(path)
        _OPEN[key] = img
        while len(_OPEN) > _MAX_OPEN:
            _OPEN.popitem(last=False)[1].close()
    else:
        _OPEN.move_to_end(key)
    return img


def lazy_handle(tiled: LazyTiledImage, img_path: str,
                color_type: str) -> dict:
    """The handle a loader packs: ``path`` (the TIFF), ``img_path``,
    ``height``, ``width``, ``channels`` (as stored: 'bgr', 'rgb', 'gray')
    and ``out_channels`` (1 or 3, as ``color_type`` decodes: 3 BGR for
    'color', 1 for 'grayscale')."""
    gray = color_type.startswith('grayscale')
    if not gray and not color_type.startswith('color'):
        raise ValueError(f'{img_path}: color_type {color_type!r} is not read '
                         "lazily ('color' or 'grayscale')")
    if gray and tiled.channels != 'gray':
        raise ValueError(f'{img_path}: a {tiled.channels} TIFF with '
                         "color_type='grayscale' is not read lazily")
    height, width = (int(v) for v in tiled.shape[:2])
    return dict(
        path=tiled.path,
        img_path=img_path,
        height=height,
        width=width,
        channels=tiled.channels,
        out_channels=1 if gray else 3)


def _to_planes(img: np.ndarray, channels: str,
               out_channels: int) -> np.ndarray:
    """``(h, w[, c])`` as stored -> ``(out_channels, h, w)`` as mmcv
    decodes it (BGR, or gray), contiguous."""
    if img.ndim == 2:
        img = img[..., None]
    if channels == 'rgb':
        img = img[..., 2::-1]  # drop alpha, RGB -> BGR as cv2.imread
    elif img.shape[2] > 3:
        img = img[..., :3]
    if out_channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def _warp(tiled: LazyTiledImage, level: int, region: Sequence[float],
          out_size: Tuple[int, int], scale: Tuple[float, float], flag: int,
          max_source_pixels: int) -> np.ndarray:
    """Sample the view's output grid from ``level`` in row bands."""
    out_w, out_h = out_size
    lh, lw = tiled.levels[level]['shape'][:2]
    f = 2.0**-level
    x1, y1 = float(region[0]), float(region[1])
    ax, ay = f / scale[0], f / scale[1]
    bx = (x1 + 0.5 / scale[0]) * f - 0.5
    by = (y1 + 0.5 / scale[1]) * f - 0.5
    pad = 3  # bicubic / lanczos neighbours
    c0 = min(max(int(math.floor(bx)) - pad, 0), lw - 1)
    c1 = max(min(int(math.ceil(bx + ax * (out_w - 1))) + pad + 1, lw),
             c0 + 1)
    rows_per_band = max(
        1, int((max_source_pixels / (c1 - c0) - 2 * pad - 2) / max(ay, 1e-9)))
    out = None
    for v0 in range(0, out_h, rows_per_band):
        v1 = min(v0 + rows_per_band, out_h)
        r0 = min(max(int(math.floor(by + ay * v0)) - pad, 0), lh - 1)
        r1 = max(min(int(math.ceil(by + ay * (v1 - 1))) + pad + 1, lh),
                 r0 + 1)
        win = tiled.read_region(level, c0, r0, c1, r1)
        mat = np.array([[ax, 0.0, bx - c0], [0.0, ay, by + ay * v0 - r0]])
        band = cv2.warpAffine(
            win,
            mat, (out_w, v1 - v0),
            flags=flag | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE)
        if band.ndim == 2:
            band = band[..., None]
        if out is None:
            out = np.empty((out_h, out_w, band.shape[2]), dtype=band.dtype)
        out[v0:v1] = band
    return out


def read_view(handle: dict,
              region: Sequence[float],
              out_size: Sequence[int],
              interpolation: str = 'bilinear',
              max_source_pixels: int = DEFAULT_MAX_SOURCE_PIXELS,
              level: Optional[int] = None) -> np.ndarray:
    """One view of a lazy image: ``region`` (orig px) resized to
    ``out_size``, as ``crop_resize`` does on the decoded image.

    Args:
        handle (dict): From :func:`lazy_handle`.
        region (Sequence[float]): ``(x1, y1, x2, y2)``, integer orig px.
        out_size (Sequence[int]): ``(w, h)`` of the view.
        interpolation (str): cv2 interpolation name.
        max_source_pixels (int): Level px held at once; a larger level-0
            region is sampled in row bands.
        level (int, optional): Force a pyramid level (tests); None: the
            coarsest level ``k`` with ``2**-k`` >= the view's scale.

    Returns:
        ndarray: ``(C, h, w)`` uint8, BGR (or gray) as mmcv decodes.
    """
    tiled = open_lazy_image(handle)
    x1, y1, x2, y2 = (int(v) for v in region)
    out_w, out_h = (int(v) for v in out_size)
    scale = (out_w / (x2 - x1), out_h / (y2 - y1))
    if level is None:
        level = level_for_scale(max(scale), tiled.num_levels)
    channels, out_ch = handle['channels'], handle['out_channels']
    if level == 0 and (x2 - x1) * (y2 - y1) <= max_source_pixels:
        planes = _to_planes(
            tiled.read_region(0, x1, y1, x2, y2), channels, out_ch)
        return crop_resize(planes, (0, 0, x2 - x1, y2 - y1), (out_w, out_h),
                           interpolation).numpy()
    img = _warp(tiled, level, (x1, y1, x2, y2), (out_w, out_h), scale,
                _INTERP[interpolation], max_source_pixels)
    return _to_planes(img, channels, out_ch)
