# Copyright (c) mmsniper contributors. All rights reserved.
"""Chip pipeline throughput: four ways to load the same chips, in one run.

    python benchmarks/bench_chip_pipeline.py [--num-chips 24] \
        [--workers 0 2] [--sets demo photos] [--repeats 5]

Methods (each followed by LoadAnnotations; all give the same chip geometry):

- ``naive``: LoadImageFromFile + mmdet Resize of the whole image by the
  chip's scale + a crop of the chip;
- ``today``: the loader before the tile store (whole-file decode, PIL draft
  mode at 1/2-1/8 for JPEGs at scales <= 1/2) + SniperChipCrop;
- ``reduced``: LoadSniperChipFromFile (whole-file decode, cv2
  ``IMREAD_REDUCED_COLOR_{2,4,8}`` at scales <= 1/2) + SniperChipCrop;
- ``store``: LoadSniperChipFromFile(tile_store=DIR) (only the tiles that
  overlap the chip, at the coarsest pyramid level with enough resolution)
  + SniperChipCrop.

Image sets: ``demo`` (tools/generate_demo_data.py, 24 images of 1500-2500
px, scales 1.5, 0.6, (-1, 512)) and ``photos`` (6 synthetic 4000 x 3000
JPEG photos, quality 90, scales 1.0, 0.4, (-1, 512)). Every
(set, method, workers) run is a fresh subprocess over the same chips,
repeated ``--repeats`` times with the
methods interleaved; the files are read once before timing (warm page
cache). Each run sets up like mmengine's runner (OpenCV single-threaded,
one torch thread), builds the pipeline before the workers fork and starts
the workers with a warm-up item, so the timed pass is steady-state
loading. Reported: chips/s per scale and overall (median of the runs),
the ratio to naive (median and range over the runs), peak RSS of a
loading process (the run's process for 0 workers, else the largest
worker; the most over the runs) while it loads the chips, counted from
the warm-up item (so the process's imports and, for a forked worker, the
parent pages it maps are in), and bytes read from disk per chip. A JPEG
decoder probe (cv2 reduced vs PIL draft mode) prints first.
"""
import argparse
import io
import json
import math
import os
import os.path as osp
import pickle
import subprocess
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mmsniper.utils.memory import peak_rss_bytes, reset_peak_rss  # noqa: E402

METHODS = ('naive', 'today', 'reduced', 'store')
SETS = {
    'demo': dict(scales=[1.5, 0.6, (-1, 512)],
                 ranges=[(-1, 40), (28, 200), (150, -1)]),
    'photos': dict(scales=[1.0, 0.4, (-1, 512)],
                   ranges=[(-1, 64), (40, 250), (180, -1)]),
}


