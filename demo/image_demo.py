#!/usr/bin/env python
"""SNIPER multi-scale inference on an image or a folder of images.

    python demo/image_demo.py IMAGE_OR_FOLDER CONFIG CHECKPOINT
        [--out-dir outputs] [--device cpu] [--score-thr 0.3] [--no-vis]
        [--ann COCO.json] [--batch-size 1] [--trust-checkpoint]
        [--cfg-options ...]

The same program as ``tools/infer.py`` (see there): one picture per image
in ``OUT_DIR/vis/`` (drawn with mmdet's ``DetLocalVisualizer``), the
detections in ``OUT_DIR/predictions.json`` (COCO results), a progress bar,
resume, and unreadable images named, skipped and listed at the end (exit
status 1). CHECKPOINT is loaded weights-only; ``--trust-checkpoint`` allows
one that is not weights-only loadable (see :mod:`mmsniper.utils.checkpoint`).
"""
import importlib.util
import sys
from pathlib import Path

INFER = Path(__file__).resolve().parents[1] / 'tools' / 'infer.py'


def _infer_module():
    spec = importlib.util.spec_from_file_location('mmsniper_tools_infer',
                                                  str(INFER))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    return _infer_module().parse_args(argv)


def main(argv=None):
    return _infer_module().main(
        argv,
        description='SNIPER multi-scale inference on an image or a folder')


if __name__ == '__main__':
    sys.exit(main())
