#!/usr/bin/env python
"""Extract proposals on the training images, for negative chip mining.

Runs a trained RPN (an ``RPN`` detector, or the RPN stage of any two-stage
detector: ``model.rpn_head`` on ``model.extract_feat``) on every image of
the config's training set (``--split`` picks another) at each scale, keeps
the top ``--topk`` proposals per scale after NMS ``--nms-thr``, maps them to
original-image pixels, concatenates the scales and applies NMS
``--nms-thr`` again: the reference recipe of SNIPER_SPEC.md section 3::

    python tools/extract_proposals.py CONFIG CHECKPOINT --out FILE.pkl
        [--split {train,val,test}] [--scales S [S ...]] [--topk 300]
        [--nms-thr 0.7] [--nms-pre N] [--from-detections [--score-thr T]]
        [--chunk-size 200] [--resume [--force]] [--trust-parts]
        [--keep-parts | --remove-parts]
        [--num-workers 2] [--device DEV] [--cfg-options ...]
        [--launcher {none,pytorch,slurm,mpi}] [--trust-checkpoint-dir DIR]
        [--trust-checkpoint]

Scales (``--scales``, finest first) are plain factors (``1.5``) or
``SHORT,LONG`` resolution pairs (``1400,2000``; ``-1,512`` means long side
512), resolved per image with the SNIPER rule
(:func:`mmsniper.chips.compute_scale_factor`). The default is the config's
``proposal_scales`` variable if it has one, else the reference test scales
``1400,2000 800,1280 480,512``.

``--from-detections`` uses a full detector's final detections instead
(class-agnostic; PaddleDetection's route): per scale, detections above
``--score-thr``, class-agnostic NMS ``--nms-thr``, top ``--topk``; then the
same merge.

Output: one pickle (``mmengine.dump``) of a dict keyed by
``<parent dir>/<file name>`` of each image path (the key of mmdet's
``DumpProposals``) -> ``dict(bboxes=float32 (N, 4) xyxy in original px,
scores=float32 (N,), img_id=int)``, sorted by score, plus one entry
``'__mmsniper_meta__'`` -> ``dict(settings=..., info=...)``: the sha256 of
the checkpoint file and every setting that shapes the proposals (mode,
split, scales, topk, NMS thresholds, nms_pre, max_per_img, score_thr, a
hash of the config's ``model``). It holds only dicts, strings, numbers and
numpy arrays, so :func:`mmsniper.datasets.load_proposals` reads it with its
restricted unpickler (and skips the meta entry).

Large datasets: several processes (``tools/dist_extract_proposals.sh``,
``--launcher pytorch``; gloo on CPU) each handle a disjoint share of the
images. Every process writes its finished images in chunks of
``--chunk-size`` images to ``FILE.pkl.parts/`` (atomically, via rename);
``--resume`` skips the images already there (the process count may change
between runs), so an interrupted run loses at most one chunk per process.
Every part file carries the same meta entry as the output; ``--resume``
reuses only parts (and an existing ``FILE.pkl``) whose settings and
checkpoint hash equal this run's, and refuses to run, naming what differs,
when any other is there (a new checkpoint, other ``--scales``...);
``--resume --force`` deletes those and computes their images again.
Finally rank 0 merges the parts into ``FILE.pkl``. The parts are kept
(``--remove-parts`` deletes them): a later ``--resume`` run on a grown
dataset computes only the new images. Without ``--resume`` an existing
parts folder is emptied first. Part files and an existing output are read
with the restricted unpickler of :mod:`mmsniper.datasets.proposals` (a
file asking for any other global stops the run); ``--trust-parts`` reads
them with plain ``pickle.load``.

CHECKPOINT is loaded weights-only; one that is not weights-only loadable is
refused unless ``--trust-checkpoint`` is given (see
:mod:`mmsniper.utils.checkpoint`). Runs from a source checkout without
installing mmsniper.
"""
import argparse
import glob
import hashlib
import json
import logging
import os
import os.path as osp
import re
import sys
import time
import uuid
from pathlib import Path

# Make ``import mmsniper`` work from a plain checkout (no ``pip install``).
REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import mmengine  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.dist import (  # noqa: E402
    all_gather_object, barrier, broadcast_object_list, get_dist_info,
    init_dist, is_distributed)
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402

