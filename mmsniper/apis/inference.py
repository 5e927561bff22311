# Copyright (c) mmsniper contributors. All rights reserved.
"""SNIPER inference on images, in ``mmdet.apis.inference`` style.

Example::

    from mmsniper.apis import inference_sniper, init_sniper_detector
    model = init_sniper_detector(CONFIG, CHECKPOINT, device='cpu')
    result = inference_sniper(model, 'demo.jpg')       # one DetDataSample
    results = inference_sniper(model, 'images/')       # one per image
    # a folder with unreadable images: None in their place, listed
    results = inference_sniper(model, 'images/', on_error='skip')
    print(results.failures)
"""
import copy
import os.path as osp
import warnings
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.utils import scandir

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

__all__ = [
    'init_sniper_detector', 'inference_sniper', 'list_images',
    'InferenceResults', 'ImageFailure'
]

#: Image files :func:`inference_sniper` reads from a folder.
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')

ImagesType = Union[str, Path, np.ndarray, Sequence[Union[str, Path,
                                                         np.ndarray]]]


def init_sniper_detector(config: Union[str, Path, Config],
                         checkpoint: Optional[str] = None,
                         device: str = 'cpu',
                         cfg_options: Optional[dict] = None,
                         palette: str = 'none',
                         tta_model: Optional[dict] = None,
                         allow_partial_checkpoint: bool = False,
                         trust_checkpoint: bool = False):
    """Build a SNIPER multi-scale detector from a config and a checkpoint.

    The detector is built and loaded by mmdet's ``init_detector`` and wrapped
    in the config's ``tta_model`` (a ``SniperTTAModel``). The checkpoint is
    loaded weights-only (``torch.load(weights_only=True)``; the checkpoints
    ``tools/train.py`` writes load so, see :mod:`mmsniper._safe_globals`)
    and read once for both the load and the match check. A file that is
    not weights-only loadable is refused (``UntrustedCheckpointError``):
    loading it would run code from it; ``trust_checkpoint=True`` allows it.
    An empty or truncated file raises ``CorruptCheckpointError`` naming it.

    Args:
        config (str | Path | Config): Config file or object.
        checkpoint (str, optional): Checkpoint file; ``None`` keeps the
            initial weights.
        device (str): Device, e.g. 'cpu' or 'cuda:0'.
        cfg_options (dict, optional): Overrides merged into the config.
        palette (str): Passed to mmdet's ``init_detector``.
        tta_model (dict, optional): Overrides merged into the config's
            ``tta_model`` (e.g. ``dict(scales=[...], valid_ranges=[...])``).
        allow_partial_checkpoint (bool): Load a checkpoint that holds under
            half of the detector's weights (e.g. a backbone only). By
            default it is refused (``CheckpointMismatchError``): it is most
            likely another model's, and the detector would run with random
            weights.
        trust_checkpoint (bool): Load ``checkpoint`` with
            ``torch.load(weights_only=False)`` if it is not weights-only
            loadable. That runs code from the file: only for files you
            trust. Defaults to False.

    Returns:
        SniperTTAModel: In eval mode, with ``cfg`` and ``dataset_meta``.
    """
    import mmsniper  # noqa: F401  registers mmsniper's modules
    from mmdet.apis import init_detector

    from mmsniper.utils import (TRUST_FILE_ARG, check_checkpoint_matches,
                                trusted_checkpoint_loading)
    if isinstance(config, (str, Path)):
        config = Config.fromfile(str(config))
    elif not isinstance(config, Config):
        raise TypeError('config must be a filename or Config object, '
                        f'but got {type(config)}')
    config = copy.deepcopy(config)
    if cfg_options is not None:
        config.merge_from_dict(cfg_options)
    tta_cfg = dict(config.get('tta_model', None) or {})
    if tta_model:
        tta_cfg.update(tta_model)
    if not tta_cfg or 'scales' not in tta_cfg:
        raise ValueError(
            f'config {getattr(config, "filename", config)} has no tta_model '
            'with scales: inherit configs/_base_/sniper_tta.py or pass '
            'tta_model=dict(scales=..., valid_ranges=...)')
    tta_cfg.setdefault('type', 'SniperTTAModel')
    # mmdet's init_detector clears ``model.backbone.init_cfg`` (no
    # pretrained download) unless given cfg_options; a wrapper such as
    # AutoFocusDetector keeps its backbone in ``model.detector``: clear it
    # here and pass empty cfg_options, which init_detector then merges
    model_cfg = config.model
    while 'backbone' not in model_cfg and 'detector' in model_cfg:
        model_cfg = model_cfg.detector
    if 'backbone' not in model_cfg:
        raise ValueError(
            f'config {getattr(config, "filename", config)}: no backbone in '
            'model (nor in model.detector)')
    if 'init_cfg' in model_cfg.backbone:
        model_cfg.backbone.init_cfg = None
    # one scoped call: weights-only unless trusted explicitly; the file is
    # read once (init_detector's load, then the match check reuses it)
    with trusted_checkpoint_loading(
            trusted_files=[checkpoint] if trust_checkpoint else [],
            named_files=[checkpoint],
            file_switch=TRUST_FILE_ARG,
            dir_switch=None,
            reuse=True) as policy:
        detector = init_detector(
            config, checkpoint, palette=palette, device=device,
            cfg_options={})
        if checkpoint is not None and not allow_partial_checkpoint:
            check_checkpoint_matches(detector, checkpoint, policy)
    init_default_scope(config.get('default_scope', 'mmdet'))
    model = MODELS.build(dict(tta_cfg, module=detector))
    model.cfg = config
    model.dataset_meta = getattr(detector, 'dataset_meta', None)
    model.to(device)
    model.eval()
    return model


