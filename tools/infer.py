#!/usr/bin/env python
"""SNIPER multi-scale inference over an image or a folder of images, with a
COCO results file, a progress bar and resume.

    python tools/infer.py IMAGE_OR_FOLDER CONFIG CHECKPOINT
        [--out-dir outputs] [--ann COCO.json] [--score-thr 0.3]
        [--batch-size 1] [--device cpu] [--no-vis] [--save-interval 30]
        [--allow-partial-checkpoint] [--trust-checkpoint] [--cfg-options ...]

Writes:

- ``OUT_DIR/predictions.json``: COCO results (a list of ``image_id``,
  ``category_id``, ``bbox`` [x, y, w, h] in original px, ``score``, and
  ``segmentation`` as RLE when the model gives masks), accepted by
  pycocotools' ``COCO.loadRes``. ``image_id`` is the image's id in ``--ann``
  (matched by ``file_name``: the path below the folder, else a unique base
  name), otherwise the path below the folder (the base name for a single
  file). ``category_id`` maps the model's label ``i`` to the ``--ann``
  category named ``classes[i]`` (the checkpoint's ``dataset_meta``, as
  mmdet's ``init_detector`` reads it), otherwise it is ``i``.
- ``OUT_DIR/predictions.done.json``: the images done and the settings.
  Rerunning the same command resumes: the images done are skipped, and the
  detections of an image are never written twice. Both files are replaced
  atomically (written to a temporary file, then renamed) every
  ``--save-interval`` seconds, at the end and on Ctrl-C / SIGTERM, so an
  interrupted run leaves the last complete version.
- ``OUT_DIR/vis/``: one picture per image (same relative path), unless
  ``--no-vis``.

An image that cannot be read (missing, empty, truncated, not an image, over
the loader's pixel limit) is named, skipped, the others are processed, and
the list comes at the end with exit status 1 (a rerun retries them). Exit
status 2: nothing was run (bad arguments, an ``--ann`` that lacks an image,
a resume with other settings, a checkpoint refused). CHECKPOINT is loaded
weights-only; one that is not weights-only loadable is refused unless
``--trust-checkpoint`` is given (see :mod:`mmsniper.utils.checkpoint`).
"""
import argparse
import contextlib
import json
import math
import os
import os.path as osp
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

PREDICTIONS = 'predictions.json'
DONE_RECORD = 'predictions.done.json'


class InferError(Exception):
    """A reason to stop before running the model (exit status 2)."""