import mmsniper  # noqa: E402,F401  (registers mmsniper's components)
from mmsniper import utils as sniper_utils  # noqa: E402
from mmsniper.utils.setup_env import (  # noqa: E402
    exit_distributed_run, finish_distributed)
from mmsniper.chips import compute_scale_factor  # noqa: E402
from mmsniper.datasets.proposals import (  # noqa: E402
    META_KEY, ProposalFileError, proposal_key, safe_pickle_load)

#: Reference test scales (SNIPER_SPEC.md section 6), finest first.
REFERENCE_PROPOSAL_SCALES = ((1400, 2000), (800, 1280), (480, 512))
PART_SUFFIX = '.pkl'
# RPN boxes kept per scale by the head itself (after its per-level NMS)
MAX_RPN_CANDIDATES = 100000
META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')
LOGGER_NAME = 'mmsniper_extract_proposals'
#: Version of the meta entry; part files of another version are stale.
META_VERSION = 1


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------
def parse_scale(text):
    """``'1.5'`` -> 1.5; ``'1400,2000'`` -> (1400.0, 2000.0)."""
    if isinstance(text, (int, float)):
        return float(text)
    if isinstance(text, (list, tuple)):
        if len(text) != 2:
            raise ValueError(f'a resolution scale is a (short, long) pair, '
                             f'got {text!r}')
        return (float(text[0]), float(text[1]))
    parts = [p for p in re.split(r'[,x:]', str(text).strip()) if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return tuple(values)
    raise argparse.ArgumentTypeError(
        f'bad scale {text!r}: give a factor (1.5) or a SHORT,LONG pair '
        '(1400,2000; -1,512 for "long side 512")')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Extract multi-scale proposals on the training images '
        '(SNIPER negative chip mining)')
    # ``-1,512`` is a value, not an option
    parser._negative_number_matcher = re.compile(
        r'^-\d+$|^-\d*\.\d+$|^-\d*\.?\d*[,x:]\d*\.?\d*$')
    parser.add_argument('config', help='config of the RPN or detector')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file (loaded weights-only; see --trust-checkpoint)')
    sniper_utils.add_trust_checkpoint_arg(parser)
    parser.add_argument(
        '--out', required=True, help='output pickle file (.pkl / .pickle)')
    parser.add_argument(
        '--split',
        choices=['train', 'val', 'test'],
        default='train',
        help='which dataloader\'s images (default: train; a SniperChipDataset '
        'or other wrapper is unwrapped to its images)')
    parser.add_argument(
        '--scales',
        nargs='+',
        type=parse_scale,
        help='scales, finest first: factors (1.5) or SHORT,LONG resolution '
        'pairs (1400,2000; -1,512). Default: the config\'s proposal_scales, '
        'else 1400,2000 800,1280 480,512 (the reference test scales)')
    parser.add_argument(
        '--topk',
        type=int,
        default=300,
        help='proposals kept per scale after NMS (default 300)')
    parser.add_argument(
        '--nms-thr',
        type=float,
        default=0.7,
        help='IoU threshold of the per-scale NMS and of the NMS over all '
        'scales (default 0.7)')
    parser.add_argument(
        '--nms-pre',
        type=int,
        help='RPN candidates per FPN level before NMS (default: the config\'s '
        'test_cfg.rpn.nms_pre)')
    parser.add_argument(
        '--max-per-img',
        type=int,
        default=-1,
        help='cap on the merged proposals per image (default: none; at most '
        'topk x number of scales)')
    parser.add_argument(
        '--from-detections',
        action='store_true',
        help='use the final detections of a full detector (class-agnostic) '
        'instead of RPN proposals')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.0,
        help='with --from-detections: drop detections scored below this '
        '(default 0: keep what the detector\'s own test_cfg keeps)')
    parser.add_argument(
        '--chunk-size',
        type=int,
        default=200,
        help='images per part file under OUT.parts/ (default 200)')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='skip the images already in OUT.parts/ (from an interrupted or '
        'earlier run) if those parts were made with the same checkpoint '
        '(sha256) and settings; refuse to run if other parts are there')
    parser.add_argument(
        '--force',
        action='store_true',
        help='with --resume: delete part files (and an existing OUT) made '
        'with another checkpoint or other settings and compute their images '
        'again, instead of refusing')
    parser.add_argument(
        '--trust-parts',
        action='store_true',
        help='read OUT.parts/ files and an existing OUT with plain '
        'pickle.load (may run code from them) instead of the restricted '
        'unpickler; only for files you made yourself')
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument(
        '--remove-parts',
        action='store_true',
        help='delete OUT.parts/ after the merge')
    parts.add_argument(
        '--keep-parts',
        action='store_true',
        help='keep OUT.parts/ after the merge (the default)')
    parser.add_argument(
        '--num-workers',
        type=int,
        default=2,
        help='image loading processes per rank (default 2; 0 = in-process)')
    parser.add_argument(
        '--device', help='device (default: cuda if available, else cpu)')
    sniper_utils.add_runner_args(
        parser,
        trust_help='trust checkpoints under DIR (e.g. a Pretrained init_cfg '
        'file that is not weights-only).')
    args = sniper_utils.parse_runner_args(parser, argv)
    if not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out must be a .pkl or .pickle file, got {args.out}')
    if args.topk <= 0:
        parser.error('--topk must be positive')
    if not 0 < args.nms_thr <= 1:
        parser.error('--nms-thr must be in (0, 1]')
    if args.chunk_size <= 0:
        parser.error('--chunk-size must be positive')
    if args.force and not args.resume:
        parser.error('--force only makes sense with --resume (without '
                     '--resume earlier parts are always removed)')
    return parser, args


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
def _leaf_dataset_cfgs(ds_cfg):
    """The dataset configs that hold images, below any wrappers
    (SniperChipDataset, RepeatDataset, ClassBalancedDataset, ...)."""
    if 'datasets' in ds_cfg:  # ConcatDataset
        leaves = []
        for sub in ds_cfg['datasets']:
            leaves += _leaf_dataset_cfgs(sub)
        return leaves
    if 'dataset' in ds_cfg:
        return _leaf_dataset_cfgs(ds_cfg['dataset'])
    return [ds_cfg]


