# Copyright (c) mmsniper contributors. All rights reserved.
"""SAHI's sliced prediction and our SNIPER multi-scale test, side by side.

On one trained detector (a config and its checkpoint) and a COCO-format
validation set, each setting predicts every image, and the table reports
bbox AP and AP_small (pycocotools ``COCOeval``), the pixels the detector
processed per image, the wall seconds per image and the peak RSS:

* ``single``: mmdet's own single-scale test (``inference_detector`` with the
  config's test pipeline), the baseline.
* ``sahi-default``: SAHI 0.12.8 ``get_sliced_prediction`` with its
  documented defaults: 512 px slices, 0.2 overlap, ``perform_standard_pred``
  (the whole image too), GREEDYNMM merge with IOS 0.5, class-wise.
* ``sahi-nms``: the same with an NMS / IoU 0.5 merge (what SAHI itself
  switches to below a 0.1 confidence threshold, see below).
* ``sahi-budget`` (GREEDYNMM / IOS) and ``sahi-budget-nms`` (NMS / IoU):
  SAHI at our test's resolution. SAHI has no per-slice resize of its own;
  the detector's test ``Resize`` is the knob (SAHI's ``image_size``, which
  sets that Resize's ``scale``, keep-ratio). Slices of ``--slice-size`` px
  are resized to ``--slice-size * f`` where ``f`` is the config's finest
  numeric ``tta_model`` scale (1.5 for the demo; ``--budget-factor``): the
  small objects are seen at the same magnification as by our finest scale,
  and the standard (whole-image) prediction then runs at that same long
  side, as our coarsest scale runs the whole image at long side 512. It
  costs more pixels than our test (0.2 overlap, and every slice upscaled,
  where our coarser scales run at 0.6x and at 512 px): the table says how
  many.
* ``tta``: our SNIPER multi-scale test (``tools/test.py --tta``), the
  config's ``tta_model`` (``SniperTTAModel``) through
  :func:`mmsniper.apis.init_sniper_detector` / ``inference_sniper``. For an
  AutoFocus config (``tta_model.type='AutoFocusTTAModel'``) this row is run
  with ``focus=False`` (every scale on the whole image) and
  ``autofocus`` adds the AutoFocus test.

SAHI runs through its own mmdet v3 wrapper,
``sahi.models.mmdet.MmdetDetectionModel`` (mmdet's ``DetInferencer``), not a
wrapper of ours. Two things are adapted on a copy of the config so that
wrapper accepts it: the test pipeline's first step becomes
``LoadImageFromFile`` (SAHI looks it up by that name and swaps in
``mmdet.InferencerLoader``; our configs load with ``LoadSniperChipFromFile``,
which only adds checks for files), and ``train_dataloader`` is replaced by
the test dataset (SAHI reads ``train_dataloader.dataset.pipeline`` to
decide whether the model predicts masks; our ``SniperChipDataset`` keeps its
pipeline one level down). The checkpoint is loaded weights-only, as by our
tools. Its ``perform_inference`` is wrapped only to count the pixels.

All settings keep detections down to the config's
``test_cfg.rcnn.score_thr`` (0.05 in mmdet's configs): SAHI's model
``confidence_threshold`` is set to it, and ``force_postprocess_type=True``
keeps each setting's merge (SAHI would otherwise switch its documented
GREEDYNMM / IOS to NMS / IoU below a threshold of 0.1). Its default of 0.3
would only cut recall, and AP with it.

Pixels per image are the pixels the detector's forward saw, padding not
counted: for ``single`` and SAHI, every input (image or slice) after the
config's test ``Resize`` (:func:`resized_hw`); for our tests, the model's
own count (``sniper_stats['pixels']``: every view at its scale). Each
setting runs in a subprocess of its own; peak RSS is that process's
``VmHWM`` (:func:`mmsniper.utils.memory.peak_rss_bytes`), the model, the
libraries and the inference together. Seconds per image are the wall time
of the prediction calls (image decode included, model building not), the
first image included (no warm-up).

SAHI is not a dependency of mmsniper, nor installed by ``make test``::

    .venv/bin/python -m pip install --no-deps --target work_dirs/sahi_site \\
        -c requirements/constraints.txt -r requirements/sahi.txt

Usage::

    PYTHONPATH=work_dirs/sahi_site python benchmarks/compare_sahi.py \\
        CONFIG CHECKPOINT --ann VAL.json --img-dir VAL_IMAGES \\
        [--settings single sahi-default sahi-nms sahi-budget sahi-budget-nms
                    tta] [--max-images N] \\
        [--slice-size 512] [--overlap 0.2] [--out results.json]
"""
import argparse
import contextlib
import copy
import io
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

