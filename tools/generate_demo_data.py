# Copyright (c) mmsniper contributors. All rights reserved.
"""Generate the synthetic aerial demo dataset (COCO format).

Example::

    python tools/generate_demo_data.py --out-dir data/sniper_demo --seed 0

Generation is skipped when ``out_dir`` already holds a dataset made with the
same arguments and generator version (use ``--force`` to rewrite it).
"""
import argparse
import json
import os.path as osp
import sys

# Run from a checkout without installing mmsniper.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmsniper.testing.synthetic import (  # noqa: E402
    SYNTHETIC_CLASSES, ensure_synthetic_dataset, generate_synthetic_dataset)


def parse_args(argv=None):
    """Parse command line arguments.

    Args:
        argv (list[str], optional): Arguments; defaults to ``sys.argv``.

    Returns:
        argparse.Namespace: Parsed arguments.
    """
    parser = argparse.ArgumentParser(
        description='Generate the synthetic SNIPER demo dataset')
    parser.add_argument(
        '--out-dir', default='data/sniper_demo', help='output directory')
    parser.add_argument('--seed', type=int, default=0, help='base seed')
    parser.add_argument(
        '--num-train', type=int, default=24, help='number of training images')
    parser.add_argument(
        '--num-val', type=int, default=8, help='number of validation images')
    parser.add_argument(
        '--min-size',
        type=int,
        default=1500,
        help='smallest image side in pixels')
    parser.add_argument(
        '--max-size',
        type=int,
        default=2500,
        help='largest image side in pixels')
    parser.add_argument(
        '--classes',
        nargs='+',
        choices=SYNTHETIC_CLASSES,
        default=list(SYNTHETIC_CLASSES),
        help='classes to draw (their order sets the ids)')
    parser.add_argument('--jpeg-quality', type=int, default=90)
    parser.add_argument(
        '--workers',
        type=int,
        default=None,
        help='rendering threads (default: CPU count, max 4)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='regenerate even if an identical dataset exists')
    return parser.parse_args(argv)


def main(argv=None):
    """Generate (or reuse) the dataset and print its statistics.

    Args:
        argv (list[str], optional): Command line arguments.
    """
    args = parse_args(argv)
    kwargs = dict(
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed,
        min_size=args.min_size,
        max_size=args.max_size,
        classes=tuple(args.classes),
        jpeg_quality=args.jpeg_quality)
    if args.force:
        result = generate_synthetic_dataset(
            args.out_dir, workers=args.workers, **kwargs)
    else:
        result = ensure_synthetic_dataset(
            args.out_dir, workers=args.workers, **kwargs)
    if result['generated']:
        print(f"Generated {args.out_dir} in {result['seconds']:.1f} s")
    else:
        print(f'{args.out_dir} is up to date (use --force to regenerate)')
    for split, stats in result['stats'].items():
        print(f'{split}: {json.dumps(stats)}')


if __name__ == '__main__':
    main()