def load_image_list(cfg, split):
    """``[(key, img_path, img_id, (h, w) or None)]`` of the split's images,
    and the backend_args of its dataset."""
    from mmdet.registry import DATASETS
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        raise ValueError(f'the config has no {split}_dataloader.dataset')
    images, backend_args = [], None
    for leaf in _leaf_dataset_cfgs(loader['dataset']):
        leaf = ConfigDict(leaf)
        leaf.pipeline = []  # only the data list is needed
        backend_args = leaf.get('backend_args', backend_args)
        dataset = DATASETS.build(leaf)
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
        for idx in range(len(dataset)):
            info = dataset.get_data_info(idx)
            img_id = info.get('img_id', idx)
            try:
                img_id = int(img_id)
            except (TypeError, ValueError):
                pass
            size = None
            if info.get('height') and info.get('width'):
                size = (int(info['height']), int(info['width']))
            images.append(
                (proposal_key(info['img_path']), info['img_path'], img_id,
                 size))
    return images, backend_args


class ScaledImages(torch.utils.data.Dataset):
    """Each image decoded once and packed at every scale."""

    def __init__(self, images, scales, backend_args=None):
        self.images = images
        self.scales = scales
        self.backend_args = backend_args
        self._load = None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, idx):
        from mmdet.registry import TRANSFORMS
        if self._load is None:
            self._load = TRANSFORMS.build(
                dict(type='LoadImageFromFile', backend_args=self.backend_args))
            self._pack = TRANSFORMS.build(
                dict(type='PackDetInputs', meta_keys=META_KEYS))
        key, img_path, img_id, _ = self.images[idx]
        results = self._load(dict(img_path=img_path, img_id=img_id))
        if results is None:
            raise RuntimeError(f'cannot load image {img_path}')
        height, width = results['img'].shape[:2]
        packed = []
        for scale in self.scales:
            factor = compute_scale_factor(scale, (height, width))
            resize = TRANSFORMS.build(
                dict(type='Resize', scale_factor=factor, keep_ratio=True))
            scaled = resize(dict(results))
            packed.append(self._pack(scaled))
        return dict(
            key=key, img_id=img_id, ori_shape=(height, width), scales=packed)


def _first(batch):
    return batch[0]