BENCH_DIR = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(BENCH_DIR)
sys.path.insert(0, REPO_ROOT)  # benchmark the working tree

SAHI_REQUIREMENTS = 'requirements/sahi.txt'
SAHI_INSTALL = ('.venv/bin/python -m pip install --no-deps --target '
                'work_dirs/sahi_site -c requirements/constraints.txt -r '
                f'{SAHI_REQUIREMENTS}')
#: SAHI setting -> (slices resized to our finest scale, (merge, metric)).
SAHI_SETTINGS = {
    'sahi-default': (False, ('GREEDYNMM', 'IOS')),
    'sahi-nms': (False, ('NMS', 'IOU')),
    'sahi-budget': (True, ('GREEDYNMM', 'IOS')),
    'sahi-budget-nms': (True, ('NMS', 'IOU')),
}
ALL_SETTINGS = ('single', ) + tuple(SAHI_SETTINGS) + ('tta', 'autofocus')
DEFAULT_SETTINGS = ('single', ) + tuple(SAHI_SETTINGS) + ('tta', )
LABELS = {
    'single': 'single scale (mmdet test pipeline)',
    'sahi-default': 'SAHI 0.12.8, defaults (GREEDYNMM/IOS 0.5)',
    'sahi-nms': 'SAHI 0.12.8, defaults but NMS/IoU 0.5',
    'sahi-budget': 'SAHI 0.12.8, slices at our finest scale, GREEDYNMM/IOS',
    'sahi-budget-nms': 'SAHI 0.12.8, slices at our finest scale, NMS/IoU',
    'tta': 'SNIPER multi-scale (`--tta`)',
    'autofocus': 'AutoFocus (`--tta`)',
}


class SahiMissingError(RuntimeError):
    """``import sahi`` failed: the message says how to install it."""


