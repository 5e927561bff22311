# Copyright (c) mmsniper contributors. All rights reserved.
"""Image decoding with errors that name the file, and size checks.

Shared by :class:`~mmsniper.datasets.transforms.LoadSniperChipFromFile`,
the tile store (:mod:`mmsniper.datasets.tile_store`) and
``tools/analysis_tools/check_images.py``, so that every decode path refuses
the same files with the same message:

- empty, garbage (undecodable) and truncated files raise
  :class:`ImageDecodeError` naming the file. cv2 decodes a JPEG that lacks
  its end-of-image marker silently (the missing rows come out grey), so a
  JPEG whose last entropy-coded segment is not followed by an EOI marker is
  refused before decoding; PIL's "image file is truncated" is wrapped;
- an image over PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``
  px, errors from twice that) or OpenCV's (``OPENCV_IO_MAX_IMAGE_PIXELS``,
  default 2**30 px) raises :class:`ImageDecodeError` naming the file, its
  size and the setting that allows it;
- :func:`check_image_size` compares a decoded size with the annotation's
  ``height``/``width`` and raises :class:`ImageSizeError` naming the file and
  both sizes.

Decoding follows mmcv: ``color_type`` is the ``flag`` of
``mmcv.imfrombytes`` ('color' applies the EXIF orientation, as cv2 and
mmcv's pillow backend both do; '..._ignore_orientation' does not), channels
in BGR order.
"""
import struct
from typing import Optional, Tuple

import cv2
import mmcv
import numpy as np

#: Reduced-decode flags of cv2 per ``color_type`` and factor.
_CV2_REDUCED = {
    'color': {
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8
    },
    'grayscale': {
        2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
        4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
        8: cv2.IMREAD_REDUCED_GRAYSCALE_8
    },
}
REDUCIBLE_COLOR_TYPES = ('color', 'grayscale', 'color_ignore_orientation',
                         'grayscale_ignore_orientation')
_CV2_DEFAULT_MAX_PIXELS = 1 << 30
# JPEG start-of-frame markers (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageDecodeError(OSError):
    """An image file could not be decoded (the message names the file)."""


class ImageSizeError(ValueError):
    """A decoded image size differs from the annotated one."""


def is_jpeg(img_bytes: bytes) -> bool:
    return img_bytes[:3] == b'\xff\xd8\xff'