def add_infer_args(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``tools/infer.py`` (and ``demo/image_demo.py``)."""
    parser.add_argument('inputs', help='image file or folder of images')
    parser.add_argument('config', help='config file (with a tta_model)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-dir',
        default='outputs',
        help='where predictions.json and the pictures (vis/) go')
    parser.add_argument(
        '--ann',
        default=None,
        help='COCO json whose image ids (matched by file_name) and category '
        'ids predictions.json uses')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='keep (and draw) detections scoring at least this; 0 keeps '
        "all the model gives (for a COCO evaluation)")
    parser.add_argument(
        '--batch-size', type=int, default=1, help='images per test_step')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--no-vis', action='store_true', help='draw no pictures')
    parser.add_argument(
        '--save-interval',
        type=float,
        default=30.0,
        help='seconds between saves of predictions.json (it is also saved '
        'at the end and when interrupted)')
    parser.add_argument(
        '--allow-partial-checkpoint',
        action='store_true',
        help='run with a checkpoint that holds under half of the '
        "detector's weights (refused by default)")
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='CHECKPOINT may be loaded with torch.load(weights_only=False) '
        'if it is not weights-only loadable. That runs code from the file: '
        'only for files you trust (refused by default).')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')


def parse_args(argv: Optional[Sequence[str]] = None,
               description: Optional[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=description or 'SNIPER inference over an image or a '
        'folder: COCO results file, pictures, progress, resume')
    add_infer_args(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if not math.isfinite(args.score_thr):
        parser.error(f'--score-thr must be a number, got {args.score_thr}')
    if not args.save_interval >= 0:
        parser.error(
            f'--save-interval must be >= 0, got {args.save_interval}')
    return args


def collect_images(inputs: str) -> List[Tuple[str, str]]:
    """``(path, key)`` per image: every image below a folder (sorted; key =
    the path below it, ``/``-separated), or one file (key = its name)."""
    from mmsniper.apis.inference import list_images
    if osp.isdir(inputs):
        try:
            paths = list_images(inputs)
        except FileNotFoundError as exc:
            raise InferError(str(exc)) from exc
        return [(path, Path(osp.relpath(path, inputs)).as_posix())
                for path in paths]
    if not osp.isfile(inputs):
        raise InferError(f'{inputs} is neither an image file nor a folder')
    return [(inputs, osp.basename(inputs))]


def _read_json(path: str, what: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise InferError(f'cannot read {what} {path}: {exc}') from exc


def coco_ids(ann_file: str, keys: Sequence[str],
             classes: Optional[Sequence[str]]) -> Tuple[Dict, List]:
    """Image ids and category ids from a COCO json.

    Args:
        ann_file (str): The COCO json.
        keys (Sequence[str]): Image keys (paths below the input folder).
        classes (Sequence[str]): The model's class names, label order.

    Returns:
        tuple(dict, list): ``key -> image id`` and, per label, the id of the
        category of that name.
    """
    coco = _read_json(ann_file, '--ann')
    if not isinstance(coco, dict) or not isinstance(
            coco.get('images'), list) or not isinstance(
                coco.get('categories'), list):
        raise InferError(f'--ann {ann_file} is not a COCO json (an object '
                         "with 'images' and 'categories' lists)")
    by_name, by_base = {}, {}
    for idx, image in enumerate(coco['images']):
        if not isinstance(image, dict) or 'id' not in image or not isinstance(
                image.get('file_name'), str):
            raise InferError(f'--ann {ann_file}: images[{idx}] has no id or '
                             'file_name')
        name = Path(osp.normpath(image['file_name'])).as_posix()
        by_name[name] = image['id']
        by_base.setdefault(osp.basename(name), []).append(image['id'])
    image_ids, missing = {}, []
    for key in keys:
        if key in by_name:
            image_ids[key] = by_name[key]
        elif len(by_base.get(osp.basename(key), ())) == 1:
            image_ids[key] = by_base[osp.basename(key)][0]
        else:
            missing.append(key)
    if missing:
        raise InferError(
            f'--ann {ann_file} has no image (or several) with the file_name '
            f'of {len(missing)} input images: {", ".join(missing[:5])}'
            f'{" ..." if len(missing) > 5 else ""}')
    if not classes:
        raise InferError(
            'the model has no class names (dataset_meta): cannot map its '
            f'labels to the categories of {ann_file}')
    cat_by_name = {}
    for idx, cat in enumerate(coco['categories']):
        if not isinstance(cat, dict) or 'id' not in cat or 'name' not in cat:
            raise InferError(f'--ann {ann_file}: categories[{idx}] has no id '
                             'or name')
        cat_by_name.setdefault(cat['name'], cat['id'])
    absent = [c for c in classes if c not in cat_by_name]
    if absent:
        raise InferError(f'--ann {ann_file} has no category named '
                         f'{", ".join(map(repr, absent))} (model classes: '
                         f'{list(classes)})')
    return image_ids, [cat_by_name[c] for c in classes]


def result_to_coco(result, image_id, cat_ids: Optional[Sequence],
                   score_thr: float) -> List[dict]:
    """COCO results entries of one ``DetDataSample`` (boxes xywh, masks as
    RLE), detections scoring below ``score_thr`` left out."""
    inst = result.pred_instances
    scores = inst.scores.detach().cpu().numpy().astype(np.float64)
    keep = scores >= score_thr
    boxes = inst.bboxes.detach().cpu().numpy().astype(np.float64)[keep]
    labels = inst.labels.detach().cpu().numpy()[keep]
    scores = scores[keep]
    masks = inst.get('masks', None)
    if masks is not None:
        if hasattr(masks, 'detach'):
            masks = masks.detach().cpu().numpy()
        elif hasattr(masks, 'to_ndarray'):
            masks = masks.to_ndarray()
        masks = np.asarray(masks)[keep]
        from pycocotools import mask as mask_util
    entries = []
    for idx, (box, label, score) in enumerate(zip(boxes, labels, scores)):
        label = int(label)
        if cat_ids is not None and not 0 <= label < len(cat_ids):
            raise ValueError(f'label {label} of {result.img_path} has no '
                             f'category ({len(cat_ids)} classes)')
        x1, y1, x2, y2 = (float(v) for v in box)
        entry = dict(
            image_id=image_id,
            category_id=cat_ids[label] if cat_ids is not None else label,
            bbox=[round(x1, 2), round(y1, 2), round(x2 - x1, 2),
                  round(y2 - y1, 2)],
            score=round(float(score), 5))
        if masks is not None:
            rle = mask_util.encode(
                np.asfortranarray(masks[idx].astype(np.uint8)))
            rle['counts'] = rle['counts'].decode('ascii')
            entry['segmentation'] = rle
        entries.append(entry)
    return entries


def atomic_write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` via a temporary file and
    ``os.replace``: ``path`` is the old or the new file, never a part."""
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        with open(tmp, 'w') as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class PredictionWriter:
    """``predictions.json`` and its record of the images done, resumed.

    The record (``predictions.done.json``) is the source of truth: on
    resume, detections of an image it does not list (written just before an
    interruption) are dropped and the image is redone.

    Args:
        out_dir (str): Where both files go.
        settings (dict): What the results depend on; a resume with other
            settings is refused.
    """

    def __init__(self, out_dir: str, settings: dict) -> None:
        self.pred_file = osp.join(out_dir, PREDICTIONS)
        self.done_file = osp.join(out_dir, DONE_RECORD)
        self.settings = json.loads(json.dumps(settings))
        self.done: Dict[str, object] = {}
        self.preds: List[dict] = []
        self.failed: Dict[str, str] = {}
        self.dropped = 0
        self._resume()

    def _resume(self) -> None:
        has_pred = osp.isfile(self.pred_file)
        if not osp.isfile(self.done_file):
            if has_pred:
                raise InferError(
                    f'{self.pred_file} exists without its record of the '
                    f'images done ({self.done_file}): it was not written by '
                    'this tool, or the record was deleted. Move it away or '
                    'choose another --out-dir')
            self.flush()
            return
        record = _read_json(self.done_file, 'the record of images done')
        if not isinstance(record, dict) or not isinstance(
                record.get('done'), dict):
            raise InferError(f'{self.done_file} is not a record of images '
                             'done; move it away or choose another --out-dir')
        old = record.get('settings', {})
        changed = [
            f'{k}: {old.get(k)!r} then, {v!r} now'
            for k, v in self.settings.items() if old.get(k) != v
        ]
        if changed and record['done']:
            raise InferError(
                f'{self.pred_file} was written with other settings '
                f'({"; ".join(changed)}): choose another --out-dir, or '
                'delete it and its record to start again')
        self.done = dict(record['done'])
        if not has_pred:
            if self.done:
                raise InferError(
                    f'{self.done_file} lists {len(self.done)} images done '
                    f'but {self.pred_file} is missing: delete the record to '
                    'start again')
            return
        preds = _read_json(self.pred_file, 'predictions')
        if not isinstance(preds, list):
            raise InferError(f'{self.pred_file} is not a list of COCO '
                             'results')
        done_ids = set(map(_hashable, self.done.values()))
        self.preds = [
            p for p in preds if _hashable(p.get('image_id')) in done_ids
        ]
        self.dropped = len(preds) - len(self.preds)

    def add(self, key: str, image_id, entries: List[dict]) -> None:
        """Record an image done with its detections (in memory)."""
        assert key not in self.done, key
        self.preds.extend(entries)
        self.done[key] = image_id
        self.failed.pop(key, None)

    def flush(self) -> None:
        """Replace both files atomically: predictions first, then the
        record that says which of them are complete."""
        atomic_write_json(self.pred_file, self.preds)
        atomic_write_json(
            self.done_file,
            dict(settings=self.settings, done=self.done, failed=self.failed))


def _hashable(value):
    return json.dumps(value, sort_keys=True)


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM ends the run through ``finally`` blocks (a final save)."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _settings(args) -> dict:
    return dict(
        config=osp.abspath(args.config),
        checkpoint=osp.abspath(args.checkpoint),
        ann=osp.abspath(args.ann) if args.ann else None,
        score_thr=args.score_thr,
        cfg_options=args.cfg_options and dict(args.cfg_options))


def run(args) -> int:
    """Run inference as ``args`` say; return the exit status."""
    from mmengine.utils import ProgressBar

    from mmdet.registry import VISUALIZERS
    from mmsniper.apis import inference_sniper, init_sniper_detector
    from mmsniper.models.test_time_augs import format_sniper_stats

    images = collect_images(args.inputs)
    os.makedirs(args.out_dir, exist_ok=True)
    # refuses a resume with other settings before the model is loaded
    writer = PredictionWriter(args.out_dir, _settings(args))
    model = init_sniper_detector(
        args.config,
        args.checkpoint,
        device=args.device,
        cfg_options=args.cfg_options,
        allow_partial_checkpoint=args.allow_partial_checkpoint,
        trust_checkpoint=args.trust_checkpoint)
    classes = (model.dataset_meta or {}).get('classes', None)
    keys = [key for _, key in images]
    if args.ann:
        image_ids, cat_ids = coco_ids(args.ann, keys, classes)
    else:
        image_ids, cat_ids = {key: key for key in keys}, None
    todo = [(path, key) for path, key in images if key not in writer.done]
    print(f'{len(images)} images in {args.inputs}: '
          f'{len(images) - len(todo)} done before (in {writer.pred_file}), '
          f'{len(todo)} to do')
    if writer.dropped:
        print(f'dropped {writer.dropped} detections of images an '
              'interrupted run had not finished (they are redone)')
    visualizer = None
    if not args.no_vis:
        visualizer = VISUALIZERS.build(
            dict(
                type='DetLocalVisualizer',
                name=f'mmsniper_infer_{os.getpid()}_{time.time_ns()}'))
        visualizer.dataset_meta = model.dataset_meta
    failures: List[Tuple[str, str]] = []
    # mmengine's bar, on the current sys.stdout
    bar = ProgressBar(len(todo), file=sys.stdout) if todo else None
    last_save = time.monotonic()
    try:
        for first in range(0, len(todo), args.batch_size):
            chunk = todo[first:first + args.batch_size]
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    'ignore', message='inference_sniper: skipped')
                results = inference_sniper(
                    model, [path for path, _ in chunk],
                    batch_size=args.batch_size,
                    on_error='skip')
            errors = {f.index: f.error for f in results.failures}
            for idx, ((path, key), result) in enumerate(zip(chunk, results)):
                if result is None:
                    failures.append((path, errors[idx]))
                    writer.failed[key] = errors[idx]
                    print(f'\nskipped: {errors[idx]}', file=sys.stderr,
                          flush=True)
                    continue
                writer.add(
                    key, image_ids[key],
                    result_to_coco(result, image_ids[key], cat_ids,
                                   args.score_thr))
                if visualizer is not None:
                    _draw(visualizer, path, key, result, args)
            bar.update(len(chunk))
            if time.monotonic() - last_save >= args.save_interval:
                writer.flush()
                last_save = time.monotonic()
    finally:
        if bar is not None:
            print(flush=True)  # ends the bar's line
        writer.flush()
    if model.sniper_stats['images']:
        for line in format_sniper_stats(model.sniper_stats, model.scales):
            print(line)
    print(f'{writer.pred_file}: {len(writer.preds)} detections of '
          f'{len(writer.done)} images (score >= {args.score_thr})' +
          ('' if visualizer is None else
           f'; pictures in {osp.join(args.out_dir, "vis")}'))
    if failures:
        print(f'{len(failures)} of {len(images)} images could not be read '
              '(skipped; a rerun retries them):')
        for _, error in failures:
            print(f'  {error}')
        return 1
    return 0


def _draw(visualizer, path: str, key: str, result, args) -> None:
    import mmcv
    out_file = osp.join(args.out_dir, 'vis', key)
    visualizer.add_datasample(
        key,
        mmcv.imread(path, channel_order='rgb'),
        data_sample=result,
        draw_gt=False,
        pred_score_thr=args.score_thr,
        out_file=out_file)


def main(argv: Optional[Sequence[str]] = None,
         description: Optional[str] = None) -> int:
    args = parse_args(argv, description)
    with _sigterm_as_exit():
        try:
            return run(args)
        except InferError as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        except Exception as exc:
            from mmsniper import utils as sniper_utils
            if not isinstance(exc, (sniper_utils.UntrustedCheckpointError,
                                    sniper_utils.CorruptCheckpointError,
                                    sniper_utils.CheckpointMismatchError)):
                raise
            # names the file and the switch; on this command line the
            # switch is the flag, not the API's argument
            msg = str(exc).replace(f'pass {sniper_utils.TRUST_FILE_ARG}',
                                   f'pass {sniper_utils.TRUST_FILE_FLAG}')
            print(f'error: {type(exc).__name__}: {msg}', file=sys.stderr)
            return 2


if __name__ == '__main__':
    sys.exit(main())
