"""SniperTTAModel on images too large to decode (issue 20, item 3): tiled
TIFFs and tile-store entries read window by window (LoadSniperLazyImage)."""
import ast
import os.path as osp
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import tifffile
import torch
from mmengine.dataset import pseudo_collate

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmsniper.datasets.image_io import ImageSizeError
from mmsniper.datasets.lazy_image import LAZY_KEY, read_view
from mmsniper.datasets.tile_store import (downsample2, num_levels,
                                          source_stamp, write_store_meta,
                                          write_tiled_pyramid)
from mmsniper.datasets.transforms import (LAZY_META_KEYS,
                                          LoadSniperLazyImage)
from mmsniper.models.test_time_augs.sniper_tta import crop_resize

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from sniper_tta_doubles import (DrawnObjectsDetector, draw_objects,  # noqa
                                random_objects)

SIZE = (1100, 1500)  # (h, w)
TILE = 256


class RecordingDetector(DrawnObjectsDetector):
    """:class:`DrawnObjectsDetector` that also keeps every input it got."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def predict(self, batch_inputs, batch_data_samples, rescale=True):
        for img, sample in zip(batch_inputs, batch_data_samples):
            height, width = sample.img_shape
            self.inputs.append(img[:, :height, :width].clone())
        return super().predict(batch_inputs, batch_data_samples, rescale)


def write_tiff(path, bgr, tile=TILE, levels=True, strips=False,
               compression='zstd'):
    """``bgr`` as an RGB tiled BigTIFF (as GDAL or tifffile users write
    them), pyramid levels as further pages (``levels``)."""
    pyramid = [bgr]
    if levels:
        for _ in range(num_levels(bgr.shape[0], bgr.shape[1], tile) - 1):
            pyramid.append(downsample2(pyramid[-1]))
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level in pyramid:
            kwargs = {} if strips else dict(tile=(tile, tile))
            tw.write(
                np.ascontiguousarray(level[..., ::-1]),
                photometric='rgb',
                compression=compression,
                **kwargs)
    return path


def smooth_image(size):
    """A smooth BGR test card (sines of 40-90 px periods): geometry errors
    of a fraction of a pixel show as pixel differences."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        128 + 100 * np.sin(2 * np.pi * x / 64),
        128 + 100 * np.sin(2 * np.pi * y / 48),
        128 + 60 * np.sin(2 * np.pi * (x + y) / 90)
    ], -1)
    return np.clip(img.round(), 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp('lazy')
    boxes, labels = random_objects(SIZE, 40, 8, 60, seed=5)
    img = draw_objects(SIZE, boxes, labels)
    return dict(
        img=img,
        boxes=boxes,
        labels=labels,
        pyramid=write_tiff(str(root / 'scene.tif'), img),
        flat=write_tiff(
            str(root / 'flat.tiff'), img, levels=False, compression='zlib'),
        strips=write_tiff(
            str(root / 'strips.tif'), img, strips=True,
            compression='zlib'),  # cv2's libtiff has no zstd
        root=root)


def _model(module, **kwargs):
    cfg = dict(type='SniperTTAModel', module=module)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _whole_input(img):
    sample = DetDataSample(
        metainfo=dict(img_id=0, ori_shape=img.shape[:2],
                      img_shape=img.shape[:2]))
    return dict(
        inputs=[torch.from_numpy(img).permute(2, 0, 1).contiguous()],
        data_samples=[sample])


def _lazy_input(path, loader=None, **results):
    from mmdet.datasets.transforms import PackDetInputs
    loader = loader or LoadSniperLazyImage()
    out = loader(dict(img_path=path, img_id=0, **results))
    assert LAZY_KEY in out, 'not loaded lazily'
    packed = PackDetInputs(meta_keys=LAZY_META_KEYS)(out)
    return pseudo_collate([packed])


def _run(data, **kwargs):
    det = RecordingDetector()
    model = _model(det, **kwargs)
    return model.test_step(data)[0].pred_instances, det


def test_loader_leaves_tiled_tiffs_undecoded(scene):
    out = LoadSniperLazyImage()(dict(img_path=scene['pyramid']))
    assert out['img'].shape == (1, 1, 3)  # a placeholder, not the image
    assert out['img_shape'] == out['ori_shape'] == SIZE
    handle = out[LAZY_KEY]
    assert handle['path'] == scene['pyramid']
    assert (handle['height'], handle['width']) == SIZE
    assert handle['channels'] == 'rgb' and handle['out_channels'] == 3
    # a TIFF in strips cannot be read by window: decoded whole, as before
    # (and as cv2 decodes the tiled one: BGR)
    out = LoadSniperLazyImage()(dict(img_path=scene['strips']))
    assert LAZY_KEY not in out
    np.testing.assert_array_equal(out['img'], scene['img'])
    # annotated size still checked, naming the file
    with pytest.raises(ImageSizeError, match='scene.tif'):
        LoadSniperLazyImage()(
            dict(img_path=scene['pyramid'], height=SIZE[0], width=999))
    # below lazy_min_pixels: decoded whole (cv2 reads deflate, not zstd)
    out = LoadSniperLazyImage(lazy_min_pixels=1e7)(
        dict(img_path=scene['flat']))
    assert LAZY_KEY not in out
    np.testing.assert_array_equal(out['img'], scene['img'])


@pytest.mark.parametrize('key', ['pyramid', 'flat'])
def test_lazy_path_equals_whole_image_path_at_scales_from_1(scene, key):
    """Scales >= 1 read level 0: the detector gets the very same pixels
    (tiled at 1.5x, whole at 1x, flipped too), so the detections are
    equal, not just close."""
    kwargs = dict(
        scales=[1.5, 1.0],
        valid_ranges=[(-1, 40), (30, -1)],
        flip=True,
        tile_cfg=dict(max_pixels=2e6, tile_size=640, edge_margin=6))
    whole, whole_det = _run(_whole_input(scene['img']), **kwargs)
    lazy, lazy_det = _run(_lazy_input(scene[key]), **kwargs)
    assert len(whole_det.inputs) > 6  # tiled at 1.5x
    assert len(lazy_det.inputs) == len(whole_det.inputs)
    for a, b in zip(whole_det.inputs, lazy_det.inputs):
        assert torch.equal(a, b)
    assert len(whole) >= len(scene['boxes'])  # both scales, soft-NMS
    for field in ('bboxes', 'scores', 'labels'):
        assert torch.equal(getattr(whole, field), getattr(lazy, field))


def test_lazy_path_from_a_coarser_level_finds_the_same_objects(scene):
    """At 0.45x the views are read from level 1 (block means, not a
    bilinear resize of the full image): same objects, boxes within the
    2 orig px of one level-1 pixel."""
    kwargs = dict(scales=[0.45], valid_ranges=[(-1, -1)])
    whole, _ = _run(_whole_input(scene['img']), **kwargs)
    lazy, det = _run(_lazy_input(scene['pyramid']), **kwargs)
    assert det.calls == [(495, 675)]
    assert len(lazy) == len(whole) > 20
    order_w = np.lexsort(whole.bboxes.numpy().T[::-1])
    order_l = np.lexsort(lazy.bboxes.numpy().T[::-1])
    dist = np.abs(whole.bboxes.numpy()[order_w] -
                  lazy.bboxes.numpy()[order_l])
    assert dist.max() <= 2 / 0.45 + 1e-6
    assert torch.equal(whole.labels[order_w], lazy.labels[order_l])


@pytest.mark.parametrize('level', [0, 1, 2, 3])
@pytest.mark.parametrize('region,factor', [((0, 0, 1500, 1100), 0.3),
                                           ((333, 101, 1201, 977), 0.2),
                                           ((17, 9, 611, 707), 0.13)])
def test_views_from_levels_have_the_geometry_of_a_resize(
        tmp_path, level, region, factor):
    """A view read from level k matches ``crop_resize`` of the decoded
    image on a smooth card (a shift of half a level pixel, 2**(k-1) orig
    px, costs several times more), also when read in row bands (level 0 in
    bands: a TIFF without levels whose region is too large to hold)."""
    img = smooth_image(SIZE)
    path = write_tiff(str(tmp_path / 'card.tif'), img)
    handle = LoadSniperLazyImage()(dict(img_path=path))[LAZY_KEY]
    x1, y1, x2, y2 = region
    out = (int((x2 - x1) * factor + 0.5), int((y2 - y1) * factor + 0.5))
    ref = crop_resize(
        torch.from_numpy(img).permute(2, 0, 1).contiguous(), region,
        out).numpy().astype(int)
    view = read_view(handle, region, out, level=level).astype(int)
    banded = read_view(
        handle, region, out, level=level, max_source_pixels=3000)
    assert view.shape == ref.shape == banded.shape
    # measured 0 (exact), 0.34-0.39, 1.3, 5.1-5.2: levels are block means
    err = np.abs(view - ref).mean()
    assert err <= {0: 0, 1: 0.6, 2: 1.8, 3: 6.5}[level], err
    assert np.abs(banded - view).max() <= 1
    if level == 0:  # warped in bands instead of cv2.resize
        assert np.abs(banded - ref).mean() < 0.3
    shift = max(1, 2**(level - 1))
    shifted = read_view(handle, (x1 + shift, y1, x2 + shift, y2), out,
                        level=level)
    assert np.abs(shifted.astype(int) - ref).mean() > max(2 * err, 1.0)


def test_the_coarsest_level_with_the_resolution_is_read(scene):
    handle = LoadSniperLazyImage()(dict(img_path=scene['pyramid']))[LAZY_KEY]
    from mmsniper.datasets.lazy_image import open_lazy_image
    tiled = open_lazy_image(handle)
    assert tiled.num_levels == 4  # 1500 -> 750 -> 375 -> 188 px
    read = {}
    real = tiled.read_region

    def spy(level, *args):
        read.setdefault(level, 0)
        read[level] += 1
        return real(level, *args)

    tiled.read_region = spy
    try:
        for factor, level in ((1.0, 0), (0.6, 0), (0.5, 1), (0.3, 1),
                              (0.2, 2), (0.05, 3)):
            read.clear()
            out = (max(1, int(1500 * factor + 0.5)),
                   max(1, int(1100 * factor + 0.5)))
            read_view(handle, (0, 0, 1500, 1100), out)
            assert set(read) == {level}, (factor, read)
    finally:
        del tiled.read_region


def test_tile_store_entry_is_read_lazily(tmp_path):
    """An image with an up-to-date tile-store entry: the store file is read
    (stored BGR), the image file never decoded."""
    img = smooth_image((300, 420))
    img_dir = tmp_path / 'images'
    img_dir.mkdir()
    img_path = str(img_dir / 'a.png')
    cv2.imwrite(img_path, img)
    store = str(tmp_path / 'store')
    write_store_meta(store, str(img_dir), 64, 'zstd', 'color')
    write_tiled_pyramid(
        img, osp.join(store, 'a.png.tif'), tile=64,
        description=dict(source_stamp(img_path), source=img_path))
    loader = LoadSniperLazyImage(tile_store=store)
    handle = loader(dict(img_path=img_path))[LAZY_KEY]
    assert handle['channels'] == 'bgr'
    assert handle['path'] == osp.join(store, 'a.png.tif')
    view = read_view(handle, (10, 20, 410, 290), (600, 405))
    ref = crop_resize(
        torch.from_numpy(img).permute(2, 0, 1).contiguous(),
        (10, 20, 410, 290), (600, 405)).numpy()
    np.testing.assert_array_equal(view, ref)
    # the image changed since: the stale entry is not used (decoded whole)
    cv2.imwrite(img_path, 255 - img)
    with pytest.warns(UserWarning, match='reading the image file'):
        out = loader(dict(img_path=img_path))
    assert LAZY_KEY not in out
    np.testing.assert_array_equal(out['img'], 255 - img)


def test_lazy_image_without_its_handle_packed_is_refused(scene):
    """PackDetInputs without 'sniper_lazy_image' in meta_keys: the model
    sees a 1 x 1 image of a 1100 x 1500 one and says so."""
    from mmdet.datasets.transforms import PackDetInputs
    out = LoadSniperLazyImage()(dict(img_path=scene['pyramid'], img_id=0))
    data = pseudo_collate([PackDetInputs()(out)])
    with pytest.raises(ValueError, match='ori_shape'):
        _run(data, scales=[1.0], valid_ranges=[(-1, -1)])


def _tile_writer_script(path, side, tile, boxes, levels=True):
    return textwrap.dedent(f'''
    import numpy as np, tifffile
    side, tile = {side}, {tile}
    boxes = {boxes!r}  # x1, y1, x2, y2, label (orig px, multiples of 128)
    def tiles(k):
        f = 2 ** k
        h = w = -(-side // f)
        for ty in range(-(-h // tile)):
            for tx in range(-(-w // tile)):
                a = np.zeros((tile, tile, 3), np.uint8)
                for x1, y1, x2, y2, label in boxes:
                    ax1 = max(x1 // f - tx * tile, 0)
                    ay1 = max(y1 // f - ty * tile, 0)
                    ax2 = min(x2 // f - tx * tile, tile)
                    ay2 = min(y2 // f - ty * tile, tile)
                    if ax2 > ax1 and ay2 > ay1:  # RGB of BGR (255, g, 0)
                        a[ay1:ay2, ax1:ax2] = (0, 60 + 60 * label, 255)
                yield a
    with tifffile.TiffWriter({path!r}, bigtiff=True) as tw:
        k, h = 0, side
        while True:
            tw.write(tiles(k), shape=(h, h, 3), dtype=np.uint8,
                     tile=(tile, tile), compression='zstd',
                     photometric='rgb')
            if h <= tile or not {levels!r}:
                break
            k, h = k + 1, -(-h // 2)
    ''')


BIG_SCRIPT = textwrap.dedent('''
    import sys, time
    sys.path[:0] = [{root!r}, {here!r}]
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    import mmsniper  # noqa
    from mmsniper.apis import inference_sniper
    from mmsniper.utils import peak_rss_bytes, reset_peak_rss
    from mmdet.registry import MODELS
    from sniper_tta_doubles import DrawnObjectsDetector
    DefaultScope.get_instance('lazy40k', scope_name='mmdet')
    cfg = Config.fromfile({base!r})
    cfg.tta_pipeline = [
        dict(type='LoadSniperLazyImage'),
        dict(type='PackDetInputs', meta_keys=('img_id', 'img_path',
             'ori_shape', 'img_shape', 'scale_factor', 'sniper_lazy_image'))]
    det = DrawnObjectsDetector()
    model = MODELS.build(dict(cfg.tta_model, module=det, scales=[0.1],
                              valid_ranges=[(-1, -1)]))
    model.cfg = cfg
    reset_peak_rss()
    start = time.perf_counter()
    out = inference_sniper(model, {path!r})
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    boxes = out.pred_instances.bboxes.round().int().tolist()
    print('RESULT', peak, len(det.calls), max(h * w for h, w in det.calls),
          seconds, out.ori_shape, sorted(map(tuple, boxes)))
''')


@pytest.mark.slow
@pytest.mark.parametrize('levels', [True, False])
def test_40k_tiled_tiff_at_0_1_stays_under_2_gb(tmp_path, levels):
    """A 40,000 x 40,000 px tiled BigTIFF, with pyramid levels or without
    (4.8 GB decoded, written tile by tile) at scale 0.1 through
    inference_sniper with LoadSniperLazyImage: peak RSS of the process
    <= 2 GB (imports included), every drawn object found where it is."""
    root = osp.dirname(osp.dirname(HERE))
    path = str(tmp_path / 'strip.tif')
    side, tile = 40000, 512
    boxes = [(1280, 1280, 1920, 2048, 0), (20096, 19968, 20992, 20608, 1),
             (38400, 35840, 39936, 36352, 0), (12800, 30720, 13312, 31232, 1)]
    proc = subprocess.run(
        [sys.executable, '-c',
         _tile_writer_script(path, side, tile, boxes, levels)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.getsize(path) < 200 * 2**20  # tiny on disk (zstd)
    script = BIG_SCRIPT.format(
        root=root, here=HERE, path=path,
        base=osp.join(root, 'configs/_base_/sniper_tta.py'))
    proc = subprocess.run([sys.executable, '-c', script],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT')][0]
    fields = line.split(' ', 5)
    peak, views, largest, seconds = (int(fields[1]), int(fields[2]),
                                     int(fields[3]), float(fields[4]))
    rest = fields[5]
    print(f'40k x 40k tiled TIFF (levels={levels}) at 0.1: peak RSS '
          f'{peak / 2**30:.2f} GiB, {views} views, {seconds:.1f} s')
    assert '(40000, 40000)' in rest
    assert views >= 4 and largest <= 4e6  # tiled (4000 x 4000 scaled)
    found = ast.literal_eval(rest[rest.index('['):])
    expected = sorted((x1, y1, x2, y2) for x1, y1, x2, y2, _ in boxes)
    assert len(found) == len(expected)
    for got, want in zip(found, expected):
        assert max(abs(a - b) for a, b in zip(got, want)) <= 10  # 1 view px
    assert peak <= 2 * 10**9


def test_cfg_options_recipe_of_the_docs(scene):
    """docs/en/user_guides/tile_store.md: two --cfg-options turn the SNIPER
    tta_pipeline lazy; the dataset pipeline then gives the model a handle
    and the detections equal the whole-image path."""
    import argparse

    from mmengine.config import Config, DictAction
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope
    root = osp.dirname(osp.dirname(HERE))
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args([
        '--cfg-options', 'tta_pipeline.0.type=LoadSniperLazyImage',
        'tta_pipeline.2.meta_keys=(img_id,img_path,ori_shape,img_shape,'
        'scale_factor,sniper_lazy_image)'
    ])
    cfg = Config.fromfile(osp.join(root, 'configs/_base_/sniper_tta.py'))
    cfg.merge_from_dict(args.cfg_options)
    init_default_scope('mmdet')
    pipeline = Compose(cfg.tta_pipeline)
    packed = pipeline(
        dict(img_path=scene['pyramid'], img_id=3, instances=[]))
    assert tuple(packed['inputs'].shape) == (3, 1, 1)
    assert packed['data_samples'].metainfo[LAZY_KEY]['width'] == SIZE[1]
    kwargs = dict(scales=[1.0], valid_ranges=[(-1, -1)])
    lazy, _ = _run(pseudo_collate([packed]), **kwargs)
    whole, _ = _run(_whole_input(scene['img']), **kwargs)
    assert len(whole) == len(scene['boxes'])
    assert torch.equal(whole.bboxes, lazy.bboxes)


def test_inference_arrays_with_a_lazy_tta_pipeline(scene):
    """inference_sniper with LoadSniperLazyImage in the config: arrays are
    still loaded as arrays (the lazy loader needs a file)."""
    from mmengine.config import Config

    from mmsniper.apis import inference_sniper
    root = osp.dirname(osp.dirname(HERE))
    cfg = Config.fromfile(osp.join(root, 'configs/_base_/sniper_tta.py'))
    cfg.tta_pipeline[0]['type'] = 'LoadSniperLazyImage'
    cfg.tta_pipeline[2]['meta_keys'] = LAZY_META_KEYS
    model = _model(
        DrawnObjectsDetector(), scales=[1.0], valid_ranges=[(-1, -1)])
    model.cfg = cfg
    from_array = inference_sniper(model, scene['img']).pred_instances
    from_file = inference_sniper(model, scene['pyramid']).pred_instances
    assert len(from_array) == len(scene['boxes'])
    assert torch.equal(from_array.bboxes, from_file.bboxes)