def import_sahi():
    """Import SAHI, or raise :class:`SahiMissingError` naming
    ``requirements/sahi.txt``."""
    try:
        import sahi  # noqa: F401
        from sahi.models.mmdet import MmdetDetectionModel  # noqa: F401
        from sahi.predict import get_sliced_prediction  # noqa: F401
    except ImportError as exc:
        raise SahiMissingError(
            f'compare_sahi: cannot import sahi ({exc}). SAHI is installed '
            f'for this benchmark only, from {SAHI_REQUIREMENTS}: '
            f'`{SAHI_INSTALL}`, then run with '
            'PYTHONPATH=work_dirs/sahi_site') from exc
    return sahi


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='SAHI sliced prediction vs the SNIPER multi-scale test '
        'on one detector: AP, AP_small, px, s and peak RSS per image')
    parser.add_argument('config', help='detector config (with a tta_model)')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('--ann', required=True,
                        help='COCO annotation file of the images')
    parser.add_argument('--img-dir', required=True,
                        help='folder of the images (file_name in --ann)')
    parser.add_argument('--settings', nargs='+', default=None,
                        choices=ALL_SETTINGS,
                        help='settings to run, in this order (default: '
                        f'{" ".join(DEFAULT_SETTINGS)}, and autofocus '
                        'for an AutoFocus config)')
    parser.add_argument('--max-images', type=int, default=None,
                        help='only the first N images (by id)')
    parser.add_argument('--slice-size', type=int, default=512,
                        help='SAHI slice side, orig px (its default 512)')
    parser.add_argument('--overlap', type=float, default=0.2,
                        help='SAHI slice overlap ratio (its default 0.2)')
    parser.add_argument('--budget-factor', type=float, default=None,
                        help='sahi-budget: slices resized by this factor '
                        '(default: the finest numeric tta_model scale)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--out', default=None,
                        help='write the rows (and the table) as JSON here')
    parser.add_argument('--worker', choices=ALL_SETTINGS, default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument('--worker-out', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        parser.error('--max-images must be >= 1')
    if args.slice_size < 1:
        parser.error('--slice-size must be >= 1')
    if not 0 <= args.overlap < 1:
        parser.error('--overlap must be in [0, 1)')
    if args.budget_factor is not None and args.budget_factor <= 0:
        parser.error('--budget-factor must be > 0')
    if args.worker and not args.worker_out:
        parser.error('--worker needs --worker-out')
    return args


# ----------------------------------------------------------------------
# pixels
# ----------------------------------------------------------------------
def _type_name(step) -> str:
    return str(step['type'] if isinstance(step, dict) else
               getattr(step, '__name__', step)).split('.')[-1]


def find_resize(pipeline: Sequence[dict]) -> Optional[dict]:
    """The test pipeline's ``Resize`` step (``None`` when it has none).

    Raises:
        NotImplementedError: for another resizing step (``RandomResize``,
            ``FixShapeResize``, ``TestTimeAug``...), whose pixels this
            script does not count.
    """
    found = None
    for step in pipeline:
        name = _type_name(step)
        if name == 'Resize':
            if found is not None:
                raise NotImplementedError(
                    'compare_sahi: the test pipeline has two Resize steps')
            found = dict(step)
        elif 'Resize' in name or name == 'TestTimeAug':
            raise NotImplementedError(
                f'compare_sahi: cannot count the pixels of a {name} step in '
                'the test pipeline (only mmdet Resize is supported)')
    return found


def resized_hw(height: int, width: int,
               resize: Optional[dict]) -> Tuple[int, int]:
    """``(h, w)`` of a ``height x width`` input after an mmdet ``Resize``
    step (``scale`` / ``scale_factor``, ``keep_ratio``), as mmcv computes it
    (``None``: no resize)."""
    if resize is None:
        return int(height), int(width)
    from mmcv.image.geometric import _scale_size, rescale_size
    scale = resize.get('scale', None)
    if scale is not None:
        scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
    else:
        factor = resize['scale_factor']
        if isinstance(factor, (int, float)):
            factor = (float(factor), float(factor))
        scale = _scale_size((width, height), tuple(factor))
    if resize.get('keep_ratio', False):
        new_w, new_h = rescale_size((width, height), scale)
    else:
        new_w, new_h = scale
    return int(new_h), int(new_w)


def budget_factor(tta_cfg: dict) -> float:
    """The finest numeric scale of a ``tta_model`` (the sahi-budget
    magnification)."""
    numeric = [s for s in tta_cfg.get('scales', ())
               if isinstance(s, (int, float)) and not isinstance(s, bool)]
    if not numeric:
        raise ValueError(
            'compare_sahi: the tta_model has no numeric scale to take the '
            'sahi-budget magnification from; pass --budget-factor')
    return float(max(numeric))


# ----------------------------------------------------------------------
# COCO results and evaluation
# ----------------------------------------------------------------------
def label_to_category(classes: Sequence[str], coco_categories: List[dict]
                      ) -> Dict[int, int]:
    """Detector label index -> COCO ``category_id``, by class name."""
    by_name = {c['name']: c['id'] for c in coco_categories}
    missing = [c for c in classes if c not in by_name]
    if missing:
        raise ValueError(
            f'compare_sahi: classes {missing} of the detector are not '
            f'categories of the annotation file ({sorted(by_name)})')
    return {idx: by_name[name] for idx, name in enumerate(classes)}


def to_coco_results(image_id: int, bboxes_xyxy, scores, labels,
                    label_to_cat: Dict[int, int]) -> List[dict]:
    """Detections of one image (xyxy, orig px) as COCO results (xywh)."""
    results = []
    for box, score, label in zip(bboxes_xyxy, scores, labels):
        x1, y1, x2, y2 = (float(v) for v in box)
        results.append(
            dict(
                image_id=int(image_id),
                category_id=int(label_to_cat[int(label)]),
                bbox=[x1, y1, x2 - x1, y2 - y1],
                score=float(score)))
    return results


def sahi_detections(object_predictions) -> tuple:
    """SAHI ``ObjectPrediction`` list as (xyxy boxes in full-image px,
    scores, label indices), the input of :func:`to_coco_results`."""
    return ([p.bbox.to_xyxy() for p in object_predictions],
            [p.score.value for p in object_predictions],
            [p.category.id for p in object_predictions])


def coco_eval(ann_file: str, results: List[dict],
              image_ids: Sequence[int]) -> Tuple[float, float]:
    """bbox AP and AP_small (COCOeval, ``image_ids`` only)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        if not results:
            return 0.0, 0.0
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, 'bbox')
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[3])


def select_images(ann_file: str, img_dir: str,
                  max_images: Optional[int]) -> List[dict]:
    """The annotation file's images (by id), each checked to exist."""
    with open(ann_file) as f:
        images = sorted(json.load(f)['images'], key=lambda im: im['id'])
    if max_images is not None:
        images = images[:max_images]
    if not images:
        raise ValueError(f'compare_sahi: no images in {ann_file}')
    for im in images:
        path = osp.join(img_dir, im['file_name'])
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'compare_sahi: image {path} (id {im["id"]} of {ann_file}) '
                'does not exist')
    return images


# ----------------------------------------------------------------------
# table
# ----------------------------------------------------------------------
def _fmt_or_dash(value, fmt):
    return '-' if value is None else format(value, fmt)


def format_table(rows: List[dict]) -> str:
    """Rows (setting, AP, AP_small, px, seconds, peak RSS per image) as a
    markdown table; the pixels also relative to the single-scale row."""
    base = next((r['px_per_image'] for r in rows if r['setting'] == 'single'),
                None)
    lines = [
        '| setting | AP | AP_small | M px / image | px vs single '
        '| s / image | peak RSS (MiB) |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]
    for r in rows:
        rel = (r['px_per_image'] / base if base else None)
        lines.append(
            f'| {LABELS.get(r["setting"], r["setting"])} '
            f'| {100 * r["ap"]:.1f} | {100 * r["ap_small"]:.1f} '
            f'| {r["px_per_image"] / 1e6:.2f} '
            f'| {_fmt_or_dash(rel, ".2f")}{"x" if rel else ""} '
            f'| {r["s_per_image"]:.2f} '
            f'| {r["peak_rss_bytes"] / 2**20:.0f} |')
    return '\n'.join(lines)


# ----------------------------------------------------------------------
# the settings (each in a worker process)
# ----------------------------------------------------------------------
def _load_cfg(config: str):
    import mmsniper  # noqa: F401  registers mmsniper's modules
    from mmengine.config import Config
    return Config.fromfile(config)


def is_autofocus(cfg) -> bool:
    tta = cfg.get('tta_model', None) or {}
    return _type_name(tta) == 'AutoFocusTTAModel' if 'type' in tta else False


def _test_pipeline(cfg) -> list:
    return list(cfg.test_dataloader.dataset.pipeline)


def sahi_config(cfg):
    """A copy of ``cfg`` that SAHI's ``MmdetDetectionModel`` accepts (see the
    module docstring)."""
    cfg = copy.deepcopy(cfg)
    pipeline = [dict(step) for step in _test_pipeline(cfg)]
    if not pipeline or 'Load' not in _type_name(pipeline[0]):
        raise ValueError('compare_sahi: the test pipeline does not start '
                         'with an image loading step')
    pipeline[0] = dict(type='LoadImageFromFile',
                       backend_args=pipeline[0].get('backend_args', None))
    cfg.test_dataloader.dataset.pipeline = pipeline
    cfg.train_dataloader = dict(dataset=copy.deepcopy(
        cfg.test_dataloader.dataset))
    return cfg


def _score_thr(cfg) -> float:
    test_cfg = cfg.model.get('test_cfg', None) or {}
    if 'detector' in cfg.model and not test_cfg:
        test_cfg = cfg.model.detector.get('test_cfg', None) or {}
    rcnn = test_cfg.get('rcnn', None) or test_cfg
    return float(rcnn.get('score_thr', 0.05))


def run_worker(args) -> dict:
    """Run one setting on the images; returns its results and counters."""
    from mmsniper.utils.memory import peak_rss_bytes
    from pycocotools.coco import COCO
    name = args.worker
    if name in SAHI_SETTINGS:
        import_sahi()
    cfg = _load_cfg(args.config)
    images = select_images(args.ann, args.img_dir, args.max_images)
    with contextlib.redirect_stdout(io.StringIO()):
        categories = COCO(args.ann).loadCats(COCO(args.ann).getCatIds())
    classes = cfg.test_dataloader.dataset.metainfo['classes']
    label_to_cat = label_to_category(classes, categories)
    resize = find_resize(_test_pipeline(cfg))
    # each builder returns predict(path) -> (xyxy boxes, scores, labels)
    # and counters() -> dict(px=pixels so far[, merge_s=SAHI's merge s])
    if name in ('tta', 'autofocus'):
        predict, counters = _ours(args, cfg, focus=name == 'autofocus')
    elif name == 'single':
        predict, counters = _single(args, cfg, resize)
    else:
        predict, counters = _sahi(args, cfg, resize, name)
    results, seconds = [], 0.0
    for im in images:
        path = osp.join(args.img_dir, im['file_name'])
        start = time.perf_counter()
        boxes, scores, labels = predict(path)
        seconds += time.perf_counter() - start
        results += to_coco_results(im['id'], boxes, scores, labels,
                                   label_to_cat)
    counted = counters()
    return dict(
        setting=name,
        image_ids=[im['id'] for im in images],
        results=results,
        px_per_image=counted['px'] / len(images),
        s_per_image=seconds / len(images),
        merge_s_per_image=(counted['merge_s'] / len(images)
                           if 'merge_s' in counted else None),
        peak_rss_bytes=peak_rss_bytes())


def _instances(sample):
    inst = sample.pred_instances
    return (inst.bboxes.cpu().numpy(), inst.scores.cpu().numpy(),
            inst.labels.cpu().numpy())


def _ours(args, cfg, focus: bool):
    from mmsniper.apis import inference_sniper, init_sniper_detector
    overrides = None
    if is_autofocus(cfg):
        overrides = dict(focus=focus)
    elif focus:
        raise ValueError(f'compare_sahi: {args.config} is not an AutoFocus '
                         'config (its tta_model is not AutoFocusTTAModel)')
    model = init_sniper_detector(cfg, args.checkpoint, device=args.device,
                                 tta_model=overrides)
    model.reset_stats()

    def predict(path):
        return _instances(inference_sniper(model, path))

    return predict, lambda: dict(px=float(model.sniper_stats['pixels'].sum()))


def _single(args, cfg, resize):
    import numpy as np
    from mmdet.apis import inference_detector

    from mmsniper.apis import init_sniper_detector
    detector = init_sniper_detector(cfg, args.checkpoint,
                                    device=args.device).module
    count = [0]

    def predict(path):
        sample = inference_detector(detector, path)
        h, w = sample.ori_shape[:2]
        expected = resized_hw(h, w, resize)
        if tuple(sample.img_shape[:2]) != expected:
            raise RuntimeError(
                f'compare_sahi: {path} was resized to {sample.img_shape} by '
                f'the test pipeline, resized_hw() says {expected}')
        count[0] += int(np.prod(expected))
        return _instances(sample)

    return predict, lambda: dict(px=float(count[0]))


def _sahi(args, cfg, resize, name):
    import numpy as np
    from sahi.models.mmdet import MmdetDetectionModel
    from sahi.predict import get_sliced_prediction

    from mmsniper.utils import TRUST_FILE_ARG, trusted_checkpoint_loading
    image_size = None
    budget, (merge, metric) = SAHI_SETTINGS[name]
    if budget:
        factor = args.budget_factor or budget_factor(cfg.tta_model)
        image_size = int(round(args.slice_size * factor))
        resize = dict(resize or {}, scale=(image_size, image_size),
                      keep_ratio=True)
    count, merge_s = [0], [0.0]

    class CountingMmdetModel(MmdetDetectionModel):
        """SAHI's mmdet wrapper, counting the pixels of each input."""

        def perform_inference(self, image):
            h, w = image.shape[:2]
            count[0] += int(np.prod(resized_hw(h, w, resize)))
            return super().perform_inference(image)

    with trusted_checkpoint_loading(named_files=[args.checkpoint],
                                    file_switch=TRUST_FILE_ARG,
                                    dir_switch=None):
        model = CountingMmdetModel(
            model_path=args.checkpoint,
            config_path=sahi_config(cfg),
            device=args.device,
            confidence_threshold=_score_thr(cfg),
            image_size=image_size)

    def predict(path):
        result = get_sliced_prediction(
            path,
            model,
            slice_height=args.slice_size,
            slice_width=args.slice_size,
            overlap_height_ratio=args.overlap,
            overlap_width_ratio=args.overlap,
            perform_standard_pred=True,
            postprocess_type=merge,
            postprocess_match_metric=metric,
            postprocess_match_threshold=0.5,
            postprocess_class_agnostic=False,
            force_postprocess_type=True,
            verbose=0)
        merge_s[0] += result.durations_in_seconds.get('postprocess', 0.0)
        return sahi_detections(result.object_prediction_list)

    return predict, lambda: dict(px=float(count[0]), merge_s=merge_s[0])


# ----------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------
def worker_command(args, setting: str, out: str) -> List[str]:
    cmd = [
        sys.executable,
        osp.abspath(__file__), args.config, args.checkpoint, '--ann',
        args.ann, '--img-dir', args.img_dir, '--slice-size',
        str(args.slice_size), '--overlap',
        str(args.overlap), '--device', args.device, '--worker', setting,
        '--worker-out', out
    ]
    if args.max_images is not None:
        cmd += ['--max-images', str(args.max_images)]
    if args.budget_factor is not None:
        cmd += ['--budget-factor', str(args.budget_factor)]
    return cmd


def sahi_importable() -> bool:
    """Whether ``import sahi`` would find it (without importing it)."""
    import importlib.util
    return importlib.util.find_spec('sahi') is not None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        row = run_worker(args)
        with open(args.worker_out, 'w') as f:
            json.dump(row, f)
        return 0
    cfg = _load_cfg(args.config)
    settings = list(args.settings or DEFAULT_SETTINGS)
    if args.settings is None and is_autofocus(cfg):
        settings.append('autofocus')
    if any(s in SAHI_SETTINGS for s in settings):
        try:
            import_sahi()
        except SahiMissingError as exc:
            print(exc, file=sys.stderr)
            return 2
    select_images(args.ann, args.img_dir, args.max_images)  # fail early
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings:
            out = osp.join(tmp, f'{setting}.json')
            print(f'[compare_sahi] {setting} ...', flush=True)
            proc = subprocess.run(worker_command(args, setting, out),
                                  env=dict(os.environ))
            if proc.returncode != 0:
                print(f'compare_sahi: setting {setting} failed (exit '
                      f'{proc.returncode})', file=sys.stderr)
                return 1
            with open(out) as f:
                row = json.load(f)
            row['ap'], row['ap_small'] = coco_eval(args.ann, row['results'],
                                                   row['image_ids'])
            merge = row.get('merge_s_per_image')
            print(f'[compare_sahi] {setting}: AP {row["ap"]:.3f}, '
                  f'{row["s_per_image"]:.2f} s/image'
                  + ('' if merge is None else
                     f' (of which SAHI merge {merge:.2f} s)'),
                  flush=True)
            rows.append(row)
    table = format_table(rows)
    print(f'\n{len(rows[0]["image_ids"])} images of {args.ann}, '
          f'{args.config}, {args.checkpoint}\n')
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(
                dict(table=table,
                     rows=[{k: v for k, v in r.items() if k != 'results'}
                           for r in rows]), f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
