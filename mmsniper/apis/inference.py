# Copyright (c) mmsniper contributors. All rights reserved.
"""SNIPER inference on images, in ``mmdet.apis.inference`` style.

Example::

    from mmsniper.apis import inference_sniper, init_sniper_detector
    model = init_sniper_detector(CONFIG, CHECKPOINT, device='cpu')
    result = inference_sniper(model, 'demo.jpg')       # one DetDataSample
    results = inference_sniper(model, 'images/')       # one per image
"""
import copy
import os.path as osp
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.utils import scandir

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample

__all__ = ['init_sniper_detector', 'inference_sniper', 'list_images']

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
                         allow_partial_checkpoint: bool = False):
    """Build a SNIPER multi-scale detector from a config and a checkpoint.

    The detector is built and loaded by mmdet's ``init_detector`` and wrapped
    in the config's ``tta_model`` (a ``SniperTTAModel``). A checkpoint
    written by ``tools/train.py`` (not weights-only: it holds mmengine's
    message hub) is loaded through mmsniper's scoped trust
    (:func:`mmsniper.utils.trusted_checkpoint_loading`): the file you name
    here is trusted, nothing else changes, and torch's weights-only default
    stays on outside this call.

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

    Returns:
        SniperTTAModel: In eval mode, with ``cfg`` and ``dataset_meta``.
    """
    import mmsniper  # noqa: F401  registers mmsniper's modules
    from mmdet.apis import init_detector

    from mmsniper.utils import (check_checkpoint_matches,
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
    # one scoped call: the named checkpoint is trusted, nothing global
    with trusted_checkpoint_loading(trusted_files=[checkpoint]) as policy:
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
        if kind.startswith('LoadImageFrom') and from_array:
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


def inference_sniper(model,
                     imgs: ImagesType,
                     batch_size: int = 1):
    """Run SNIPER multi-scale inference on images.

    Args:
        model (SniperTTAModel): From :func:`init_sniper_detector`.
        imgs (str | ndarray | Sequence): An image file, a folder (every
            image below it, sorted), a BGR ``(H, W, 3)`` array, or a list of
            files and arrays.
        batch_size (int): Images per ``test_step``.

    Returns:
        DetDataSample | list[DetDataSample]: One result for a single file or
        array, a list for a folder or a list; boxes in original px.
    """
    if isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f'inference_sniper: batch_size must be a positive '
                         f'integer, got {batch_size!r}')
    single = isinstance(imgs, (str, Path, np.ndarray))
    if isinstance(imgs, (str, Path)) and osp.isdir(str(imgs)):
        imgs, single = list_images(str(imgs)), False
    elif single:
        imgs = [imgs]
    imgs = [str(i) if isinstance(i, Path) else i for i in imgs]
    for idx, img in enumerate(imgs):
        if isinstance(img, str) and not osp.isfile(img):
            raise FileNotFoundError(f'image {img} does not exist')
        if isinstance(img, np.ndarray):
            _check_array(img, idx)
    cfg = model.cfg
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    pipelines = {}
    results: List[DetDataSample] = []
    for first in range(0, len(imgs), batch_size):
        batch = []
        for idx, img in enumerate(imgs[first:first + batch_size], first):
            from_array = isinstance(img, np.ndarray)
            if from_array not in pipelines:
                pipelines[from_array] = _test_pipeline(cfg, from_array)
            data = dict(img=img, img_id=idx) if from_array else dict(
                img_path=img, img_id=idx)
            packed = pipelines[from_array](data)
            if packed is None:
                name = f'array {idx}' if from_array else img
                raise RuntimeError(f'cannot load image {name}')
            batch.append(packed)
        with torch.no_grad():
            results.extend(model.test_step(pseudo_collate(batch)))
    return results[0] if single else results
