# Copyright (c) mmsniper contributors. All rights reserved.
"""Chip pipeline throughput: four ways to load the same chips, in one run.

    python benchmarks/bench_chip_pipeline.py [--num-chips 24] \
        [--workers 0 2] [--sets demo photos]

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
(set, method, workers) run is a fresh subprocess (clean peak-memory
figures) over the same chips; the files are read once before timing (warm
page cache). Reported: chips/s per scale and overall, peak RSS per
data-loader worker (the main process for 0 workers; forked workers start
with the parent's pages), and bytes read from disk per chip.
"""
import argparse
import io
import json
import math
import os
import os.path as osp
import pickle
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

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
        from mmsniper.datasets.synthetic import ensure_synthetic_dataset
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


class ChipSet:
    """A torch-style dataset of pre-chosen chips through one method."""

    def __init__(self, infos, method, store):
        self.infos, self.method, self.store = infos, method, store
        self.pipe = None

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
        if self.pipe is None:
            self._build()
            self.pipe = True
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
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.
        return nbytes, rss, cpu


def run_one(args):
    """One (set, method, workers) run in this process; prints JSON."""
    import torch
    torch.set_num_threads(1)
    from torch.utils.data import DataLoader
    with open(args.chips, 'rb') as f:
        chips, store = pickle.load(f)  # our own file, written just now
    out = dict(per_scale=[], bytes=[], rss=0.)
    for infos in chips:
        loader = DataLoader(
            ChipSet(infos, args.method, store), batch_size=None,
            shuffle=False, num_workers=args.workers[0])
        stamps, cpus = [], []
        for nbytes, rss, cpu in loader:
            stamps.append(time.perf_counter())
            cpus.append(cpu)
            out['bytes'].append(nbytes)
            out['rss'] = max(out['rss'], rss)
        # wall: from the first chip's arrival (worker start-up excluded);
        # cpu: CPU seconds of the loading process per chip, all chips
        out['per_scale'].append(
            dict(n=len(stamps) - 1, t=stamps[-1] - stamps[0],
                 cpu_n=len(cpus), cpu=sum(cpus)))
    print('RESULT ' + json.dumps(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs'))
    parser.add_argument('--num-chips', type=int, default=24,
                        help='chips per scale (timed: this minus one)')
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2])
    parser.add_argument('--sets', nargs='+', default=list(SETS))
    parser.add_argument('--methods', nargs='+', default=list(METHODS))
    parser.add_argument('--run-one', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--chips', help=argparse.SUPPRESS)
    parser.add_argument('--method', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        return run_one(args)

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
              f'{args.num_chips} chips per scale {scales}')
        rows = {}
        for workers in args.workers:
            for method in args.methods:
                proc = subprocess.run([
                    sys.executable, __file__, '--run-one', '--chips',
                    chips_file, '--method', method, '--workers',
                    str(workers)
                ], capture_output=True, text=True)
                line = [ln for ln in proc.stdout.splitlines()
                        if ln.startswith('RESULT ')]
                if proc.returncode or not line:
                    print(proc.stdout[-2000:], proc.stderr[-4000:])
                    raise SystemExit(f'{set_name}/{method}/{workers} failed')
                rows[(workers, method)] = json.loads(line[0][7:])
        header = ' '.join(f'{str(s):>10}' for s in scales)
        for kind, n_key, t_key in (('wall', 'n', 't'),
                                   ('CPU', 'cpu_n', 'cpu')):
            print(f'chips per {kind} second'
                  + (' (per worker process)' if kind == 'CPU' else ''))
            print(f'{"workers":>7} {"method":>8} {header} {"overall":>8} '
                  f'{"vs naive":>8} {"peak RSS MB":>11} {"KiB/chip":>8}')
            for workers in args.workers:
                naive = rows.get((workers, 'naive'))
                for method in args.methods:
                    r = rows[(workers, method)]
                    ps = r['per_scale']
                    rates = [p[n_key] / p[t_key] for p in ps]
                    overall = sum(p[n_key] for p in ps) / sum(
                        p[t_key] for p in ps)
                    ratio = ''
                    if naive is not None:
                        nps = naive['per_scale']
                        n_overall = sum(p[n_key] for p in nps) / sum(
                            p[t_key] for p in nps)
                        ratio = f'{overall / n_overall:7.2f}x'
                    print(f'{workers:>7} {method:>8} ' +
                          ' '.join(f'{v:10.1f}' for v in rates) +
                          f' {overall:8.1f} {ratio:>8} {r["rss"]:11.0f} '
                          f'{np.mean(r["bytes"]) / 1024:8.0f}')
        sys.stdout.flush()


if __name__ == '__main__':
    main()
