#!/usr/bin/env python
"""Write the SNIPER version of any MMDetection detector config.

    python tools/misc/make_sniper_config.py SOURCE --out NEW.py
        [--scales S [S ...] --valid-ranges LO,HI [LO,HI ...] |
         --advice scale_advice.json] [--chip-size 512] [--stride 32]
        [--test-scales S [S ...] --test-valid-ranges LO,HI [LO,HI ...]]
        [--no-check]

SOURCE is an ``mmdet::`` model-zoo config (e.g.
``mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py``), a config file, or one
of mmsniper's (``mmsniper::sniper/...``). The new config inherits SOURCE and
overrides what SNIPER needs (see :mod:`mmsniper.apis.sniper_config`); each
change is printed. Unless ``--no-check``, the new config is loaded, its
model built, and the build-time ignore check run on it.

Scales: factors (``3.0``) or ``SHORT,LONG`` pairs (``-1,512``: long side
512), finest first; ranges ``LO,HI`` in original px (``-1`` open). Default:
the reference COCO ones, or the proposal of
``tools/analysis_tools/analyze_scales.py --out-dir`` (``--advice``).
"""
import argparse
import os
import os.path as osp
import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[2])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmsniper.chips.settings import (NEGATIVE_VALUE_MATCHER,  # noqa: E402
                                     parse_range, parse_scale)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write the SNIPER version of an mmdet config')
    parser._negative_number_matcher = NEGATIVE_VALUE_MATCHER
    parser.add_argument(
        'source', help="mmdet::path/in/zoo.py, a config file or mmsniper::")
    parser.add_argument('--out', required=True, help='the new config file')
    parser.add_argument(
        '--scales',
        nargs='+',
        type=parse_scale,
        help='training scales, finest first: factors or SHORT,LONG')
    parser.add_argument(
        '--valid-ranges',
        nargs='+',
        type=parse_range,
        help='one LO,HI sqrt-area range (original px, -1 open) per scale')
    parser.add_argument(
        '--advice', help='scale_advice.json of analyze_scales.py --out-dir')
    parser.add_argument(
        '--test-scales',
        nargs='+',
        type=parse_scale,
        help='--tta scales (default: the reference COCO test scales with '
        'the reference training scales, else the training scales)')
    parser.add_argument(
        '--test-valid-ranges',
        nargs='+',
        type=parse_range,
        help='one LO,HI test range per test scale')
    parser.add_argument('--chip-size', type=int, default=512)
    parser.add_argument('--stride', type=int, default=32)
    parser.add_argument(
        '--no-check',
        action='store_true',
        help='do not build the model and run the ignore check')
    parser.add_argument(
        '--force', action='store_true', help='overwrite --out')
    return parser, parser.parse_args(argv)


def check(out: str) -> None:
    """Load the new config, build its model and run the ignore check."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsniper  # noqa: F401
    from mmdet.registry import MODELS
    from mmsniper.models.ignore_support import check_ignore_support
    cfg = Config.fromfile(out)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    problems = check_ignore_support(MODELS.build(cfg.model))
    if problems:
        sys.exit('make_sniper_config: the new config still trains ignored '
                 'GT as background:\n  - ' + '\n  - '.join(problems))
    print(f'checked: {out} loads, its model builds, and every head '
          'honours ignored GT')


def main(argv=None):
    parser, args = parse_args(argv)
    if osp.exists(args.out) and not args.force:
        parser.error(f'{args.out} exists; add --force to overwrite it')
    from mmsniper.apis.sniper_config import make_sniper_config
    try:
        text, notes = make_sniper_config(
            args.source,
            out=args.out,
            scales=args.scales,
            valid_ranges=args.valid_ranges,
            advice=args.advice,
            chip_size=args.chip_size,
            stride=args.stride,
            test_scales=args.test_scales,
            test_valid_ranges=args.test_valid_ranges)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, args.out)
    print(f'wrote {args.out} from {args.source}:')
    for note in notes:
        print(f'  - {note}')
    if not args.no_check:
        check(args.out)


if __name__ == '__main__':
    main()