# ---------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------
def build_model(cfg, args, device, logger):
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    with sniper_utils.trusted_checkpoint_loading(
            trusted_dirs=args.trust_checkpoint_dir,
            trusted_files=[args.checkpoint] if args.trust_checkpoint else [],
            named_files=[args.checkpoint]):
        load_checkpoint(
            model, args.checkpoint, map_location='cpu', logger=logger)
    from mmengine.model import revert_sync_batchnorm
    model = revert_sync_batchnorm(model)
    model.to(device)
    model.eval()
    if args.from_detections:
        return model, None
    head = getattr(model, 'rpn_head', None)
    if head is None and type(model).__name__ == 'RPN':
        head = model.bbox_head
    if head is None or not hasattr(model, 'extract_feat'):
        raise ValueError(
            f'{type(model).__name__} has no RPN (neither an RPN detector nor '
            'a two-stage detector with rpn_head); use --from-detections to '
            'take the final detections of a one-stage detector')
    test_cfg = ConfigDict(dict(head.test_cfg or {}))
    if args.nms_pre is not None:
        test_cfg.nms_pre = args.nms_pre
    test_cfg.setdefault('nms_pre', 2000)
    test_cfg.setdefault('min_bbox_size', 0)
    # mmdet's RPNHead runs NMS per FPN level, then keeps max_per_img; the
    # reference runs one NMS over all anchors. So the head keeps every box
    # that survives its per-level NMS, and image_proposals() runs NMS over
    # the levels and keeps the top k.
    test_cfg.max_per_img = max(args.topk, MAX_RPN_CANDIDATES)
    test_cfg.nms = dict(type='nms', iou_threshold=args.nms_thr)
    head.test_cfg = test_cfg
    logger.info(f'RPN ({type(head).__name__}) test_cfg: {dict(test_cfg)}; '
                f'then NMS {args.nms_thr} over all levels, top {args.topk} '
                'per scale')
    return model, head


def _clip(bboxes, scores, ori_shape):
    height, width = ori_shape
    bboxes = bboxes.clone()
    bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, width)
    bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, height)
    keep = (bboxes[:, 2] > bboxes[:, 0]) & (bboxes[:, 3] > bboxes[:, 1])
    return bboxes[keep], scores[keep]


def _nms(bboxes, scores, iou_thr):
    """Class-agnostic NMS; returns the kept boxes and scores by score."""
    from mmcv.ops import nms
    if len(bboxes) == 0:
        return bboxes, scores
    dets, _ = nms(bboxes.contiguous(), scores.contiguous(), iou_thr)
    return dets[:, :4], dets[:, 4]


@torch.no_grad()
def image_proposals(model, head, item, args):
    """Proposals of one image at all scales, merged, in original px."""
    all_boxes, all_scores = [], []
    for packed in item['scales']:
        data = model.data_preprocessor(
            dict(
                inputs=[packed['inputs']],
                data_samples=[packed['data_samples']]), False)
        if head is not None:
            feats = model.extract_feat(data['inputs'])
            pred = head.predict(feats, data['data_samples'], rescale=True)[0]
        else:
            pred = model.predict(
                data['inputs'], data['data_samples'],
                rescale=True)[0].pred_instances
        bboxes = pred.bboxes.float().cpu().reshape(-1, 4)
        scores = pred.scores.float().cpu().reshape(-1)
        bboxes, scores = _clip(bboxes, scores, item['ori_shape'])
        if head is None:  # detections: score threshold
            keep = scores >= args.score_thr
            bboxes, scores = bboxes[keep], scores[keep]
        # class-agnostic NMS over all levels / classes, top k by score
        bboxes, scores = _nms(bboxes, scores, args.nms_thr)
        all_boxes.append(bboxes[:args.topk])
        all_scores.append(scores[:args.topk])
    bboxes, scores = _nms(
        torch.cat(all_boxes), torch.cat(all_scores), args.nms_thr)
    if args.max_per_img > 0:
        bboxes, scores = bboxes[:args.max_per_img], scores[:args.max_per_img]
    return dict(
        bboxes=bboxes.numpy().astype(np.float32).reshape(-1, 4),
        scores=scores.numpy().astype(np.float32).reshape(-1),
        img_id=item['img_id'])


# ---------------------------------------------------------------------------
# part files
# ---------------------------------------------------------------------------
def parts_dir(out):
    return out + '.parts'


def list_parts(folder):
    return sorted(glob.glob(osp.join(folder, 'part-*' + PART_SUFFIX)))


