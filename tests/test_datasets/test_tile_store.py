# Copyright (c) mmsniper contributors. All rights reserved.
"""Tile store: exact tile reads, the chip loader on a store, the converter
(resume after an interruption), check_images.py and a gigapixel image."""
import copy
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from mmdet.datasets.transforms import LoadAnnotations
from mmsniper.datasets.image_io import ImageSizeError
from mmsniper.datasets.tile_store import (StaleTileError, TiledImage,
                                          TileStore, TileStoreError,
                                          build_pyramid, is_up_to_date,
                                          level_for_scale, num_levels)
from mmsniper.datasets.transforms import LoadSniperChipFromFile, SniperChipCrop

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'dataset_converters'))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
import build_tile_store  # noqa: E402
import check_images  # noqa: E402

H, W, TILE = 301, 403, 64  # odd sizes: edge padding at every level


def pattern(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx % 251, yy % 241, (xx * 3 + yy * 5) % 256], -1)
    img += rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root, num=4, h=H, w=W, ext='jpg', seed=0):
    """JPEGs (or uncompressed PNGs, whose file size depends only on the
    image size) plus a COCO annotation file."""
    os.makedirs(osp.join(root, 'imgs', 'sub'), exist_ok=True)
    images = []
    for i in range(num):
        name = f'sub/img{i}.{ext}'
        cv2.imwrite(
            osp.join(root, 'imgs', name), pattern(h, w, seed + i),
            [cv2.IMWRITE_PNG_COMPRESSION, 0] if ext == 'png' else [])
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
    ann = osp.join(root, 'ann.json')
    with open(ann, 'w') as f:
        json.dump(
            dict(
                images=images,
                annotations=[],
                categories=[dict(id=1, name='a')]), f)
    return ann, osp.join(root, 'imgs')


