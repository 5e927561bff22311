# Copyright (c) mmsniper contributors. All rights reserved.
"""Check every image of a config once before a long run.

Example::

    python tools/analysis_tools/check_images.py CONFIG [--splits train val]
        [--nproc 8]

Each image is read and fully decoded the way the training pipeline decodes
it (``mmcv.imfrombytes`` with the loader's ``color_type``: EXIF orientation
applied for 'color', BGR), and its size is compared with the annotation's
``height``/``width``. Missing, empty, garbage and truncated files, images
over PIL's or OpenCV's pixel limit, and size mismatches (e.g. a file twice
the annotated size, transposed or EXIF-rotated) are collected and all
reported at the end; the exit status is 1 when there is any problem.
A COCO annotation file with ``--img-dir`` works too.
"""
import argparse
import os
import os.path as osp
import sys
from multiprocessing import Pool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from mmsniper.datasets.image_io import (  # noqa: E402
    annotated_size, check_image_size, decode_image)
from mmsniper.datasets.image_list import images_of  # noqa: E402
from mmsniper.utils.cli import add_image_source_args  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Decode every image once and compare its size with the '
        'annotation')
    parser.add_argument('config', help='mmdet config, or a COCO .json')
    add_image_source_args(parser, 'check')
    parser.add_argument(
        '--imdecode-backend',
        default='cv2',
        choices=['cv2', 'pillow', 'turbojpeg', 'tifffile'])
    parser.add_argument('--nproc', type=int, default=os.cpu_count() or 1)
    return parser.parse_args(argv)


def check_one(job):
    """Problem message for one image, or None."""
    info, backend = job
    path = info['img_path']
    try:
        with open(path, 'rb') as f:
            img_bytes = f.read()
        img = decode_image(img_bytes, path, info['color_type'], backend)
        hw = annotated_size(info)
        if hw is None:
            return f'{path}: the annotation has no height/width'
        check_image_size(path, img.shape[:2], hw, info['color_type'])
    except Exception as e:
        return f'{type(e).__name__}: {e}'
    return None


def main(argv=None):
    args = parse_args(argv)
    images = images_of(args.config, args.img_dir, args.splits)
    jobs = [(info, args.imdecode_backend) for info in images]
    from mmengine.utils import ProgressBar
    bar = ProgressBar(len(jobs))
    problems = []
    if args.nproc <= 1:
        results = map(check_one, jobs)
    else:
        pool = Pool(args.nproc)
        results = pool.imap_unordered(check_one, jobs, chunksize=4)
    for res in results:
        if res is not None:
            problems.append(res)
        bar.update()
    if args.nproc > 1:
        pool.close()
        pool.join()
    print()
    if problems:
        print(
            f'{len(problems)} of {len(images)} images have problems:',
            file=sys.stderr)
        for p in sorted(problems):
            print(f'  {p}', file=sys.stderr)
        return 1
    print(f'all {len(images)} images decode and match their annotated size')
    return 0


if __name__ == '__main__':
    sys.exit(main())