def jpeg_header_size(img_bytes: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) stored in a JPEG's frame header (before any EXIF
    rotation), or None when no frame header is found."""
    pos, n = 2, len(img_bytes)
    while pos + 4 <= n:
        if img_bytes[pos] != 0xFF:
            return None
        marker = img_bytes[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length, ) = struct.unpack('>H', img_bytes[pos + 2:pos + 4])
        if marker in _SOF_MARKERS:
            if pos + 9 > n:
                return None
            h, w = struct.unpack('>HH', img_bytes[pos + 5:pos + 9])
            return h, w
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def jpeg_is_truncated(img_bytes: bytes) -> bool:
    """Whether a JPEG lacks the end-of-image marker after its last scan.

    Inside entropy-coded data 0xFF is always followed by 0x00 or a restart
    marker, so an EOI (FFD9) after the last SOS (FFDA) is what a complete
    file has; data appended after the EOI is allowed.
    """
    last_sos = img_bytes.rfind(b'\xff\xda')
    return last_sos < 0 or img_bytes.rfind(b'\xff\xd9') < last_sos


def _cv2_max_pixels() -> int:
    import os
    try:
        return int(
            os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS',
                           _CV2_DEFAULT_MAX_PIXELS))
    except ValueError:
        return _CV2_DEFAULT_MAX_PIXELS


def _too_big_message(filename: str, size: Optional[Tuple[int, int]],
                     backend: str) -> str:
    from PIL import Image
    dims = f'{size[1]} x {size[0]} px (w x h)' if size else 'too large'
    if backend == 'pillow':
        return (f'{filename}: image is {dims}, over PIL\'s decompression-bomb '
                f'limit (PIL.Image.MAX_IMAGE_PIXELS = '
                f'{Image.MAX_IMAGE_PIXELS}). To allow it, set '
                '`PIL.Image.MAX_IMAGE_PIXELS = None` (or a larger number) in '
                'a module that your config imports through custom_imports, '
                "or load with imdecode_backend='cv2'; for images this large a "
                'tile store (tools/dataset_converters/build_tile_store.py) '
                'keeps loader memory bounded.')
    return (f'{filename}: image is {dims}, over OpenCV\'s limit of '
            f'{_cv2_max_pixels()} px. To allow it, set the environment '
            'variable OPENCV_IO_MAX_IMAGE_PIXELS to a larger number before '
            'starting; for images this large a tile store '
            '(tools/dataset_converters/build_tile_store.py) keeps loader '
            'memory bounded.')


def decode_image(img_bytes: bytes,
                 filename: str,
                 color_type: str = 'color',
                 backend: str = 'cv2',
                 reduce: int = 1) -> np.ndarray:
    """Decode like ``mmcv.imfrombytes`` (BGR), raising
    :class:`ImageDecodeError` naming ``filename`` for anything unreadable.

    Args:
        img_bytes (bytes): File content.
        filename (str): Used in error messages.
        color_type (str): ``flag`` of ``mmcv.imfrombytes``.
        backend (str): ``backend`` of ``mmcv.imfrombytes`` for a full decode.
        reduce (int): 1, or 2, 4, 8 for cv2's reduced JPEG decoding
            (``cv2.IMREAD_REDUCED_*``: libjpeg DCT scaling, output size
            ``ceil(size / reduce)``, EXIF orientation applied as for
            'color'). Only for JPEG files and ``REDUCIBLE_COLOR_TYPES``.

    Returns:
        np.ndarray: The decoded image.
    """
    if len(img_bytes) == 0:
        raise ImageDecodeError(f'{filename}: empty file (0 bytes)')
    jpeg = is_jpeg(img_bytes)
    if jpeg and jpeg_is_truncated(img_bytes):
        raise ImageDecodeError(
            f'{filename}: truncated JPEG (no end-of-image marker after the '
            f'last scan; {len(img_bytes)} bytes)')
    header = jpeg_header_size(img_bytes) if jpeg else None
    if header is not None and (backend == 'cv2' or reduce > 1):
        if header[0] * header[1] > _cv2_max_pixels():
            raise ImageDecodeError(_too_big_message(filename, header, 'cv2'))
    if reduce > 1:
        if not jpeg or color_type not in REDUCIBLE_COLOR_TYPES:
            raise ValueError(f'reduced decoding needs a JPEG and one of '
                             f'{REDUCIBLE_COLOR_TYPES}')
        base = color_type.replace('_ignore_orientation', '')
        flag = _CV2_REDUCED[base][reduce]
        if color_type.endswith('_ignore_orientation'):
            flag |= cv2.IMREAD_IGNORE_ORIENTATION
        try:
            img = cv2.imdecode(np.frombuffer(img_bytes, np.uint8), flag)
        except cv2.error as e:
            raise ImageDecodeError(f'{filename}: cannot decode: {e}') from e
    else:
        try:
            img = mmcv.imfrombytes(img_bytes, flag=color_type, backend=backend)
        except Exception as e:
            from PIL import Image
            if isinstance(e, Image.DecompressionBombError):
                raise ImageDecodeError(
                    _too_big_message(filename, header, 'pillow')) from e
            raise ImageDecodeError(
                f'{filename}: cannot decode ({type(e).__name__}: {e})') from e
    if img is None or img.size == 0:
        raise ImageDecodeError(
            f'{filename}: cannot decode ({len(img_bytes)} bytes; not an image '
            f'in a format {backend} reads, corrupt, or over '
            'OPENCV_IO_MAX_IMAGE_PIXELS)')
    return img


def expected_reduced_shape(height: int, width: int,
                           reduce: int) -> Tuple[int, int]:
    """Size of a ``reduce``-times reduced JPEG decode (libjpeg rounds up)."""
    return -(-height // reduce), -(-width // reduce)


def check_image_size(filename: str,
                     decoded_hw: Tuple[int, int],
                     annotated_hw: Tuple[int, int],
                     color_type: str = 'color') -> None:
    """Raise :class:`ImageSizeError` when the decoded (h, w) differs from the
    annotation's ``height``/``width``."""
    dh, dw = (int(v) for v in decoded_hw)
    ah, aw = (int(v) for v in annotated_hw)
    if (dh, dw) == (ah, aw):
        return
    hint = ''
    if (dh, dw) == (aw, ah):
        if color_type.endswith('_ignore_orientation'):
            hint = (' The file is transposed relative to the annotation.')
        else:
            hint = (' The file is transposed relative to the annotation: '
                    'it probably has an EXIF orientation, which mmcv applies '
                    "with color_type='color'; if the annotation is in the "
                    "stored orientation, use color_type="
                    f"'{color_type}_ignore_orientation', else fix the "
                    'annotation or the file.')
    raise ImageSizeError(
        f'{filename}: decoded image is {dw} x {dh} px (w x h) but the '
        f'annotation says width={aw}, height={ah}; chips would show wrong '
        f'pixels under the boxes.{hint}')


def annotated_size(results: dict) -> Optional[Tuple[int, int]]:
    """(height, width) from a data info dict, or None when absent."""
    h, w = results.get('height'), results.get('width')
    if h is None or w is None:
        return None
    return int(h), int(w)
