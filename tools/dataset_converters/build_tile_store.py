# Copyright (c) mmsniper contributors. All rights reserved.
"""Build a tiled, pyramidal image store for fast chip loading.

Example::

    python tools/dataset_converters/build_tile_store.py \
        configs/sniper/faster-rcnn_r50_fpn_sniper-1x_coco.py \
        --out data/coco/tile_store --nproc 8
    # or from a COCO annotation file:
    python tools/dataset_converters/build_tile_store.py \
        data/coco/annotations/instances_train2017.json \
        --img-dir data/coco/train2017 --out data/coco/tile_store

then set ``tile_store='data/coco/tile_store'`` in the config's
``LoadSniperChipFromFile``. Each image becomes one tiled TIFF (levels 1,
1/2, 1/4, ..., lossless; see :mod:`mmsniper.datasets.tile_store`). The run
checks free disk space first, shows a progress bar, and resumes: an image
whose store file exists, is complete (every level and tile within the
file) and was built from the same source file (size and mtime) is skipped,
others (changed sources, truncated store files) are rebuilt; files are
written under a temporary name and renamed when complete, so an
interrupted run loses nothing and redoes only the images that were in
progress. Images that cannot be decoded or whose size
differs from the annotation are listed at the end (exit status 1); the
others are still written.
"""
import argparse
import hashlib
import os
import os.path as osp
import shutil
import sys
import time
from multiprocessing import Pool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mmsniper.datasets.image_io import (  # noqa: E402
    annotated_size, check_image_size, decode_image)
from mmsniper.datasets.image_list import images_of  # noqa: E402
from mmsniper.utils.cli import add_image_source_args  # noqa: E402
from mmsniper.datasets.tile_store import (  # noqa: E402
    COMPRESSIONS, TileStore, is_up_to_date, num_levels, relative_to,
    source_stamp, write_store_meta, write_tiled_pyramid)


