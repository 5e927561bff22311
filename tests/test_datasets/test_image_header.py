# Copyright (c) mmsniper contributors. All rights reserved.
"""Issue 19 item 3: images that lie about their size.

The pixel limit is read from the file header before anything is decoded,
a JPEG too short for the size it declares is refused, and every error names
the file, on the loader that the test pipelines now use as well.
"""
import io
import os.path as osp
import struct
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from mmsniper.datasets import image_io
from mmsniper.datasets.image_io import (DEFAULT_MAX_IMAGE_PIXELS,
                                        ImageDecodeError, decode_image,
                                        image_header_size, jpeg_min_bytes)
from mmsniper.datasets.transforms import LoadSniperChipFromFile

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
from sniper_test_utils import (LYING_IMAGE_ERRORS,  # noqa: E402
                               forge_jpeg_size, write_lying_images)


def _small(h=8, w=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def liars(tmp_path):
    return write_lying_images(tmp_path)


@pytest.fixture
def no_decode(monkeypatch):
    """Fail the test if anything is decoded."""

    def refuse(*args, **kwargs):
        raise AssertionError('decoded')

    monkeypatch.setattr(image_io.mmcv, 'imfrombytes', refuse)
    monkeypatch.setattr(image_io.cv2, 'imdecode', refuse)


def test_header_sizes_of_every_format(tmp_path):
    img = _small(37, 53)
    encoded = {
        ext: cv2.imencode(ext, img)[1].tobytes()
        for ext in ('.jpg', '.png', '.bmp', '.tif', '.webp', '.ppm')
    }
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, 'GIF')
    encoded['.gif'] = buf.getvalue()
    for ext, data in encoded.items():
        assert image_header_size(data) == (37, 53), ext
    assert image_header_size(b'') is None
    assert image_header_size(b'not an image' * 10) is None
    # a BMP stored top-down has a negative height
    bmp = bytearray(encoded['.bmp'])
    bmp[22:26] = struct.pack('<i', -37)
    assert image_header_size(bytes(bmp)) == (37, 53)


def test_header_read_ignores_pils_bomb_limit(monkeypatch):
    """PIL.Image.open refuses a TIFF over twice its decompression-bomb
    limit without saying its size; the header read still gets it."""
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 10)
    tif = cv2.imencode('.tif', _small(30, 40))[1].tobytes()
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(tif))
    assert image_header_size(tif) == (30, 40)


@pytest.mark.parametrize('s', [None, 1.0, 0.25])
def test_the_issues_files_are_refused_before_decoding(liars, no_decode, s):
    """Before: mmcv's LoadImageFromFile (the test pipeline's loader)
    decoded the 32000 x 32000 JPEG to 3 GB of grey, and raised raw OpenCV
    assertions without a file name for the others."""
    expected = LYING_IMAGE_ERRORS
    for name, path in liars.items():
        results = dict(img_path=path)
        if s is not None:  # training: a chip (full or reduced decode)
            results['sniper_chip'] = dict(box=(0., 0., 100., 100.),
                                          scale_factor=s)
        with pytest.raises(ImageDecodeError) as info:
            LoadSniperChipFromFile()(results)
        msg = str(info.value)
        assert path in msg and expected[name] in msg, msg
        if 'max_image_pixels' in expected[name]:
            assert '60000 x 60000 px' in msg and 'not decoded' in msg


def test_limit_is_configurable(tmp_path):
    img = _small(200, 300)
    for ext in ('.jpg', '.png', '.tif'):
        path = str(tmp_path / f'img{ext}')
        cv2.imwrite(path, img)
        with pytest.raises(ImageDecodeError, match=r'300 x 200 px') as info:
            LoadSniperChipFromFile(max_image_pixels=59_999)(
                dict(img_path=path))
        assert path in str(info.value)
        out = LoadSniperChipFromFile(max_image_pixels=60_000)(
            dict(img_path=path))
        assert out['img'].shape[:2] == out['ori_shape'] == (200, 300)
        out = LoadSniperChipFromFile(max_image_pixels=float('inf'))(
            dict(img_path=path))
        assert out['img'].shape[:2] == (200, 300)


def test_limit_applies_to_the_decoded_image_when_the_header_is_unknown(
        tmp_path, monkeypatch):
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, _small(200, 300))
    monkeypatch.setattr(image_io, 'image_header_size', lambda data: None)
    with pytest.raises(ImageDecodeError, match='decodes to 300 x 200 px'):
        LoadSniperChipFromFile(max_image_pixels=1000)(dict(img_path=path))
    assert LoadSniperChipFromFile(max_image_pixels=60_000)(
        dict(img_path=path))['img'].shape[:2] == (200, 300)


@pytest.mark.parametrize('bad', [0, -1, float('nan'), None, 'big', True])
def test_bad_limit_is_refused(bad):
    with pytest.raises(ValueError, match='max_image_pixels'):
        LoadSniperChipFromFile(max_image_pixels=bad)


def test_default_limit_is_the_training_datasets():
    import inspect

    from mmsniper.datasets import SniperChipDataset
    default = inspect.signature(
        SniperChipDataset.__init__).parameters['max_image_pixels'].default
    assert default == DEFAULT_MAX_IMAGE_PIXELS == 2.5e9
    assert LoadSniperChipFromFile().max_image_pixels == 2.5e9


@pytest.mark.parametrize('progressive', [False, True])
@pytest.mark.parametrize('subsampling', [0, 2])
@pytest.mark.parametrize('mode', ['RGB', 'L'])
def test_complete_jpegs_pass_the_length_bound(progressive, subsampling,
                                              mode):
    """The bound is below every complete JPEG: flat images (the smallest
    per pixel), the lowest quality, optimised Huffman tables."""
    for h, w in ((1, 1), (9, 17), (480, 640), (1000, 3)):
        arr = np.zeros((h, w, 3), np.uint8)
        img = Image.fromarray(arr).convert(mode)
        for quality in (1, 95):
            buf = io.BytesIO()
            img.save(buf, 'JPEG', quality=quality, optimize=True,
                     progressive=progressive, subsampling=subsampling)
            data = buf.getvalue()
            assert len(data) >= jpeg_min_bytes(data) * 2, (h, w)
            assert decode_image(data, 'x.jpg').shape[:2] == (h, w)


def test_length_bound():
    jpg = cv2.imencode('.jpg', _small())[1].tobytes()  # 4:2:0, 16 px MCUs
    forged = forge_jpeg_size(jpg, 1600, 3200)
    assert jpeg_min_bytes(forged) == 100 * 200 // 8
    assert jpeg_min_bytes(b'\x89PNG') == 0
    # arithmetic coding (SOF9) has no per-block minimum: not bounded
    assert jpeg_min_bytes(forged.replace(b'\xff\xc0', b'\xff\xc9', 1)) == 0
    with pytest.raises(ImageDecodeError, match='x.jpg.*forged'):
        decode_image(forged, 'x.jpg')
    # just long enough for the bound: goes on to the decoder
    padded = forged[:-2] + b'\x00' * 2500 + forged[-2:]
    assert len(padded) >= jpeg_min_bytes(padded)
    try:
        decode_image(padded, 'x.jpg')
    except ImageDecodeError as e:
        assert 'forged' not in str(e)


def test_tiff_limit_is_read_from_the_header(tmp_path, no_decode):
    path = str(tmp_path / 'big.tif')
    with open(path, 'wb') as f:
        f.write(cv2.imencode('.tif', _small(50, 60))[1].tobytes())
    with pytest.raises(ImageDecodeError, match=osp.basename(path)):
        LoadSniperChipFromFile(max_image_pixels=100)(dict(img_path=path))
