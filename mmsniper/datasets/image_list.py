# Copyright (c) mmsniper contributors. All rights reserved.
"""The images (path and annotated size) of a config's datasets or of a COCO
annotation file, for the tools that process every image once."""
import json
import os.path as osp
from typing import List, Optional, Sequence

_SPLITS = {
    'train': 'train_dataloader',
    'val': 'val_dataloader',
    'test': 'test_dataloader'
}


def _innermost(dataset_cfg):
    """Descend through dataset wrappers (``dataset=...``) to the datasets
    that own an ``ann_file``; ``datasets=[...]`` lists are followed too."""
    if 'datasets' in dataset_cfg:
        out = []
        for d in dataset_cfg['datasets']:
            out += _innermost(d)
        return out
    if 'dataset' in dataset_cfg and 'ann_file' not in dataset_cfg:
        return _innermost(dataset_cfg['dataset'])
    return [dataset_cfg]


def images_of_config(config: str,
                     splits: Sequence[str] = ('train', ),
                     cfg_options: Optional[dict] = None) -> List[dict]:
    """``dict(img_path, height, width, color_type)`` for every image of the
    given splits of ``config`` (duplicates removed, order kept)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmsniper  # noqa: F401  (registers the transforms)
    from mmdet.registry import DATASETS
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    out, seen = [], set()
    for split in splits:
        if split not in _SPLITS:
            raise ValueError(f'split must be one of {sorted(_SPLITS)}, got '
                             f'{split!r}')
        loader = cfg.get(_SPLITS[split])
        if not loader:
            raise ValueError(f'{config}: has no {_SPLITS[split]}')
        for ds_cfg in _innermost(loader['dataset']):
            ds_cfg = ds_cfg.copy()
            color_type = 'color'
            for t in ds_cfg.get('pipeline', None) or []:
                if 'Load' in str(t.get('type')) and 'color_type' in t:
                    color_type = t['color_type']
            ds_cfg['pipeline'] = []
            ds_cfg['lazy_init'] = False
            dataset = DATASETS.build(ds_cfg)
            for i in range(len(dataset)):
                info = dataset.get_data_info(i)
                path = info['img_path']
                if path in seen:
                    continue
                seen.add(path)
                out.append(
                    dict(
                        img_path=path,
                        height=info.get('height'),
                        width=info.get('width'),
                        color_type=color_type))
    return out


def images_of_coco(ann_file: str, img_dir: str) -> List[dict]:
    """Images of a COCO annotation file, ``file_name`` joined to
    ``img_dir``."""
    with open(ann_file) as f:
        coco = json.load(f)
    out = []
    for img in coco.get('images', []):
        out.append(
            dict(
                img_path=osp.join(img_dir, img['file_name']),
                height=img.get('height'),
                width=img.get('width'),
                color_type='color'))
    return out


def images_of(
    config_or_ann: str,
    img_dir: Optional[str] = None,
    splits: Sequence[str] = ('train', )
) -> List[dict]:
    """:func:`images_of_coco` for a ``.json`` file (``img_dir`` required),
    else :func:`images_of_config`."""
    if config_or_ann.endswith('.json'):
        if img_dir is None:
            raise ValueError(
                f'{config_or_ann} is an annotation file: give the image '
                'directory (--img-dir) that its file_name entries are '
                'relative to')
        return images_of_coco(config_or_ann, img_dir)
    return images_of_config(config_or_ann, splits)