def tile_side(text: str) -> int:
    """``--tile``: a positive multiple of 16 (TIFF tiles)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not an integer: {text!r}')
    if value < 16 or value % 16:
        raise argparse.ArgumentTypeError(
            f'must be a positive multiple of 16, got {value}')
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not an integer: {text!r}')
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Build a tiled pyramidal image store (resumable)')
    parser.add_argument(
        'config_or_ann', help='mmdet config, or a COCO annotation .json')
    parser.add_argument('--out', required=True, help='store directory')
    add_image_source_args(parser, 'convert')
    parser.add_argument(
        '--tile',
        type=tile_side,
        default=256,
        help='tile side in px (multiple of 16)')
    parser.add_argument(
        '--compression',
        default='zstd',
        choices=COMPRESSIONS,
        help='lossless tile compression')
    parser.add_argument(
        '--nproc',
        type=positive_int,
        default=os.cpu_count() or 1,
        help='worker processes')
    parser.add_argument(
        '--no-disk-check',
        action='store_true',
        help='skip the free-disk-space check')
    return parser.parse_args(argv)


def _convert(job):
    """Convert one image; never raises (errors are returned)."""
    img_path, tif_path, tile, compression, color_type, ann_hw = job
    try:
        src_bytes = osp.getsize(img_path)
        if is_up_to_date(tif_path, img_path):
            return dict(
                status='skipped',
                img_path=img_path,
                src_bytes=src_bytes,
                store_bytes=osp.getsize(tif_path))
        stamp = source_stamp(img_path)
        with open(img_path, 'rb') as f:
            img_bytes = f.read()
        sha256 = hashlib.sha256(img_bytes).hexdigest()
        img = decode_image(img_bytes, img_path, color_type)
        del img_bytes
        if ann_hw is not None:
            check_image_size(img_path, img.shape[:2], ann_hw, color_type)
        store_bytes = write_tiled_pyramid(
            img,
            tif_path,
            tile,
            compression,
            description=dict(
                stamp, sha256=sha256, source=osp.abspath(img_path)))
        return dict(
            status='done',
            img_path=img_path,
            src_bytes=src_bytes,
            store_bytes=store_bytes)
    except Exception as e:  # reported at the end
        return dict(
            status='error',
            img_path=img_path,
            error=f'{type(e).__name__}: {e}')


def estimate_bytes(images) -> int:
    """Upper-ish estimate of the store size: raw pixels x 4/3 (pyramid)."""
    total = 0
    for info in images:
        hw = annotated_size(info)
        if hw is None:
            total += 10 * osp.getsize(info['img_path'])
        else:
            total += hw[0] * hw[1] * 3 * 4 // 3
    return total


def main(argv=None):
    args = parse_args(argv)
    images = images_of(args.config_or_ann, args.img_dir, args.splits)
    if not images:
        print('no images found', file=sys.stderr)
        return 1
    color_types = {info['color_type'] for info in images}
    if len(color_types) != 1:
        raise SystemExit(f'the datasets load with several color types '
                         f'{sorted(color_types)}; build one store per type')
    color_type = color_types.pop()
    image_root = osp.commonpath(
        [osp.dirname(osp.realpath(i['img_path'])) for i in images])
    meta = write_store_meta(args.out, image_root, args.tile, args.compression,
                            color_type)
    image_root = osp.realpath(meta['image_root'])
    jobs, todo = [], []
    for info in images:
        rel = relative_to(osp.realpath(info['img_path']), image_root)
        if rel is None:
            raise SystemExit(
                f"{info['img_path']} is outside the store's image root "
                f'{image_root}; use another --out')
        tif = osp.join(args.out, TileStore.relative_tif(rel))
        job = (info['img_path'], tif, args.tile, args.compression, color_type,
               annotated_size(info))
        jobs.append(job)
        if not osp.isfile(tif):
            todo.append(info)
    # Stray temporary files of an interrupted run.
    for dirpath, _, files in os.walk(args.out):
        for name in files:
            if '.tif.tmp' in name:
                os.remove(osp.join(dirpath, name))

    need = estimate_bytes(todo)
    free = shutil.disk_usage(args.out).free
    print(f'{len(images)} images, {len(images) - len(todo)} already in '
          f'{args.out}; estimated space for the rest {need / 2**30:.2f} GiB '
          f'(raw pixels x 4/3), free {free / 2**30:.2f} GiB')
    if need > free and not args.no_disk_check:
        print(
            f'not enough free disk space in {args.out}: need about '
            f'{need / 2**30:.2f} GiB, have {free / 2**30:.2f} GiB (use '
            '--no-disk-check to try anyway)',
            file=sys.stderr)
        return 1

    from mmengine.utils import ProgressBar
    results = []
    bar = ProgressBar(len(jobs))
    start = time.time()
    if args.nproc <= 1:
        for job in jobs:
            results.append(_convert(job))
            bar.update()
    else:
        with Pool(args.nproc) as pool:
            for res in pool.imap_unordered(_convert, jobs, chunksize=1):
                results.append(res)
                bar.update()
    print()
    done = [r for r in results if r['status'] == 'done']
    skipped = [r for r in results if r['status'] == 'skipped']
    errors = [r for r in results if r['status'] == 'error']
    ok = done + skipped
    src = sum(r['src_bytes'] for r in ok)
    store = sum(r['store_bytes'] for r in ok)
    levels = {}
    for info in images:
        hw = annotated_size(info)
        if hw is not None:
            k = num_levels(hw[0], hw[1], args.tile)
            levels[k] = levels.get(k, 0) + 1
    print(f'{len(done)} written, {len(skipped)} up to date, {len(errors)} '
          f'failed in {time.time() - start:.1f} s; store {store / 2**20:.1f} '
          f'MiB for {src / 2**20:.1f} MiB of source images '
          f'(ratio {store / max(src, 1):.2f}x); levels per image: ' +
          ', '.join(f'{k}: {n}' for k, n in sorted(levels.items())))
    if errors:
        print(f'{len(errors)} images failed:', file=sys.stderr)
        for r in errors:
            print(f"  {r['img_path']}: {r['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
