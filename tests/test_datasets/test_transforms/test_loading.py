# Copyright (c) mmsniper contributors. All rights reserved.
import copy
import os.path as osp

import cv2
import mmcv
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from PIL import Image

from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import TRANSFORMS
from mmsniper.datasets.image_io import ImageDecodeError, ImageSizeError
from mmsniper.datasets.transforms import LoadSniperChipFromFile, SniperChipCrop

H, W = 1200, 1600


def smooth_pattern(h=H, w=W):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([
        128 + 100 * np.sin(xx / 60.) * np.cos(yy / 80.),
        128 + 100 * np.cos(yy / 45.),
        (xx + yy) / (w + h) * 255,
    ], -1)
    img[300:700, 400:900] = (30, 200, 90)  # a flat block with hard edges
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp('imgs')
    img = smooth_pattern()
    files = dict(
        jpg=str(root / 'big.jpg'),
        png=str(root / 'big.png'),
        gray=str(root / 'gray.jpg'))
    cv2.imwrite(files['jpg'], img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(files['png'], img)
    cv2.imwrite(files['gray'], img[..., 1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    # EXIF orientation 6 (rotate 90 cw when displayed)
    exif = Image.Exif()
    exif[0x0112] = 6
    files['exif'] = str(root / 'rotated.jpg')
    Image.fromarray(img[..., ::-1]).save(files['exif'], quality=95, exif=exif)
    return files


def make_results(path, box, s, chip_size=(512, 512)):
    return dict(
        img_path=path,
        img_id=1,
        height=H,
        width=W,
        instances=[
            dict(bbox=[150., 100., 600., 500.], bbox_label=1, ignore_flag=0),
            dict(bbox=[800., 600., 1500., 1100.], bbox_label=2, ignore_flag=0),
            dict(bbox=[20., 20., 90., 70.], bbox_label=3, ignore_flag=1),
            dict(
                bbox=[1000.5, 130.25, 1090.75, 260.5],
                bbox_label=4,
                ignore_flag=0),
        ],
        sniper_chip=dict(
            box=np.asarray(box, dtype=np.float32),
            scale_factor=s,
            scale_idx=2,
            valid_range=(120, -1),
            valid_gt=np.array([0, 2], dtype=np.int64),
            chip_size=chip_size,
            is_negative=False))


def run_chip(loader, results, **crop_kwargs):
    results = loader(copy.deepcopy(results))
    partial = 'sniper_chip_img_origin' in results
    loaded_shape = results['img'].shape
    results = LoadAnnotations()(results)
    results = SniperChipCrop(**crop_kwargs)(results)
    return results, partial, loaded_shape


GEOMETRY_KEYS = ('img_shape', 'ori_shape', 'scale_factor',
                 'chip_offset', 'chip_scale', 'chip_valid_range',
                 'chip_scale_idx', 'chip_is_negative')

CHIPS = [
    ((0, 0, 1600, 1200), 0.25),  # whole image, d=4
    ((100.3, 50.7, 1600, 1200), 0.25),  # sub-pixel corner, d=4
    ((0, 0, 1600, 1200), 0.125),  # d=8
    ((10.5, 20.25, 1000.5, 1000.), 0.5),  # d=2
    ((777.7, 333.3, 1540.5, 1100.1), 0.6),  # s > 0.5: full decode
    ((100, 200, 612, 712), 1.0),  # full decode
    ((1300.25, 900.5, 1600, 1200), 1.7),  # full decode, upscale
]


@pytest.mark.parametrize('box,s', CHIPS)
def test_geometry_equals_full_decode(image_files, box, s):
    results = make_results(image_files['jpg'], box, s)
    full, full_partial, _ = run_chip(
        LoadSniperChipFromFile(reduced_decode=False), results)
    ours, partial, loaded_shape = run_chip(LoadSniperChipFromFile(), results)
    assert not full_partial
    assert partial == (s <= 0.5)
    if partial:
        # decoded at 1/d, and only the chip region (+ margin)
        d = max(dd for dd in (2, 4, 8) if dd * s <= 1)
        bw, bh = box[2] - box[0], box[3] - box[1]
        assert loaded_shape[0] <= np.ceil(bh / d) + 2 * 8 + 2
        assert loaded_shape[1] <= np.ceil(bw / d) + 2 * 8 + 2
    for key in GEOMETRY_KEYS:
        assert ours[key] == full[key], key
    np.testing.assert_array_equal(ours['homography_matrix'],
                                  full['homography_matrix'])
    np.testing.assert_array_equal(ours['gt_bboxes'].numpy(),
                                  full['gt_bboxes'].numpy())
    np.testing.assert_array_equal(ours['gt_bboxes_labels'],
                                  full['gt_bboxes_labels'])
    np.testing.assert_array_equal(ours['gt_ignore_flags'],
                                  full['gt_ignore_flags'])
    assert ours['ori_shape'] == (H, W)
    assert 'sniper_chip_img_origin' not in ours
    assert 'sniper_chip_img_scale' not in ours
    # the crop does not pad: the image is the chip's img_shape
    assert ours['img'].shape == full['img'].shape == ours['img_shape'] + (3, )
    diff = np.abs(ours['img'].astype(np.float32) - full['img'])
    if partial:
        assert diff.mean() < 2.0
    else:
        assert diff.max() == 0


def test_partial_decode_keys(image_files):
    results = make_results(image_files['jpg'], (100.3, 50.7, 1600, 1200), 0.25)
    out = LoadSniperChipFromFile()(copy.deepcopy(results))
    assert out['img_shape'] == out['ori_shape'] == (H, W)
    assert out['sniper_chip_img_scale'] == 0.25
    x0, y0 = out['sniper_chip_img_origin']
    assert type(x0) is float and x0 % 4 == 0 and y0 % 4 == 0
    assert x0 <= 100.3 and y0 <= 50.7
    assert out['img'].dtype == np.uint8 and out['img'].ndim == 3
    # the region is the 1/4-size decode of the original, BGR
    full = mmcv.imread(image_files['jpg'])
    h, w = out['img'].shape[:2]
    ref = cv2.resize(full, (W // 4, H // 4), interpolation=cv2.INTER_AREA)
    ref = ref[int(y0) // 4:int(y0) // 4 + h, int(x0) // 4:int(x0) // 4 + w]
    assert np.abs(out['img'].astype(np.float32) - ref).mean() < 2.0


def test_png_falls_back(image_files):
    results = make_results(image_files['png'], (0, 0, 1600, 1200), 0.25)
    out = LoadSniperChipFromFile()(copy.deepcopy(results))
    assert 'sniper_chip_img_origin' not in out
    np.testing.assert_array_equal(out['img'], mmcv.imread(image_files['png']))
    assert out['img_shape'] == out['ori_shape'] == (H, W)
    full, _, _ = run_chip(LoadImageFromFile(), results)
    ours, partial, _ = run_chip(LoadSniperChipFromFile(), results)
    assert not partial
    np.testing.assert_array_equal(ours['img'], full['img'])


def test_no_chip_is_load_image_from_file(image_files):
    results = dict(img_path=image_files['jpg'])
    ours = LoadSniperChipFromFile()(dict(results))
    ref = LoadImageFromFile()(dict(results))
    assert set(ours) == set(ref)
    np.testing.assert_array_equal(ours['img'], ref['img'])
    assert ours['img_shape'] == ref['img_shape']
    assert ours['ori_shape'] == ref['ori_shape']


def test_exif_orientation(image_files):
    # cv2's reduced decode applies the EXIF rotation like mmcv's full decode
    results = make_results(image_files['exif'], (0, 0, 1200, 1600), 0.25)
    results['height'], results['width'] = W, H  # displayed orientation
    out = LoadSniperChipFromFile()(copy.deepcopy(results))
    ref = LoadImageFromFile()(dict(img_path=image_files['exif']))
    assert ref['img'].shape[:2] == (W, H)  # cv2 applied the rotation
    assert out['sniper_chip_img_scale'] == 0.25
    assert out['ori_shape'] == (W, H)
    small = cv2.resize(
        ref['img'], (H // 4, W // 4), interpolation=cv2.INTER_AREA)
    h, w = out['img'].shape[:2]
    assert np.abs(out['img'].astype(np.float32) - small[:h, :w]).mean() < 2
    # ignoring orientation: the stored (unrotated) pixels
    out = LoadSniperChipFromFile(color_type='color_ignore_orientation')(
        make_results(image_files['exif'], (0, 0, 1600, 1200), 0.25))
    assert out['sniper_chip_img_scale'] == 0.25
    assert out['ori_shape'] == (H, W)


@pytest.mark.parametrize('s', [1.0, 0.25])
def test_exif_rotated_file_against_stored_size_annotation(image_files, s):
    """Issue 7 item 5: an EXIF-rotated file annotated with its stored size
    gave chips of wrong pixels; now an error names the file and sizes."""
    results = make_results(image_files['exif'], (0, 0, 1200, 1200), s)
    with pytest.raises(ImageSizeError) as info:
        LoadSniperChipFromFile()(copy.deepcopy(results))
    msg = str(info.value)
    assert 'rotated.jpg' in msg and '1200 x 1600' in msg
    assert 'width=1600, height=1200' in msg and 'EXIF' in msg


@pytest.mark.parametrize('kind', ['double', 'transposed'])
@pytest.mark.parametrize('s', [1.0, 0.5, 0.125])
@pytest.mark.parametrize('reduced', [True, False])
def test_size_mismatch_names_file_and_sizes(tmp_path, kind, s, reduced):
    img = smooth_pattern(120, 160)
    if kind == 'double':
        img = cv2.resize(img, (320, 240))
    else:
        img = np.ascontiguousarray(img.transpose(1, 0, 2))
    path = str(tmp_path / f'{kind}.jpg')
    cv2.imwrite(path, img)
    results = make_results(path, (0, 0, 100, 100), s)
    results['height'], results['width'] = 120, 160
    with pytest.raises(ImageSizeError) as info:
        LoadSniperChipFromFile(reduced_decode=reduced)(results)
    dh, dw = img.shape[:2]
    assert f'{kind}.jpg' in str(info.value)
    assert f'{dw} x {dh}' in str(info.value)
    assert 'width=160, height=120' in str(info.value)
    # check_size=False loads it anyway
    out = LoadSniperChipFromFile(
        reduced_decode=reduced, check_size=False)(
            make_results(path, (0, 0, 100, 100), s))
    assert out['ori_shape'] == (dh, dw)


def _bad_files(tmp_path):
    img = smooth_pattern(200, 300)
    ok, jpg = cv2.imencode('.jpg', img)
    ok, png = cv2.imencode('.png', img)
    jpg, png = jpg.tobytes(), png.tobytes()
    files = {
        'empty.jpg': b'',
        'garbage.jpg': b'this is not an image at all' * 10,
        'truncated.jpg': jpg[:len(jpg) // 2],
        'truncated.png': png[:len(png) // 2],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [str(tmp_path / n) for n in files]


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
@pytest.mark.parametrize('s', [None, 1.0, 0.25])
def test_corrupt_files_name_the_file(tmp_path, backend, s):
    """Issue 7 item 6: empty, garbage and truncated files raise an error
    naming the file on every decode path (a truncated JPEG used to decode
    silently with grey rows)."""
    for path in _bad_files(tmp_path):
        if s is None:
            results = dict(img_path=path)
        else:
            results = make_results(path, (0, 0, 200, 150), s)
            results['height'], results['width'] = 200, 300
        loader = LoadSniperChipFromFile(imdecode_backend=backend)
        with pytest.raises(ImageDecodeError, match=osp.basename(path)):
            loader(results)
        assert LoadSniperChipFromFile(
            imdecode_backend=backend,
            ignore_empty=True)(copy.deepcopy(results) if s else dict(
                img_path=path)) is None


def test_decompression_bomb_limit(image_files, monkeypatch):
    """Issue 7 item 6: over PIL's decompression-bomb limit the reduced
    decode crashed without a file name; now the cv2 paths load it and the
    pillow backend names the file and the setting that allows it."""
    from PIL import Image
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
    for s in (0.25, 0.5, 1.0):
        out = LoadSniperChipFromFile()(
            make_results(image_files['jpg'], (0, 0, 1600, 1200), s))
        assert out['ori_shape'] == (H, W)
    with pytest.raises(ImageDecodeError) as info:
        LoadSniperChipFromFile(imdecode_backend='pillow')(
            make_results(image_files['jpg'], (0, 0, 1600, 1200), 1.0))
    msg = str(info.value)
    assert 'big.jpg' in msg and 'PIL.Image.MAX_IMAGE_PIXELS' in msg
    assert '1600 x 1200' in msg


def test_opencv_pixel_limit_message(image_files, monkeypatch):
    monkeypatch.setenv('OPENCV_IO_MAX_IMAGE_PIXELS', '1000')
    for s in (0.25, 1.0):
        with pytest.raises(ImageDecodeError) as info:
            LoadSniperChipFromFile()(
                make_results(image_files['jpg'], (0, 0, 1600, 1200), s))
        assert 'big.jpg' in str(info.value)
        assert 'OPENCV_IO_MAX_IMAGE_PIXELS' in str(info.value)


def test_grayscale(image_files):
    results = make_results(image_files['jpg'], (10.5, 20.25, 1000.5, 1000.),
                           0.5)
    full, _, _ = run_chip(
        LoadSniperChipFromFile(color_type='grayscale', reduced_decode=False),
        results)
    ours, partial, _ = run_chip(
        LoadSniperChipFromFile(color_type='grayscale'), results)
    assert partial
    assert ours['img'].shape == full['img'].shape == ours['img_shape']
    assert np.abs(ours['img'].astype(np.float32) -
                  full['img']).mean() < 2.0
    # a grayscale JPEG read as 'color' gives 3 equal channels, like cv2
    results = make_results(image_files['gray'], (0, 0, 1600, 1200), 0.25)
    full, _, _ = run_chip(
        LoadSniperChipFromFile(reduced_decode=False), results)
    ours, partial, _ = run_chip(LoadSniperChipFromFile(), results)
    assert partial and ours['img'].shape == (300, 400, 3)
    assert np.abs(ours['img'].astype(np.float32) - full['img']).mean() < 2.0


def test_unchanged_color_type_falls_back(image_files):
    results = make_results(image_files['jpg'], (0, 0, 1600, 1200), 0.25)
    out = LoadSniperChipFromFile(color_type='unchanged')(results)
    assert 'sniper_chip_img_origin' not in out
    assert out['img'].shape == (H, W, 3)


def test_to_float32_and_bad_chip_falls_back(image_files):
    results = make_results(image_files['jpg'], (0, 0, 1600, 1200), 0.25)
    out = LoadSniperChipFromFile(to_float32=True)(copy.deepcopy(results))
    assert out['img'].dtype == np.float32
    assert 'sniper_chip_img_origin' in out
    # a broken chip: load the whole image and let SniperChipCrop complain
    results['sniper_chip']['scale_factor'] = -1.0
    out = LoadSniperChipFromFile()(copy.deepcopy(results))
    assert out['img'].shape == (H, W, 3)
    with pytest.raises(ValueError, match='big.jpg'):
        SniperChipCrop()(LoadAnnotations()(out))


def test_ignore_empty(tmp_path):
    results = make_results(
        str(tmp_path / 'missing.jpg'), (0, 0, 100, 100), 0.25)
    assert LoadSniperChipFromFile(ignore_empty=True)(results) is None
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        LoadSniperChipFromFile()(results)


def test_registry_and_repr():
    t = TRANSFORMS.build(
        dict(type='LoadSniperChipFromFile', reduced_decode=False))
    assert isinstance(t, LoadSniperChipFromFile)
    assert repr(t) == ("LoadSniperChipFromFile(ignore_empty=False, "
                       "to_float32=False, color_type='color', "
                       "imdecode_backend='cv2', backend_args=None, "
                       'reduced_decode=False, crop_margin=8, '
                       'tile_store=None, check_size=True, '
                       'max_image_pixels=2.5e+09)')
    with pytest.raises(ValueError):
        LoadSniperChipFromFile(crop_margin=-1)


def test_precropped_region_outside_box_is_an_error():
    img = np.zeros((100, 100, 3), np.uint8)
    results = dict(
        img=img,
        img_shape=(1000, 1000),
        ori_shape=(1000, 1000),
        img_path='region.jpg',
        sniper_chip_img_origin=(0.0, 0.0),
        sniper_chip_img_scale=0.25,
        sniper_chip=dict(
            box=np.array([600, 600, 900, 900], np.float32),
            scale_factor=0.25,
            valid_gt=[],
            chip_size=(512, 512)))
    with pytest.raises(ValueError, match='sniper_chip_img_origin'):
        SniperChipCrop()(results)