def list_images(folder: str) -> List[str]:
    """Image files below ``folder`` (recursive, sorted)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{folder} is not a folder')
    files = sorted(
        osp.join(folder, f) for f in scandir(
            folder, IMG_EXTENSIONS, recursive=True, case_sensitive=False))
    if not files:
        raise FileNotFoundError(
            f'no image ({", ".join(IMG_EXTENSIONS)}) in {folder}')
    return files


def _test_pipeline(cfg: Config, from_array: bool) -> Compose:
    """The config's ``tta_pipeline`` (else its test pipeline) for inference:
    the loader reads arrays when ``from_array``; annotations are dropped."""
    pipeline = cfg.get('tta_pipeline', None)
    if pipeline is None:
        raise ValueError('the config has no tta_pipeline: inherit '
                         'configs/_base_/sniper_tta.py')
    steps = []
    for step in copy.deepcopy(pipeline):
        kind = str(step['type']).split('.')[-1]
        if kind == 'LoadAnnotations':
            continue
        if kind in ('Resize', 'TestTimeAug', 'RandomResize'):
            raise ValueError(f'tta_pipeline must not contain {kind}: '
                             'SniperTTAModel resizes per scale itself')
        loader = kind.startswith('LoadImageFrom') or kind in (
            'LoadSniperChipFromFile', 'LoadSniperLazyImage')
        if loader and from_array:  # the array is the image
            step = dict(type='mmdet.LoadImageFromNDArray')
        steps.append(step)
    return Compose(steps)


def _check_array(img: np.ndarray, idx: int) -> None:
    """An array image is what mmdet's loader gives: uint8 BGR (H, W, 3)."""
    name = f'inference_sniper: array {idx}'
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f'{name} has shape {img.shape}: give a BGR (H, W, 3) image (a '
            'grayscale (H, W) one: np.repeat(img[..., None], 3, axis=2))')
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f'{name} is empty: shape {img.shape}')
    if img.dtype != np.uint8:
        raise ValueError(
            f'{name} is {img.dtype}: give uint8 pixels in 0..255 as mmcv '
            'loads them (a float image in [0, 1] would be taken as nearly '
            'black: (img * 255).round().astype(np.uint8))')


class ImageFailure(NamedTuple):
    """An image :func:`inference_sniper` could not read (``on_error='skip'``).

    Attributes:
        index (int): Position of the image in the input list (or folder).
        name (str): The file, or ``'array <index>'`` for an array.
        error (str): Why, the file named in it.
    """
    index: int
    name: str
    error: str


class InferenceResults(list):
    """A list of results, one per input image, ``None`` where an image
    could not be read (``on_error='skip'``); :attr:`failures` lists those.

    Args:
        results (Iterable): ``DetDataSample`` or ``None`` per image.
        failures (Iterable[ImageFailure]): The images given ``None``.
    """

    def __init__(self, results=(), failures=()) -> None:
        super().__init__(results)
        self.failures: List[ImageFailure] = list(failures)


def _image_name(img, idx: int) -> str:
    return f'array {idx}' if isinstance(img, np.ndarray) else str(img)