@pytest.fixture(scope='module')
def store(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ts'))
    ann, img_dir = make_dataset(root)
    out = osp.join(root, 'store')
    assert build_tile_store.main([
        ann, '--img-dir', img_dir, '--out', out, '--tile',
        str(TILE), '--nproc', '1'
    ]) == 0
    return dict(ann=ann, img_dir=img_dir, out=out)


def test_num_levels_and_level_for_scale():
    assert num_levels(H, W, TILE) == 4  # 403 -> 202 -> 101 -> 51
    assert num_levels(64, 64, 64) == 1
    assert [
        level_for_scale(s, 5) for s in (3.0, 1.0, 0.9, 0.5, 0.3, 0.25, 0.01)
    ] == [0, 0, 0, 1, 1, 2, 4]


def test_pyramid_levels_are_block_means():
    img = pattern(H, W)
    levels = build_pyramid(img, TILE)
    assert [lv.shape[:2] for lv in levels] == [(301, 403), (151, 202),
                                               (76, 101), (38, 51)]
    padded = np.pad(img, ((0, 1), (0, 1), (0, 0)), mode='edge').astype(float)
    means = padded.reshape(151, 2, 202, 2, 3).mean((1, 3))
    assert np.abs(levels[1] - means).max() <= 0.5 + 1e-6


def test_tile_reads_equal_source_pixels(store):
    """Corners, edges and regions across tile borders, at every level."""
    path = osp.join(store['img_dir'], 'sub', 'img1.jpg')
    src = cv2.imread(path)
    levels = build_pyramid(src, TILE)
    tiled = TileStore(store['out']).open(path)
    assert tiled.num_levels == len(levels) == 4
    for k, ref in enumerate(levels):
        lh, lw = ref.shape[:2]
        regions = [
            (0, 0, 10, 10),
            (lw - 7, 0, lw, 9),
            (0, lh - 5, 6, lh),
            (lw - 3, lh - 3, lw, lh),  # corners
            (0, 0, lw, lh),  # all of it
            (TILE - 2, TILE - 3, TILE + 5, TILE + 2),  # across tile borders
            (lw // 2, 0, lw // 2 + 1, lh),  # a column, top to bottom edge
        ]
        if k < 3:
            assert TILE + 5 <= lw and TILE + 2 <= lh
        for x0, y0, x1, y1 in regions:
            if x1 > lw or y1 > lh:
                continue
            got = tiled.read_region(k, x0, y0, x1, y1)
            np.testing.assert_array_equal(
                got,
                ref[max(y0, 0):y1, max(x0, 0):x1],
                err_msg=f'level {k} region {(x0, y0, x1, y1)}')


def _chip_results(path, box, s):
    return dict(
        img_path=path,
        img_id=1,
        height=H,
        width=W,
        instances=[
            dict(bbox=[10., 20., 200., 150.], bbox_label=0, ignore_flag=0)
        ],
        sniper_chip=dict(
            box=np.asarray(box, np.float32),
            scale_factor=s,
            scale_idx=0,
            valid_range=(-1, -1),
            valid_gt=np.array([0]),
            chip_size=(512, 512),
            is_negative=False))


@pytest.mark.parametrize('box,s', [((0, 0, W, H), 1.0),
                                   ((100.5, 50.25, 300, 301), 1.0),
                                   ((0, 0, W, H), 1.27), ((0, 0, W, H), 0.5),
                                   ((37, 11, W, 250), 0.3),
                                   ((0, 0, W, H), 0.06),
                                   ((W - 20, H - 20, W, H), 0.25)])
def test_loader_on_store_matches_full_decode(store, box, s):
    path = osp.join(store['img_dir'], 'sub', 'img2.jpg')
    results = _chip_results(path, box, s)
    outs = []
    for loader in (LoadSniperChipFromFile(reduced_decode=False),
                   LoadSniperChipFromFile(tile_store=store['out'])):
        r = loader(copy.deepcopy(results))
        if loader.tile_store:
            k = level_for_scale(s, 4)
            assert r['sniper_chip_img_scale'] == 2.0**-k
            # only the chip's region (+ margin) was read
            assert r['img'].shape[0] <= np.ceil(
                (box[3] - box[1]) * 2.0**-k) + 2 * 8 + 2
            assert loader.bytes_read > 0
        outs.append(SniperChipCrop()(LoadAnnotations()(r)))
    full, ours = outs
    for key in ('img_shape', 'ori_shape', 'scale_factor', 'chip_offset'):
        assert ours[key] == full[key]
    np.testing.assert_array_equal(ours['gt_bboxes'].numpy(),
                                  full['gt_bboxes'].numpy())
    oh, ow = ours['img_shape']
    diff = np.abs(ours['img'][:oh, :ow].astype(float) - full['img'][:oh, :ow])
    if s >= 1:
        assert diff.max() == 0  # level 0 is lossless
    elif s >= 0.25:
        assert diff.mean() < 8  # block means instead of a bilinear resize
    else:  # bilinear aliases the noise: compare with an area resize
        ref = cv2.resize(
            cv2.imread(path), (ow, oh), interpolation=cv2.INTER_AREA)
        assert np.abs(ours['img'][:oh, :ow].astype(float) - ref).mean() < 6


def test_store_errors(store, tmp_path):
    with pytest.raises(TileStoreError, match='not a tile store'):
        LoadSniperChipFromFile(tile_store=str(tmp_path))
    with pytest.raises(ValueError, match='color_type'):
        LoadSniperChipFromFile(tile_store=store['out'], color_type='grayscale')
    loader = LoadSniperChipFromFile(tile_store=store['out'])
    with pytest.raises(TileStoreError, match='missing.jpg'):
        loader(_chip_results(str(tmp_path / 'missing.jpg'), (0, 0, 9, 9), 1))
    bad = tmp_path / 'bad.tif'
    bad.write_bytes(b'II*\x00garbage')
    with pytest.raises(TileStoreError, match='bad.tif'):
        TiledImage(str(bad))
    # a store file whose size differs from the annotation: both named
    # (issue 19, item 5: only the image was named)
    results = _chip_results(
        osp.join(store['img_dir'], 'sub', 'img0.jpg'), (0, 0, 9, 9), 1)
    results['width'] = W * 2
    with pytest.raises(ImageSizeError) as info:
        loader(results)
    assert 'img0.jpg:' in str(info.value)
    assert osp.join(store['out'], 'img0.jpg.tif') in str(info.value)


def _build(ann, img_dir, out):
    assert build_tile_store.main([
        ann, '--img-dir', img_dir, '--out', out, '--tile',
        str(TILE), '--nproc', '1'
    ]) == 0


def _load(loader, path, s=0.5):
    """Load a chip at scale ``s``; ``from_store`` tells whether the store
    gave it (a PNG has no reduced decode, so the file path gives no
    region)."""
    out = loader(_chip_results(path, (0, 0, W, H), s))
    return out['img'], 'sniper_chip_img_scale' in out


def _stale_warnings(record):
    return [str(w.message) for w in record if 'reading the image file' in
            str(w.message)]


@pytest.fixture
def png_store(tmp_path):
    """Uncompressed PNGs (rewritten with new pixels, the size stays) and
    their store."""
    ann, img_dir = make_dataset(str(tmp_path), num=3, ext='png')
    out = str(tmp_path / 'store')
    _build(ann, img_dir, out)
    return dict(ann=ann, img_dir=img_dir, out=out, root=tmp_path)


def test_stale_store_file_is_never_used(png_store, recwarn):
    """Issue 19, item 5: after the source was rewritten (same size, new
    pixels) the loader read the store's old pixels without a word."""
    img_dir, out = png_store['img_dir'], png_store['out']
    paths = [osp.join(img_dir, 'sub', f'img{i}.png') for i in range(3)]
    loader = LoadSniperChipFromFile(tile_store=out)
    assert _load(loader, paths[0])[1]  # fresh: from the store
    size = osp.getsize(paths[0])
    for i in (0, 1):
        cv2.imwrite(paths[i], pattern(H, W, seed=10 + i),
                    [cv2.IMWRITE_PNG_COMPRESSION, 0])
        os.utime(paths[i], ns=(10**18 + i, 10**18 + i))
    assert osp.getsize(paths[0]) == size
    for _ in range(3):  # several chips per file: one warning per file
        for i in (0, 1):
            img, from_store = _load(loader, paths[i], s=1.0)
            assert not from_store
            np.testing.assert_array_equal(img, cv2.imread(paths[i]))
    assert _load(loader, paths[2])[1]  # untouched: still from the store
    warned = _stale_warnings(recwarn)
    assert len(warned) == 2
    tif0 = osp.join(out, 'img0.png.tif')
    assert paths[0] in warned[0] and tif0 in warned[0]
    assert 'build_tile_store.py' in warned[0]
    with pytest.raises(StaleTileError) as info:
        LoadSniperChipFromFile(
            tile_store=out, stale_store='error')(
                _chip_results(paths[0], (0, 0, W, H), 1.0))
    assert paths[0] in str(info.value) and tif0 in str(info.value)
    with pytest.raises(ValueError, match='stale_store'):
        LoadSniperChipFromFile(tile_store=out, stale_store='ignore')
    # the converter rebuilds exactly the rewritten ones
    _build(png_store['ann'], img_dir, out)
    loader = LoadSniperChipFromFile(tile_store=out)
    for i in (0, 1):
        img, from_store = _load(loader, paths[i], s=1.0)
        assert from_store
        np.testing.assert_array_equal(img, cv2.imread(paths[i]))


def test_same_bytes_new_mtime_keeps_the_store(png_store, recwarn):
    """A source touched or copied without its mtime (same bytes) still
    uses the store: its SHA-256 matches the one recorded at build time."""
    path = osp.join(png_store['img_dir'], 'sub', 'img0.png')
    os.utime(path, ns=(10**18, 10**18))
    loader = LoadSniperChipFromFile(tile_store=png_store['out'])
    for _ in range(2):
        img, from_store = _load(loader, path, s=1.0)
        assert from_store
        np.testing.assert_array_equal(img, cv2.imread(path))
    assert not _stale_warnings(recwarn)


def test_store_only_source_gone(png_store):
    """The store is used as it is when the source image is gone (one
    warning per store)."""
    paths = [
        osp.join(png_store['img_dir'], 'sub', f'img{i}.png') for i in (0, 1)
    ]
    ref = [cv2.imread(p) for p in paths]
    for p in paths:
        os.remove(p)
    loader = LoadSniperChipFromFile(tile_store=png_store['out'])
    with pytest.warns(UserWarning, match='source image not found') as rec:
        for p, r in zip(paths, ref):
            img, from_store = _load(loader, p, s=1.0)
            assert from_store
            np.testing.assert_array_equal(img, r)
    assert len([w for w in rec if 'not found' in str(w.message)]) == 1


@pytest.mark.parametrize('cut', ['end', 'half'])
def test_truncated_store_file(png_store, recwarn, cut):
    """Issue 19, item 5: a truncated store file counted as up to date (only
    its header was read): rerunning the converter kept it."""
    path = osp.join(png_store['img_dir'], 'sub', 'img1.png')
    tif = osp.join(png_store['out'], 'img1.png.tif')
    size = osp.getsize(tif)
    with open(tif, 'r+b') as f:  # 'end': every IFD intact, last tile cut
        f.truncate(size - 3 if cut == 'end' else size // 2)
    with pytest.raises(StaleTileError, match='truncated') as info:
        TiledImage(tif)
    assert tif in str(info.value)
    assert not is_up_to_date(tif, path)
    img, from_store = _load(LoadSniperChipFromFile(
        tile_store=png_store['out']), path, s=1.0)
    assert not from_store
    np.testing.assert_array_equal(img, cv2.imread(path))
    warned = _stale_warnings(recwarn)
    assert len(warned) == 1 and tif in warned[0] and 'truncated' in warned[0]
    _build(png_store['ann'], png_store['img_dir'], png_store['out'])
    assert osp.getsize(tif) == size  # rebuilt
    assert is_up_to_date(tif, path)


def test_store_of_another_dataset_with_the_same_names(png_store, recwarn):
    """Issue 19, item 5: a store built for another dataset with the same
    file names was used (looked up by the bare file name)."""
    other = png_store['root'] / 'other'
    _, other_dir = make_dataset(str(other), num=3, ext='png', seed=50)
    path = osp.join(other_dir, 'sub', 'img0.png')
    loader = LoadSniperChipFromFile(tile_store=png_store['out'])
    img, from_store = _load(loader, path, s=1.0)
    assert not from_store
    np.testing.assert_array_equal(img, cv2.imread(path))
    warned = _stale_warnings(recwarn)
    tif = osp.join(png_store['out'], 'img0.png.tif')
    assert len(warned) == 1
    assert path in warned[0] and tif in warned[0]
    assert 'not under the image root' in warned[0]
    with pytest.raises(StaleTileError, match='not under the image root'):
        LoadSniperChipFromFile(
            tile_store=png_store['out'], stale_store='error')(
                _chip_results(path, (0, 0, W, H), 1.0))
    # not there at all: refused, naming the image, the store and its root
    with pytest.raises(TileStoreError) as info:
        loader(_chip_results('/elsewhere/sub/img0.png', (0, 0, W, H), 1.0))
    for name in ('/elsewhere/sub/img0.png', png_store['out'], 'image root'):
        assert name in str(info.value)


def test_found_after_the_images_moved(png_store, recwarn):
    """The same dataset copied elsewhere (mtimes kept, or not: SHA-256) is
    still read from the store."""
    moved = str(png_store['root'] / 'moved')
    shutil.copytree(png_store['img_dir'], osp.join(moved, 'a'))
    shutil.copytree(
        png_store['img_dir'], osp.join(moved, 'b'), copy_function=shutil.copy)
    loader = LoadSniperChipFromFile(tile_store=png_store['out'])
    for sub in ('a', 'b'):
        path = osp.join(moved, sub, 'sub', 'img2.png')
        img, from_store = _load(loader, path, s=1.0)
        assert from_store
        np.testing.assert_array_equal(img, cv2.imread(path))
    assert not _stale_warnings(recwarn)


def test_lookup_never_leaves_the_store_folder(png_store):
    """Issue 19, item 5: an absolute image path or ``..`` parts made the
    lookup open files outside the store folder."""
    root = png_store['root']
    out = png_store['out']
    outside = root / 'secret.png'
    cv2.imwrite(str(outside), pattern(H, W))
    (root / 'secret.png.tif').write_bytes(b'not to be opened')
    store = TileStore(out)
    for img_path in ('../secret.png', str(outside),
                     osp.join(out, '..', 'secret.png'), 'x/../../secret.png'):
        with pytest.raises(TileStoreError, match='not under the image root'):
            store.open(img_path)
    # under the image root, the relative path is used as it is
    with pytest.raises(TileStoreError, match='not in the tile store'):
        store.open(osp.join(png_store['img_dir'], 'sub', 'new.png'))


@pytest.mark.parametrize('text, word', [
    ('{oops', 'JSONDecodeError'),
    ('[1, 2]', 'not a JSON object'),
    ('{"format": "mmsniper-tile-store", "version": 1}', 'image_root'),
])
def test_broken_store_json_is_named(png_store, text, word):
    """Issue 19, item 5: a broken store.json gave a raw JSONDecodeError
    without the path."""
    meta = osp.join(png_store['out'], 'store.json')
    with open(meta, 'w') as f:
        f.write(text)
    for make in (lambda: LoadSniperChipFromFile(tile_store=png_store['out']),
                 lambda: _build(png_store['ann'], png_store['img_dir'],
                                png_store['out'])):
        with pytest.raises(TileStoreError) as info:
            make()
        assert meta in str(info.value) and word in str(info.value)


def test_converter_resumes_after_interruption(tmp_path, monkeypatch):
    ann, img_dir = make_dataset(str(tmp_path), num=5)
    out = str(tmp_path / 'store')
    argv = [
        ann, '--img-dir', img_dir, '--out', out, '--tile', '64', '--nproc', '1'
    ]
    real_write = build_tile_store.write_tiled_pyramid
    calls = []

    def interrupted(img, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:  # killed while writing the third image
            with open(f'{path}.tmp999', 'wb') as f:
                f.write(b'partial')
            raise KeyboardInterrupt
        return real_write(img, path, *args, **kwargs)

    monkeypatch.setattr(build_tile_store, 'write_tiled_pyramid', interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_tile_store.main(argv)
    tifs = sorted(
        osp.join(d, f) for d, _, fs in os.walk(out) for f in fs
        if f.endswith('.tif'))
    assert len(tifs) == 2
    stamps = {p: os.stat(p).st_mtime_ns for p in tifs}

    monkeypatch.setattr(build_tile_store, 'write_tiled_pyramid', real_write)
    calls.clear()
    assert build_tile_store.main(argv) == 0
    after = sorted(osp.join(d, f) for d, _, fs in os.walk(out) for f in fs)
    assert [p for p in after if p.endswith('.tif')
            ] == [osp.join(out, f'img{i}.jpg.tif') for i in range(5)]
    assert not [p for p in after if '.tmp' in p]
    for p, t in stamps.items():  # not redone
        assert os.stat(p).st_mtime_ns == t
    store = TileStore(out)
    for i in range(5):
        path = osp.join(img_dir, 'sub', f'img{i}.jpg')
        np.testing.assert_array_equal(
            store.open(path).read_region(0, 0, 0, W, H), cv2.imread(path))
    # a changed source image is rebuilt, the others skipped
    os.utime(osp.join(img_dir, 'sub', 'img0.jpg'), ns=(1, 1))
    monkeypatch.setattr(build_tile_store, 'write_tiled_pyramid', interrupted)
    calls.clear()
    assert build_tile_store.main(argv) == 0
    assert calls == [osp.join(out, 'img0.jpg.tif')]


def test_converter_reports_bad_images(tmp_path, capsys):
    ann, img_dir = make_dataset(str(tmp_path), num=3)
    with open(osp.join(img_dir, 'sub', 'img1.jpg'), 'r+b') as f:
        f.truncate(500)
    out = str(tmp_path / 'store')
    assert build_tile_store.main(
        [ann, '--img-dir', img_dir, '--out', out, '--nproc', '2']) == 1
    err = capsys.readouterr().err
    assert 'img1.jpg' in err and 'truncated' in err
    assert osp.isfile(osp.join(out, 'img2.jpg.tif'))


def test_converter_checks_free_disk(tmp_path, monkeypatch, capsys):
    ann, img_dir = make_dataset(str(tmp_path), num=1)
    import shutil
    monkeypatch.setattr(shutil, 'disk_usage',
                        lambda p: shutil._ntuple_diskusage(10, 10, 1))
    assert build_tile_store.main(
        [ann, '--img-dir', img_dir, '--out',
         str(tmp_path / 's')]) == 1
    assert 'not enough free disk space' in capsys.readouterr().err


def test_check_images_reports_every_problem(tmp_path, capsys):
    ann, img_dir = make_dataset(str(tmp_path), num=6)
    sub = osp.join(img_dir, 'sub')
    img = cv2.imread(osp.join(sub, 'img0.jpg'))
    cv2.imwrite(osp.join(sub, 'img1.jpg'), cv2.resize(img, (2 * W, 2 * H)))
    cv2.imwrite(osp.join(sub, 'img2.jpg'), img.transpose(1, 0, 2).copy())
    open(osp.join(sub, 'img3.jpg'), 'wb').close()
    with open(osp.join(sub, 'img4.jpg'), 'r+b') as f:
        f.truncate(300)
    for nproc in ('1', '2'):
        assert check_images.main([ann, '--img-dir', img_dir, '--nproc',
                                  nproc]) == 1
        err = capsys.readouterr().err
        assert '4 of 6 images have problems' in err
        assert f'img1.jpg: decoded image is {2 * W} x {2 * H}' in err
        assert f'img2.jpg: decoded image is {H} x {W}' in err
        assert 'img3.jpg: empty file' in err
        assert 'img4.jpg: truncated JPEG' in err
        assert 'img0.jpg' not in err and 'img5.jpg' not in err


GIGA_BUILD = textwrap.dedent('''
    import json, os, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, os.path.join({root!r}, 'tools', 'dataset_converters'))
    import cv2
    import numpy as np
    import build_tile_store
    n, root = {n}, sys.argv[1]
    img = np.full((n, n, 3), 90, np.uint8)
    img[::1000] = 255  # grid lines
    img[:, ::1000] = 0
    img[100:150, 100:160] = (0, 0, 255)
    img[n - 600:n - 10, n - 900:n - 10] = (0, 255, 0)
    os.makedirs(os.path.join(root, 'imgs'))
    assert cv2.imwrite(os.path.join(root, 'imgs', 'mosaic.jpg'), img,
                       [cv2.IMWRITE_JPEG_QUALITY, 80])
    del img
    ann = os.path.join(root, 'ann.json')
    gt = [[100, 100, 160, 150], [9000, 9000, 9400, 9300],
          [n - 900, n - 600, n - 10, n - 10]]
    anns = [dict(id=i + 1, image_id=1, category_id=1, iscrowd=0,
                 bbox=[x1, y1, x2 - x1, y2 - y1],
                 area=(x2 - x1) * (y2 - y1))
            for i, (x1, y1, x2, y2) in enumerate(gt)]
    with open(ann, 'w') as f:
        json.dump(dict(images=[dict(id=1, file_name='mosaic.jpg', height=n,
                                    width=n)], annotations=anns,
                       categories=[dict(id=1, name='a')]), f)
    sys.exit(build_tile_store.main([
        ann, '--img-dir', os.path.join(root, 'imgs'), '--out',
        os.path.join(root, 'store'), '--tile', '512', '--nproc', '1']))
''')

GIGA_LOAD = textwrap.dedent('''
    import sys
    sys.path.insert(0, {root!r})
    import numpy as np
    import mmcv, cv2
    from mmengine.registry import init_default_scope
    import mmsniper
    from mmdet.datasets.transforms import LoadAnnotations
    from mmsniper.chips import generate_multiscale_chips
    from mmsniper.datasets.transforms import (LoadSniperChipFromFile,
                                              SniperChipCrop)
    init_default_scope('mmdet')

    def no_full_decode(*args, **kwargs):
        raise AssertionError('decoded a whole image')
    cv2.imdecode = cv2.imread = mmcv.imfrombytes = no_full_decode
    path, store, n = sys.argv[1], sys.argv[2], {n}
    gt = np.array([[100, 100, 160, 150], [9000, 9000, 9400, 9300],
                   [n - 900, n - 600, n - 10, n - 10]], np.float32)
    scales = [1.0, 0.25, 512 / n]
    chips = generate_multiscale_chips(
        gt, (n, n), scales, [(-1, 80), (32, 500), (300, -1)],
        chip_size=512, stride=32)
    loader = LoadSniperChipFromFile(tile_store=store)
    crop = SniperChipCrop()
    count = 0
    for k, sc in enumerate(chips):
        for box in sc.chips:
            r = dict(img_path=path, height=n, width=n,
                     instances=[dict(bbox=b.tolist(), bbox_label=0,
                                     ignore_flag=0) for b in gt],
                     sniper_chip=dict(box=box, scale_factor=scales[k],
                                      scale_idx=k, valid_range=(-1, -1),
                                      valid_gt=np.arange(3),
                                      chip_size=(512, 512),
                                      is_negative=False))
            out = crop(LoadAnnotations()(loader(r)))
            assert out['img'].shape == (512, 512, 3), out['img'].shape
            count += 1
    print('CHIPS', count)
    print('BYTES', loader.bytes_read)
    from mmsniper.utils import peak_rss_bytes  # this process's own peak
    print('PEAK_KB', peak_rss_bytes() // 1024)
''')


GIGA_TRAIN = textwrap.dedent('''
    import glob, os, sys
    sys.path.insert(0, {root!r})
    import cv2, mmcv
    from mmengine.config import Config
    from mmengine.runner import Runner
    import mmsniper
    from mmdet.registry import TRANSFORMS
    from mmsniper.utils import peak_rss_bytes
    root, work_dir, n = sys.argv[1], sys.argv[2], {n}

    def no_full_decode(*args, **kwargs):
        raise AssertionError('decoded a whole image')
    # forked data-loader workers inherit these
    cv2.imdecode = cv2.imread = mmcv.imfrombytes = no_full_decode

    @TRANSFORMS.register_module()
    class RecordPeakRSS:
        """Writes this process's peak RSS (kB) to work_dir/rss_<pid>."""
        def __call__(self, results):
            with open(os.path.join(work_dir, f'rss_{{os.getpid()}}'),
                      'w') as f:
                f.write(str(peak_rss_bytes() // 1024))
            return results

    cfg = Config.fromfile(os.path.join(
        {root!r}, 'configs', 'sniper',
        'faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py'))
    cfg.work_dir = work_dir
    cfg.model.roi_head.bbox_head.num_classes = 1
    cfg.train_cfg.max_iters = 3
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        interval=100, save_last=False)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    loader = cfg.train_dataloader
    loader.num_workers = 2
    loader.dataset.scales = [1.0, 0.25, (-1, 512)]
    loader.dataset.valid_ranges = [(-1, 80), (32, 500), (300, -1)]
    inner = loader.dataset.dataset
    inner.data_root = root
    inner.ann_file = 'ann.json'
    inner.data_prefix = dict(img='imgs/')
    inner.metainfo = dict(classes=('a', ))
    steps = inner.pipeline
    assert steps[0]['type'] == 'LoadSniperChipFromFile', steps[0]
    steps[0]['tile_store'] = os.path.join(root, 'store')
    steps.insert(-1, dict(type='RecordPeakRSS'))
    runner = Runner.from_cfg(cfg)
    runner.train()
    print('ITERS', runner.iter)
    print('CHIPS', len(runner.train_dataloader.dataset))
    peaks = [int(open(p).read()) for p in
             glob.glob(os.path.join(work_dir, 'rss_*'))]
    print('WORKERS', len(peaks))
    print('WORKER_PEAK_KB', max(peaks))
''')


def run_script(path, text, *args, timeout=300):
    """Write ``text`` to ``path``, run it with ``args`` and return its
    ``KEY value`` output lines as a dict."""
    path.write_text(text)
    proc = subprocess.run([sys.executable, str(path), *map(str, args)],
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(
        ln.split(' ', 1) for ln in proc.stdout.splitlines() if ' ' in ln)


@pytest.fixture(scope='module')
def giga(tmp_path_factory):
    """A 20,000 x 20,000 px JPEG (3 GT boxes) and its tile store."""
    n = 20000
    tmp = tmp_path_factory.mktemp('giga')
    root = tmp / 'giga'
    run_script(tmp / 'build.py', GIGA_BUILD.format(root=ROOT, n=n), root)
    return dict(n=n, root=root, tmp=tmp)


@pytest.mark.slow
def test_gigapixel_image_bounded_memory(giga):
    """A 20,000 x 20,000 px JPEG: store built, chips generated and loaded
    from the store at every scale without any whole-image decode, peak
    loader-process memory under 1 GB; PIL's bomb limit is explained."""
    n, root = giga['n'], giga['root']
    path = str(root / 'imgs' / 'mosaic.jpg')
    lines = run_script(giga['tmp'] / 'load.py',
                       GIGA_LOAD.format(root=ROOT, n=n), path,
                       root / 'store')
    assert int(lines['CHIPS']) == 4  # 1 + 2 + 1 chips
    assert 0 < int(lines['BYTES']) < 20 * 2**20
    peak_mb = int(lines['PEAK_KB']) / 1024
    print(f"gigapixel: peak {peak_mb:.0f} MB, {lines['BYTES']} bytes read")
    assert peak_mb < 1024, f'peak RSS {peak_mb:.0f} MB'
    # PIL's decompression-bomb limit: a message that says how to allow it
    from mmsniper.datasets.image_io import ImageDecodeError
    results = dict(img_path=path, height=n, width=n)
    with pytest.raises(ImageDecodeError) as info:
        LoadSniperChipFromFile(imdecode_backend='pillow')(results)
    assert 'mosaic.jpg' in str(info.value)
    assert 'PIL.Image.MAX_IMAGE_PIXELS = None' in str(info.value)


@pytest.mark.slow
def test_gigapixel_image_trains_from_the_store(giga):
    """mmengine's Runner trains the demo detector on the 20,000 px image:
    SniperChipDataset makes its chips, 2 data-loader workers read them
    from the store (the config's one switch, ``tile_store=DIR``), no
    process decodes the whole image, and each worker peaks under 1 GB."""
    if not osp.exists('/proc/self/status'):
        pytest.skip('needs Linux /proc (VmHWM)')
    work_dir = giga['tmp'] / 'train'
    work_dir.mkdir()
    lines = run_script(giga['tmp'] / 'train.py',
                       GIGA_TRAIN.format(root=ROOT, n=giga['n']),
                       giga['root'], work_dir, timeout=600)
    assert int(lines['ITERS']) == 3
    assert int(lines['CHIPS']) == 4  # as generate_multiscale_chips gives
    assert int(lines['WORKERS']) == 2
    peak_mb = int(lines['WORKER_PEAK_KB']) / 1024
    print(f'gigapixel training: worker peak {peak_mb:.0f} MB')
    assert peak_mb < 1024, f'worker peak RSS {peak_mb:.0f} MB'


@pytest.mark.parametrize('args, word', [
    (['--tile', '0'], 'multiple of 16'),
    (['--tile', '100'], 'multiple of 16'),
    (['--tile', 'x'], 'not an integer'),
    (['--nproc', '0'], 'must be >= 1'),
])
def test_bad_numbers_are_refused_before_any_work(tmp_path, capsys, args,
                                                 word):
    """Issue 19, item 4: ``--tile 0`` hung in num_levels and wrote
    ``tile: 0`` into store.json."""
    ann, img_dir = make_dataset(str(tmp_path))
    out = tmp_path / 'store'
    with pytest.raises(SystemExit) as exc:
        build_tile_store.main([ann, '--img-dir', img_dir, '--out', str(out),
                               *args])
    assert exc.value.code == 2
    assert word in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match='multiple of 16'):
        num_levels(64, 64, 0)
