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
- with ``max_image_pixels`` (the loaders' limit, by default
  :data:`DEFAULT_MAX_IMAGE_PIXELS`, the training dataset's), an image whose
  header declares more pixels raises :class:`ImageDecodeError` naming the
  file before anything is decoded (:func:`image_header_size` reads the
  JPEG frame header, the PNG IHDR, the BMP header and, for other formats,
  only the header through PIL's format plugins; an image whose header
  cannot be read is checked after decoding);
- a Huffman-coded JPEG with fewer bytes than any complete JPEG of its
  declared size can have (a forged or truncated header,
  :func:`jpeg_min_bytes`) raises :class:`ImageDecodeError` naming the file
  before decoding: libjpeg would fill the missing rows with grey, e.g. a
  1 KB file declaring 32000 x 32000 px would decode to 3 GB of grey;
- :func:`check_image_size` compares a decoded size with the annotation's
  ``height``/``width`` and raises :class:`ImageSizeError` naming the file and
  both sizes.

Decoding follows mmcv: ``color_type`` is the ``flag`` of
``mmcv.imfrombytes`` ('color' applies the EXIF orientation, as cv2 and
mmcv's pillow backend both do; '..._ignore_orientation' does not), channels
in BGR order.
"""
import io
import math
import struct
import warnings
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
#: Largest declared image (width x height) accepted by default: 2.5e9 px,
#: e.g. a 50,000 x 50,000 aerial mosaic; the default of both
#: ``SniperChipDataset(max_image_pixels=...)`` and
#: ``LoadSniperChipFromFile(max_image_pixels=...)``.
DEFAULT_MAX_IMAGE_PIXELS = 50_000 * 50_000
# Huffman-coded JPEG frames (baseline, extended, progressive, lossless):
# every 8 x 8 block (lossless: every sample) of a complete scan costs at
# least one bit. Arithmetic-coded frames (C9-CB) can be smaller.
_HUFFMAN_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3))
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
    frame = _jpeg_frame(img_bytes)
    return None if frame is None else frame[1:3]


def _jpeg_frame(img_bytes: bytes) -> Optional[tuple]:
    """(SOF marker, height, width, max horizontal sampling, max vertical
    sampling) of a JPEG's first frame header, or None when none is found
    (the samplings are 1 when the component list is cut off)."""
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
            hmax = vmax = 1
            if pos + 10 <= n:
                comps = img_bytes[pos + 10:pos + 10 + 3 * img_bytes[pos + 9]]
                for c in range(1, len(comps) - 1, 3):
                    hmax = max(hmax, comps[c] >> 4)
                    vmax = max(vmax, comps[c] & 0x0F)
            return marker, h, w, hmax, vmax
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def jpeg_min_bytes(img_bytes: bytes) -> int:
    """A lower bound on the size of a complete JPEG with this frame header.

    In a Huffman-coded frame (SOF0-SOF3) every 8 x 8 block of a scan, and
    at least one block per MCU, costs one bit or more (a DC difference
    code; sequential scans add an end-of-block code per block), so a file
    with ``n`` bytes holds at most ``8 n`` MCUs. The bound counts one bit
    per MCU of ``8 Hmax x 8 Vmax`` px, a factor of 6 to 24 below what any
    encoder writes for a flat image; 0 when there is no such frame header
    (arithmetic coding, other formats, a height set by a DNL marker).
    """
    frame = _jpeg_frame(img_bytes)
    if frame is None or frame[0] not in _HUFFMAN_SOF_MARKERS:
        return 0
    _, h, w, hmax, vmax = frame
    mcus = math.ceil(w / (8 * hmax)) * math.ceil(h / (8 * vmax))
    return mcus // 8


def png_header_size(img_bytes: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) in a PNG's IHDR chunk, or None if not a PNG."""
    if (img_bytes[:8] != b'\x89PNG\r\n\x1a\n' or len(img_bytes) < 24
            or img_bytes[12:16] != b'IHDR'):
        return None
    w, h = struct.unpack('>II', img_bytes[16:24])
    return h, w


def _bmp_header_size(img_bytes: bytes) -> Optional[Tuple[int, int]]:
    if img_bytes[:2] != b'BM' or len(img_bytes) < 26:
        return None
    (dib, ) = struct.unpack('<I', img_bytes[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        w, h = struct.unpack('<HH', img_bytes[18:22])
    else:
        w, h = struct.unpack('<ii', img_bytes[18:26])
    return abs(h), abs(w)


def _pil_header_size(img_bytes: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) from the header as PIL's format plugins read it.

    ``PIL.Image.open`` would refuse an image over its decompression-bomb
    limit without saying its size, so the plugins are called as it calls
    them, without that check; nothing is decoded.
    """
    from PIL import Image
    try:
        Image.init()
        plugins = [Image.OPEN[fmt] for fmt in Image.ID if fmt in Image.OPEN]
    except Exception:
        return None
    prefix = img_bytes[:16]
    for factory, accept in plugins:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                if accept is not None:
                    ok = accept(prefix)
                    if isinstance(ok, str) or not ok:
                        continue
                w, h = factory(io.BytesIO(img_bytes), '').size
            return int(h), int(w)
        except Exception:
            continue
    return None


def image_header_size(img_bytes: bytes) -> Optional[Tuple[int, int]]:
    """(height, width) that an image file declares, read from its header
    only (before any EXIF rotation), or None when it cannot be read.

    JPEG (frame header), PNG (IHDR) and BMP are parsed here; other formats
    through PIL's format plugins (:func:`_pil_header_size`).
    """
    if is_jpeg(img_bytes):
        return jpeg_header_size(img_bytes)
    for read in (png_header_size, _bmp_header_size, _pil_header_size):
        size = read(img_bytes)
        if size is not None:
            return size
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


def _over_limit_message(filename: str, size: Tuple[int, int],
                        max_image_pixels: float, declared: bool) -> str:
    h, w = size
    what = 'its header declares' if declared else 'it decodes to'
    when = ' (not decoded)' if declared else ''
    return (f'{filename}: {what} {w} x {h} px (w x h) = {w * h:.4g} px, '
            f'above max_image_pixels={max_image_pixels:.4g} of the loader '
            f'(LoadSniperChipFromFile){when}. If the image really is that '
            "large, raise max_image_pixels in the pipeline's "
            'LoadSniperChipFromFile step')


def check_image_pixels(filename: str, size: Optional[Tuple[int, int]],
                       max_image_pixels: Optional[float],
                       declared: bool = True) -> None:
    """Raise :class:`ImageDecodeError` naming the file when ``size`` (h, w)
    has more than ``max_image_pixels`` px (no check for None)."""
    if max_image_pixels is None or size is None:
        return
    if float(size[0]) * float(size[1]) > max_image_pixels:
        raise ImageDecodeError(
            _over_limit_message(filename, size, max_image_pixels, declared))


def decode_image(img_bytes: bytes,
                 filename: str,
                 color_type: str = 'color',
                 backend: str = 'cv2',
                 reduce: int = 1,
                 max_image_pixels: Optional[float] = None) -> np.ndarray:
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
        max_image_pixels (float, optional): Refuse an image whose header
            (:func:`image_header_size`; else the decoded image) has more
            px. None: no limit but OpenCV's and PIL's. Defaults to None.

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
    declared = header
    if max_image_pixels is not None and not jpeg:
        declared = image_header_size(img_bytes)
    check_image_pixels(filename, declared, max_image_pixels)
    if jpeg and len(img_bytes) < jpeg_min_bytes(img_bytes):
        h, w = header
        raise ImageDecodeError(
            f'{filename}: the JPEG header declares {w} x {h} px (w x h), '
            f'but the file has only {len(img_bytes)} bytes, fewer than any '
            f'complete JPEG of that size ({jpeg_min_bytes(img_bytes)} '
            'bytes at least): a forged or truncated header; libjpeg would '
            'decode the missing rows as grey')
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
    if declared is None:
        check_image_pixels(filename, img.shape[:2], max_image_pixels,
                           declared=False)
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