def _load_image(pipeline: Compose, img, idx: int):
    """Run the loading pipeline on one image; any failure is raised as an
    error naming the file (``ImageDecodeError`` unless the loader's own
    ``ImageDecodeError`` / ``ImageSizeError`` already names it)."""
    from mmsniper.datasets.image_io import ImageDecodeError, ImageSizeError
    name = _image_name(img, idx)
    data = dict(img=img, img_id=idx) if isinstance(
        img, np.ndarray) else dict(img_path=img, img_id=idx)
    try:
        packed = pipeline(data)
    except (ImageDecodeError, ImageSizeError) as exc:
        if name in str(exc):
            raise
        raise type(exc)(f'cannot load image {name}: {exc}') from exc
    except Exception as exc:  # mmcv/cv2 errors often omit the file name
        raise ImageDecodeError(
            f'cannot load image {name}: {type(exc).__name__}: '
            f'{exc}'.strip()) from exc
    if packed is None:
        raise ImageDecodeError(
            f'cannot load image {name}: the pipeline dropped it')
    return packed


def inference_sniper(model,
                     imgs: ImagesType,
                     batch_size: int = 1,
                     on_error: str = 'raise'):
    """Run SNIPER multi-scale inference on images.

    Args:
        model (SniperTTAModel): From :func:`init_sniper_detector`.
        imgs (str | ndarray | Sequence): An image file, a folder (every
            image below it, sorted), a BGR ``(H, W, 3)`` array, or a list of
            files and arrays.
        batch_size (int): Images per ``test_step``.
        on_error (str): What a folder or a list does with an image that
            cannot be read (missing, empty, truncated, not an image, over
            the loader's pixel limit): ``'raise'`` (default) stops with an
            error naming the file; ``'skip'`` gives ``None`` in its place,
            names it in a warning and in the result's ``failures``, and
            processes the other images. A single file or array always
            raises. Errors of the model itself are raised in both modes.

    Returns:
        DetDataSample | InferenceResults: One result for a single file or
        array; for a folder or a list, an :class:`InferenceResults` (a list,
        one entry per image, ``None`` for a skipped one, with
        ``.failures``). Boxes in original px.
    """
    if isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f'inference_sniper: batch_size must be a positive '
                         f'integer, got {batch_size!r}')
    if on_error not in ('raise', 'skip'):
        raise ValueError("inference_sniper: on_error must be 'raise' or "
                         f"'skip', got {on_error!r}")
    single = isinstance(imgs, (str, Path, np.ndarray))
    if isinstance(imgs, (str, Path)) and osp.isdir(str(imgs)):
        imgs, single = list_images(str(imgs)), False
    elif single:
        imgs = [imgs]
    imgs = [str(i) if isinstance(i, Path) else i for i in imgs]
    skip = on_error == 'skip' and not single
    failures: List[ImageFailure] = []
    for idx, img in enumerate(imgs):
        if isinstance(img, str) and not osp.isfile(img):
            if not skip:
                raise FileNotFoundError(f'image {img} does not exist')
            failures.append(
                ImageFailure(idx, img, f'image {img} does not exist'))
        if isinstance(img, np.ndarray):
            _check_array(img, idx)
    cfg = model.cfg
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    pipelines = {}
    results: List[Optional[DetDataSample]] = [None] * len(imgs)
    todo = [i for i in range(len(imgs)) if i not in {f.index
                                                     for f in failures}]
    for first in range(0, len(todo), batch_size):
        batch, where = [], []
        for idx in todo[first:first + batch_size]:
            img = imgs[idx]
            from_array = isinstance(img, np.ndarray)
            if from_array not in pipelines:
                pipelines[from_array] = _test_pipeline(cfg, from_array)
            try:
                batch.append(_load_image(pipelines[from_array], img, idx))
            except Exception as exc:
                if not skip:
                    raise
                failures.append(
                    ImageFailure(idx, _image_name(img, idx), str(exc)))
                continue
            where.append(idx)
        if not batch:
            continue
        with torch.no_grad():
            outputs = model.test_step(pseudo_collate(batch))
        for idx, output in zip(where, outputs):
            results[idx] = output
    if single:
        return results[0]
    failures.sort(key=lambda f: f.index)
    for failure in failures:
        warnings.warn(f'inference_sniper: skipped {failure.error}')
    return InferenceResults(results, failures)