# ----------------------------------------------------------------------
# data
# ----------------------------------------------------------------------
def make_photos(root, num=6, h=3000, w=4000, seed=0):
    """Synthetic 4000 x 3000 JPEG photos with random boxes (COCO json)."""
    import cv2
    ann = osp.join(root, 'annotations.json')
    if osp.isfile(ann):
        return ann
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    images, anns = [], []
    for i in range(num):
        fx, fy = rng.uniform(20, 80, 2)
        img = np.stack([
            128 + 90 * np.sin(xx / fx) * np.cos(yy / fy),
            128 + 80 * np.cos((xx + yy) / (fx + fy)),
            (xx * (i + 1) / 40. + yy / 30.) % 255
        ], -1)
        for _ in range(60):  # objects: textured rectangles
            bw, bh = rng.integers(12, 400, 2)
            x0, y0 = rng.integers(0, w - bw), rng.integers(0, h - bh)
            img[y0:y0 + bh, x0:x0 + bw] = rng.uniform(0, 255, 3)
            anns.append(
                dict(id=len(anns) + 1, image_id=i + 1, category_id=1,
                     bbox=[float(x0), float(y0), float(bw), float(bh)],
                     area=float(bw * bh), iscrowd=0))
        img += rng.normal(0, 3, img.shape)
        name = f'photo_{i:02d}.jpg'
        cv2.imwrite(osp.join(root, 'images', name),
                    np.clip(img, 0, 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(dict(id=i + 1, file_name=name, height=h, width=w))
    with open(ann, 'w') as f:
        json.dump(dict(images=images, annotations=anns,
                       categories=[dict(id=1, name='object')]), f)
    return ann


def pick_chips(set_name, work_dir, num_chips, seed=0):
    """The chips (data infos) timed for a set, the same for every method;
    builds the tile store if missing."""
    from mmengine.registry import init_default_scope

    import mmsniper  # noqa: F401
    from mmsniper.datasets import SniperChipDataset
    init_default_scope('mmdet')
    build = osp.join(ROOT, 'tools', 'dataset_converters',
                     'build_tile_store.py')
    store = osp.join(work_dir, f'{set_name}_store')
    if set_name == 'demo':
        from mmsniper.testing.synthetic import ensure_synthetic_dataset
        data_root = osp.join(work_dir, 'sniper_demo')
        ensure_synthetic_dataset(data_root)
        ann, img_dir = osp.join(data_root, 'annotations', 'train.json'), \
            osp.join(data_root, 'train')
        classes = ('vehicle', 'roof', 'tank')
    else:
        data_root = osp.join(work_dir, 'bench_photos')
        ann = make_photos(data_root)
        img_dir = osp.join(data_root, 'images')
        classes = ('object', )
    subprocess.run([
        sys.executable, build, ann, '--img-dir', img_dir, '--out', store,
        '--nproc', '2'
    ], check=True, stdout=subprocess.DEVNULL)
    cfg = SETS[set_name]
    ds = SniperChipDataset(
        dict(type='CocoDataset', ann_file=ann,
             data_prefix=dict(img=img_dir + '/'),
             metainfo=dict(classes=classes), pipeline=[]),
        cfg['scales'], cfg['ranges'], chip_size=512)
    table = ds.chip_table(0)
    rng = np.random.default_rng(seed)
    chips = []
    for k in range(len(cfg['scales'])):
        pool = np.flatnonzero(table.scale_idx == k)
        rows = rng.choice(pool, size=min(num_chips, len(pool)),
                          replace=False)
        chips.append([ds.get_data_info(table.index(r)) for r in rows])
    return chips, store, len(ds.dataset), len(table)


# ----------------------------------------------------------------------
# pipelines
# ----------------------------------------------------------------------
def _today_loader_cls():
    """The loader as it was before the tile store: PIL draft decoding."""
    from mmsniper.datasets.image_io import is_jpeg
    from mmsniper.datasets.transforms import LoadSniperChipFromFile

    class PilDraftLoader(LoadSniperChipFromFile):

        def _load_reduced(self, results, filename, img_bytes, box_s):
            from PIL import Image
            box, s = box_s
            d = next((d for d in (8, 4, 2) if d * s <= 1 + 1e-9), None)
            if d is None or not is_jpeg(img_bytes):
                return None
            with Image.open(io.BytesIO(img_bytes)) as im:
                if im.getexif().get(0x0112, 1) not in (None, 1):
                    return None
                full_w, full_h = im.size
                im.draft('RGB', (full_w // d, full_h // d))
                d = im.decoderconfig[0] if im.decoderconfig else 1
                if d <= 1:
                    return None
                dec_w, dec_h = im.size
                x1, y1, x2, y2 = box
                m = self.crop_margin
                rx0 = min(max(int(math.floor(x1 / d)) - m, 0), dec_w - 1)
                ry0 = min(max(int(math.floor(y1 / d)) - m, 0), dec_h - 1)
                rx1 = max(min(int(math.ceil(x2 / d)) + m, dec_w), rx0 + 1)
                ry1 = max(min(int(math.ceil(y2 / d)) + m, dec_h), ry0 + 1)
                region = im.crop((rx0, ry0, rx1, ry1)).convert('RGB')
            img = np.ascontiguousarray(np.asarray(region)[..., ::-1])
            return img, (full_h, full_w), ((float(rx0 * d), float(
                ry0 * d)), 1.0 / d)

    return PilDraftLoader


def decoder_probe(files, reps=5):
    """CPU ms per decode of whole JPEG files: full size (cv2, as mmcv) and
    reduced 1/2, 1/4, 1/8 by cv2 ``IMREAD_REDUCED_COLOR_*`` (a BGR array)
    and by PIL's draft mode (decode only, ``Image.load``: the RGB-to-BGR
    array conversion, about 20 ms for a whole 2000 x 1500 image here, is
    left out, as the old loader converts only the chip's region).
    Interleaved; the median over ``reps`` passes of the mean over
    ``files``."""
    import cv2
    from PIL import Image
    bufs = [open(f, 'rb').read() for f in files]
    flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}

    def pil(buf, d):
        with Image.open(io.BytesIO(buf)) as im:
            im.draft('RGB', (im.size[0] // d, im.size[1] // d))
            im.load()
            return im.size

    cases = [('full', 'cv2', lambda b: cv2.imdecode(
        np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR))]
    for d in (2, 4, 8):
        cases += [(f'1/{d}', 'cv2', lambda b, d=d: cv2.imdecode(
            np.frombuffer(b, np.uint8), flags[d])),
                  (f'1/{d}', 'PIL', lambda b, d=d: pil(b, d))]
    times = {(size, lib): [] for size, lib, _ in cases}
    for _ in range(reps):
        for size, lib, fn in cases:
            t = time.process_time()
            for buf in bufs:
                fn(buf)
            times[(size, lib)].append(
                (time.process_time() - t) / len(bufs) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


class ChipSet:
    """A torch-style dataset of pre-chosen chips through one method."""

    def __init__(self, infos, method, store):
        self.infos, self.method, self.store = infos, method, store
        self._build()  # in the parent: forked workers inherit the imports

    def _build(self):
        from mmcv.transforms import LoadImageFromFile

        from mmdet.datasets.transforms import LoadAnnotations, Resize
        from mmsniper.datasets.transforms import (LoadSniperChipFromFile,
                                                  SniperChipCrop)
        if self.method == 'naive':
            self.load = LoadImageFromFile()
        elif self.method == 'today':
            self.load = _today_loader_cls()(check_size=False)
        elif self.method == 'reduced':
            self.load = LoadSniperChipFromFile()
        else:
            self.load = LoadSniperChipFromFile(tile_store=self.store)
        self.ann = LoadAnnotations(with_bbox=True)
        self.crop = SniperChipCrop()
        self.resize = Resize

    def __len__(self):
        return len(self.infos)

    def __getitem__(self, i):
        if i < 0:  # warm-up item: the worker is running; peak from here
            reset_peak_rss()
            return 0, 0., 0.
        info = dict(self.infos[i])
        cpu0 = time.process_time()
        before = getattr(self.load, 'bytes_read', 0)
        results = self.ann(self.load(info))
        if self.method == 'naive':
            nbytes = os.path.getsize(info['img_path'])
            chip = results['sniper_chip']
            s = chip['scale_factor']
            results = self.resize(scale_factor=s, keep_ratio=True)(results)
            x1, y1 = (np.asarray(chip['box'][:2]) * s).round().astype(int)
            ch, cw = chip['chip_size']
            results['img'] = results['img'][y1:y1 + ch, x1:x1 + cw]
        else:
            nbytes = self.load.bytes_read - before
            if self.method == 'today':
                nbytes = os.path.getsize(info['img_path'])
            results = self.crop(results)
        assert results['img'].shape[0] <= 512
        cpu = time.process_time() - cpu0
        rss = peak_rss_bytes() / 2**20
        return nbytes, rss, cpu


class _Order:
    """A sampler whose indices can change between passes (the workers of
    a persistent DataLoader stay up)."""

    def __init__(self):
        self.indices = []

    def __iter__(self):
        return iter(list(self.indices))

    def __len__(self):
        return len(self.indices)


def run_one(args):
    """One (set, method, workers) run in this process; prints JSON.

    As in training with mmengine's runner (mmdet's default ``env_cfg``):
    OpenCV runs single-threaded, torch uses one thread. The pipeline is
    built before the workers fork; each worker then answers one warm-up
    item, so the timed pass starts with every worker up and measures
    steady-state loading, not process start-up.
    """
    import cv2
    import torch
    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    from torch.utils.data import DataLoader
    with open(args.chips, 'rb') as f:
        chips, store = pickle.load(f)  # our own file, written just now
    workers = args.workers[0]
    out = dict(per_scale=[], bytes=[], rss=0.)
    for infos in chips:
        order = _Order()
        loader = DataLoader(
            ChipSet(infos, args.method, store), batch_size=None,
            sampler=order, num_workers=workers,
            persistent_workers=workers > 0)
        order.indices = [-1] * max(workers, 1)
        for _ in loader:  # warm-up: start the workers
            pass
        order.indices = list(range(len(infos)))
        cpus = []
        t0 = time.perf_counter()
        for nbytes, rss, cpu in loader:
            cpus.append(cpu)
            out['bytes'].append(nbytes)
            out['rss'] = max(out['rss'], rss)
        wall = time.perf_counter() - t0
        # wall: all chips of the pass; cpu: CPU seconds of the loading
        # process(es) per chip, summed over chips
        out['per_scale'].append(
            dict(n=len(cpus), t=wall, cpu_n=len(cpus), cpu=sum(cpus)))
        del loader
    print('RESULT ' + json.dumps(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs'))
    parser.add_argument('--num-chips', type=int, default=24,
                        help='chips per scale')
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2])
    parser.add_argument('--sets', nargs='+', default=list(SETS))
    parser.add_argument('--methods', nargs='+', default=list(METHODS))
    parser.add_argument('--repeats', type=int, default=5,
                        help='runs per (set, method, workers), interleaved '
                        'over the methods; the tables give the median and '
                        'the ratios their range')
    parser.add_argument('--run-one', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--chips', help=argparse.SUPPRESS)
    parser.add_argument('--method', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        return run_one(args)
    if args.repeats < 1 or args.num_chips < 1:
        parser.error('--repeats and --num-chips must be >= 1')

    for set_name in args.sets:
        chips, store, num_images, num_chips = pick_chips(
            set_name, args.work_dir, args.num_chips)
        chips_file = osp.join(args.work_dir, f'bench_{set_name}_chips.pkl')
        with open(chips_file, 'wb') as f:
            pickle.dump((chips, store), f)
        files = {i['img_path'] for c in chips for i in c}
        for path in files:  # warm the page cache
            with open(path, 'rb') as f:
                f.read()
        scales = SETS[set_name]['scales']
        print(f'\n[{set_name}] {num_images} images, {num_chips} chips; '
              f'{len(chips[0])} chips per scale {scales}, '
              f'{args.repeats} runs each')
        import cv2
        cv2.setNumThreads(0)
        probe_files = sorted(files)[:6]
        ms = decoder_probe(probe_files, reps=args.repeats)
        print(f'JPEG decode, CPU ms per file ({len(probe_files)} files, '
              f'median of {args.repeats}): full (cv2) '
              f'{ms[("full", "cv2")]:.1f}' + ''.join(
                  f'; {d}: cv2 {ms[(d, "cv2")]:.1f} vs PIL draft '
                  f'{ms[(d, "PIL")]:.1f}' for d in ('1/2', '1/4', '1/8')))
        rows = {}
        for _ in range(args.repeats):
            for workers in args.workers:
                for method in args.methods:
                    rows.setdefault((workers, method), []).append(
                        _run_subprocess(chips_file, method, workers,
                                        f'{set_name}/{method}/{workers}'))
        print_tables(rows, scales, args.workers, args.methods)
        sys.stdout.flush()


def _run_subprocess(chips_file, method, workers, name):
    proc = subprocess.run([
        sys.executable, __file__, '--run-one', '--chips', chips_file,
        '--method', method, '--workers',
        str(workers)
    ], capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode or not line:
        print(proc.stdout[-2000:], proc.stderr[-4000:])
        raise SystemExit(f'{name} failed')
    return json.loads(line[0][7:])


def _overall(run, n_key, t_key):
    ps = run['per_scale']
    return sum(p[n_key] for p in ps) / sum(p[t_key] for p in ps)


def print_tables(rows, scales, workers_list, methods):
    """Median chips/s per scale and overall over the runs; the ratio to
    naive per run (run i of a method against run i of naive), as the
    median and [min-max]."""
    header = ' '.join(f'{str(s):>10}' for s in scales)
    for kind, n_key, t_key in (('wall', 'n', 't'), ('CPU', 'cpu_n', 'cpu')):
        print(f'chips per {kind} second'
              + (' (per worker process)' if kind == 'CPU' else ''))
        print(f'{"workers":>7} {"method":>8} {header} {"overall":>8} '
              f'{"vs naive [range]":>20} {"peak RSS MB":>11} '
              f'{"KiB/chip":>8}')
        for workers in workers_list:
            naive = rows.get((workers, 'naive'))
            for method in methods:
                runs = rows[(workers, method)]
                rates = [
                    np.median([p[n_key] / p[t_key] for p in
                               (r['per_scale'][k] for r in runs)])
                    for k in range(len(scales))
                ]
                overall = [_overall(r, n_key, t_key) for r in runs]
                ratio = ''
                if naive is not None:
                    rs = [o / _overall(n, n_key, t_key)
                          for o, n in zip(overall, naive)]
                    ratio = (f'{np.median(rs):5.2f}x '
                             f'[{min(rs):.2f}-{max(rs):.2f}]')
                rss = max(r['rss'] for r in runs)
                kib = np.mean([b for r in runs for b in r['bytes']]) / 1024
                print(f'{workers:>7} {method:>8} ' +
                      ' '.join(f'{v:10.1f}' for v in rates) +
                      f' {np.median(overall):8.1f} {ratio:>20} '
                      f'{rss:11.0f} {kib:8.0f}')


if __name__ == '__main__':
    main()