def file_sha256(path, block=1 << 20):
    """sha256 hex digest of a file, read in blocks (any size)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(block), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _scale_setting(scale):
    return list(scale) if isinstance(scale, (list, tuple)) else scale


def run_meta(cfg, args, scales, checkpoint_sha256):
    """The meta entry of this run: ``settings`` (compared on resume) and
    ``info`` (for people, not compared)."""
    model_text = json.dumps(
        cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else cfg.model,
        sort_keys=True,
        default=repr)
    settings = dict(
        version=META_VERSION,
        mode='detections' if args.from_detections else 'rpn',
        split=args.split,
        scales=[_scale_setting(s) for s in scales],
        topk=args.topk,
        nms_thr=args.nms_thr,
        nms_pre=args.nms_pre,
        max_per_img=args.max_per_img,
        score_thr=args.score_thr if args.from_detections else None,
        model_cfg_sha256=hashlib.sha256(model_text.encode()).hexdigest(),
        checkpoint_sha256=checkpoint_sha256)
    info = dict(
        checkpoint=osp.abspath(args.checkpoint),
        config=osp.abspath(args.config),
        tool='mmsniper tools/extract_proposals.py',
        mmsniper_version=mmsniper.__version__)
    # json round trip: tuples -> lists, as a reloaded file holds them
    return json.loads(json.dumps(dict(settings=settings, info=info)))


def settings_diff(theirs, ours):
    """``'name: theirs -> ours'`` for every setting that differs."""
    if not isinstance(theirs, dict):
        return ['no settings recorded (a part file of an older version)']
    diff = []
    for name in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(name), ours.get(name)
        if a != b:
            diff.append(f'{name}: {a!r} there, {b!r} now')
    return diff


def load_pickle(path, args):
    """A part file or an earlier output, read safely unless trusted."""
    with open(path, 'rb') as f:
        data = safe_pickle_load(
            f, path, trust=args.trust_parts, trust_hint='--trust-parts')
    if not isinstance(data, dict):
        raise ProposalFileError(f'{path} is not a dict of proposals')
    return data


def split_meta(data):
    """``(settings or None, proposals dict)`` of a loaded part / output."""
    meta = data.pop(META_KEY, None)
    settings = meta.get('settings') if isinstance(meta, dict) else None
    return settings, data


def write_part(folder, rank, token, index, results, meta):
    """Atomically write one chunk of finished images."""
    name = f'part-r{rank:03d}-{token}-{index:06d}{PART_SUFFIX}'
    path = osp.join(folder, name)
    tmp = path + '.tmp'
    mmengine.dump({META_KEY: meta, **results}, tmp, file_format='pkl')
    os.replace(tmp, path)
    return path


def scan_parts(folder, args, settings, logger):
    """-> (keys of matching parts, [(part, differences)] of the others)."""
    done, stale = set(), []
    for path in list_parts(folder):
        try:
            theirs, props = split_meta(load_pickle(path, args))
        except ProposalFileError:
            raise  # a crafted or foreign file: stop, never skip silently
        except Exception as exc:  # a truncated file: redo its images
            logger.warning(f'ignoring unreadable part file {path}: {exc}')
            continue
        diff = settings_diff(theirs, settings)
        if diff:
            stale.append((path, diff))
        else:
            done.update(props)
    return done, stale


class StaleParts(Exception):
    """Files of an earlier run with other settings, and no --force."""


def refuse_stale(stale, settings, args, logger):
    """Delete stale files with --force, else raise :class:`StaleParts`
    naming the differences."""
    if not stale:
        return
    first, diff = stale[0]
    text = (f'{len(stale)} file(s) of an earlier run were made with another '
            f'checkpoint or other settings, e.g. {first}: ' + '; '.join(diff))
    if not args.force:
        raise StaleParts(
            f'--resume: {text}. Their '
            'proposals would be mixed with this run\'s. Pass --resume '
            '--force to delete them and compute their images again, or run '
            'without --resume to start over.')
    logger.warning(f'--force: deleting them and computing their images '
                   f'again ({text})')
    for path, _ in stale:
        os.remove(path)


def adopt_merged_output(out, folder, done, args, settings, meta, logger):
    """On resume, images of an existing OUT that no part file holds (e.g.
    after ``--remove-parts``) become a part file, so they are kept, if OUT
    was made with the same settings."""
    if not osp.isfile(out):
        return 0
    try:
        theirs, previous = split_meta(load_pickle(out, args))
    except ProposalFileError:
        raise
    except Exception as exc:
        logger.warning(f'cannot read the existing {out} ({exc}); its images '
                       'are computed again')
        return 0
    diff = settings_diff(theirs, settings)
    if diff:
        refuse_stale([(out, diff)], settings, args, logger)
        return 0
    extra = {k: v for k, v in previous.items() if k not in done}
    if extra:
        write_part(folder, 0, f'adopted-{uuid.uuid4().hex[:6]}', 0, extra,
                   meta)
        done.update(extra)
        logger.info(f'resume: {len(extra)} images of the existing {out} '
                    'that no part file holds are kept')
    return len(extra)


def merge_parts(folder, out, args, meta, logger):
    merged = {}
    for path in list_parts(folder):
        try:
            theirs, props = split_meta(load_pickle(path, args))
        except ProposalFileError:
            raise
        except Exception as exc:
            logger.warning(f'ignoring unreadable part file {path}: {exc}')
            continue
        diff = settings_diff(theirs, meta['settings'])
        if diff:  # e.g. written meanwhile by another run
            logger.warning(f'not merging {path}: ' + '; '.join(diff))
            continue
        merged.update(props)
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = out + '.tmp'
    mmengine.dump({META_KEY: meta, **merged}, tmp, file_format='pkl')
    os.replace(tmp, out)
    return merged


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
def setup_distributed(cfg, launcher):
    if launcher == 'none':
        return
    if sniper_utils.setup_cpu_distributed(cfg, launcher):
        return
    if not is_distributed():
        env_cfg = cfg.get('env_cfg') or {}
        dist_cfg = dict(env_cfg.get('dist_cfg') or {})
        init_dist(launcher, **dist_cfg)


def resolve_scales(cfg, args):
    if args.scales:
        return list(args.scales)
    if cfg.get('proposal_scales'):
        return [parse_scale(s) for s in cfg.proposal_scales]
    return list(REFERENCE_PROPOSAL_SCALES)


def resume_state(cfg, args, scales, keys, folder, logger):
    """Rank 0: this run's meta, and the images that matching parts hold
    (after removing or refusing what does not match)."""
    t0 = time.time()
    meta = run_meta(cfg, args, scales, file_sha256(args.checkpoint))
    settings = meta['settings']
    logger.info(f'checkpoint {args.checkpoint}: sha256 '
                f'{settings["checkpoint_sha256"]} ({time.time() - t0:.1f}s)')
    os.makedirs(folder, exist_ok=True)
    for tmp in glob.glob(osp.join(folder, '*.tmp')):
        os.remove(tmp)  # an interrupted write
    done = set()
    if args.resume:
        done, stale = scan_parts(folder, args, settings, logger)
        refuse_stale(stale, settings, args, logger)
        adopt_merged_output(args.out, folder, done, args, settings, meta,
                            logger)
        todo_keys = set(keys) - done
        logger.info(
            f'resume: {len(set(keys)) - len(todo_keys)} images skipped '
            f'(already in {len(list_parts(folder))} part files of {folder} '
            f'with the same checkpoint and settings), {len(todo_keys)} to do')
    else:
        old = list_parts(folder)
        if old:
            logger.warning(
                f'removing {len(old)} part files of an earlier run from '
                f'{folder} (pass --resume to reuse them)')
            for path in old:
                os.remove(path)
    return dict(meta=meta, done=done, error=None)


def main(argv=None):
    """Run the tool; returns a summary dict on rank 0 (``images``,
    ``proposals``, ``skipped``, ``computed``, ``missing``), else None."""
    parser, args = parse_args(argv)
    cfg = sniper_utils.load_tool_config(args, set_work_dir=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    setup_distributed(cfg, args.launcher)
    rank, world_size = get_dist_info()
    logger = MMLogger.get_instance(LOGGER_NAME, log_level='INFO')
    if rank != 0:  # ranks > 0 report errors only
        for handler in logger.handlers:
            handler.setLevel(logging.ERROR)

    scales = resolve_scales(cfg, args)
    for scale in scales:  # fail now on a bad scale, not in a worker
        compute_scale_factor(scale, (100, 100))
    if args.device:
        device = torch.device(args.device)
    elif torch.cuda.is_available():
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        device = torch.device('cpu')

    images, backend_args = load_image_list(cfg, args.split)
    keys = [img[0] for img in images]
    if len(set(keys)) != len(keys):
        logger.warning(
            f'{len(keys) - len(set(keys))} images share a <parent>/<file> '
            'key with another image; only one of each is kept')
    folder = parts_dir(args.out)
    mode = 'final detections' if args.from_detections else 'RPN proposals'
    logger.info(
        f'extract_proposals: {mode} of {len(images)} {args.split} images '
        f'at scales {scales}, top {args.topk} per scale, NMS '
        f'{args.nms_thr}; {world_size} process(es); parts in {folder}')

    # The run's meta and which images are done: rank 0 reads, everyone
    # gets them (or the error that stops every rank).
    shared = [dict(meta=None, done=set(), error=None)]
    if rank == 0:
        try:
            shared[0] = resume_state(cfg, args, scales, keys, folder, logger)
        except (StaleParts, ProposalFileError) as exc:
            shared[0]['error'] = f'{type(exc).__name__}: {exc}'
    if world_size > 1:
        broadcast_object_list(shared, src=0)
        barrier()  # stale parts are gone before anyone writes
    if shared[0]['error']:
        raise SystemExit(
            f'tools/extract_proposals.py: error: {shared[0]["error"]}'
            if rank == 0 else 2)
    meta, done = shared[0]['meta'], shared[0]['done']
    seen, todo = set(done), []
    for img in images:
        if img[0] not in seen:
            seen.add(img[0])
            todo.append(img)
    num_skipped = len(set(keys) & done)
    mine = todo[rank::world_size]

    model, head = build_model(cfg, args, device, logger)
    loader = torch.utils.data.DataLoader(
        ScaledImages(mine, scales, backend_args),
        batch_size=1,
        shuffle=False,
        num_workers=args.num_workers if len(mine) > 1 else 0,
        collate_fn=_first)
    token = f'{time.strftime("%Y%m%d%H%M%S")}-{uuid.uuid4().hex[:6]}'
    bar = ProgressBar(len(mine)) if rank == 0 and len(mine) else None
    buffer, chunk_idx, written = {}, 0, 0
    for item in loader:
        buffer[item['key']] = image_proposals(model, head, item, args)
        if len(buffer) >= args.chunk_size:
            write_part(folder, rank, token, chunk_idx, buffer, meta)
            written += len(buffer)
            buffer, chunk_idx = {}, chunk_idx + 1
        if bar is not None:
            bar.update()
    if buffer:
        write_part(folder, rank, token, chunk_idx, buffer, meta)
        written += len(buffer)
    if bar is not None:
        sys.stdout.write('\n')
        sys.stdout.flush()

    computed = [written]
    if world_size > 1:
        computed = all_gather_object(written)  # also the barrier
    if rank == 0:
        merged = merge_parts(folder, args.out, args, meta, logger)
        num_props = sum(len(v['scores']) for v in merged.values())
        missing = len(set(keys) - set(merged))
        logger.info(
            f'wrote {args.out}: {len(merged)} images, {num_props} proposals '
            f'({num_props / max(len(merged), 1):.1f} per image); '
            f'{sum(computed)} computed in this run (per rank {computed})' +
            (f'; {missing} images of the dataset missing' if missing else ''))
        if args.remove_parts:
            for path in list_parts(folder):
                os.remove(path)
            try:
                os.rmdir(folder)
            except OSError:
                pass
        summary = dict(
            images=len(merged),
            proposals=num_props,
            skipped=num_skipped,
            computed=sum(computed),
            missing=missing)
    else:
        summary = None
    if args.launcher != 'none':  # every rank done (a barrier): close
        finish_distributed()
    return summary


if __name__ == '__main__':
    try:
        main()
    except sniper_utils.UntrustedCheckpointError as exc:
        sys.exit(f'tools/extract_proposals.py: error: '
                 f'UntrustedCheckpointError: {exc}')
    except sniper_utils.CorruptCheckpointError as exc:
        sys.exit(f'tools/extract_proposals.py: error: {exc}')
    else:
        # skip the native exit handlers of a finished distributed run
        exit_distributed_run()
