"""The "Use your own dataset" walk-through (docs/en/user_guides/
own_dataset.md), end to end on a tiny generated COCO dataset: annotation
file -> analyze_scales.py -> config (the page's, with the proposal pasted)
-> browse_chips.py -> train.py -> test.py. Only the model and the schedule
are shrunk, so it runs on a CPU in a few minutes."""
import json
import sys

import cv2
import tiny_coco as tc

ANALYZE = tc.TOOLS / 'analysis_tools' / 'analyze_scales.py'
BROWSE = tc.TOOLS / 'analysis_tools' / 'browse_chips.py'
BASE = tc.REPO_ROOT / 'configs' / 'sniper' / \
    'faster-rcnn_r50_fpn_sniper-1x_coco.py'

# The page's config, with the analyze_scales.py block pasted at PASTE and
# this checkout's base config instead of `mmsniper::` (which names the
# installed copy).
USER_CONFIG = '''\
_base_ = {base!r}

data_root = {data_root!r}
metainfo = dict(classes=('rect', 'frame'))
chip_size = 128
{paste}
model = dict(roi_head=dict(bbox_head=dict(num_classes=2)))
train_dataloader = dict(dataset=dict(
    scales=sniper_scales, valid_ranges=sniper_valid_ranges,
    chip_size=chip_size,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/tiny.json',
                 data_prefix=dict(img='images/'))))
val_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo,
    ann_file='annotations/tiny.json', data_prefix=dict(img='images/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/tiny.json')
test_evaluator = val_evaluator
'''

# Test only: a tiny model and two iterations, in a child config.
TINY_RUN = '''
_base_ = ['my_sniper_config.py']
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32)))
train_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = dict(num_workers=0, persistent_workers=False)
val_cfg = None
val_dataloader = None
val_evaluator = None
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2)
param_scheduler = []
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=2, by_epoch=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
'''


def test_own_dataset_walkthrough(tmp_path):
    # 1. an annotation file (here: generated)
    ann = tc.make_tiny_coco(tmp_path / 'data' / 'my_dataset', num_images=4,
                            img_size=256, sides=(6, 120), boxes_per_image=8)
    # 2. scales and valid ranges for its object sizes
    adv_dir = tmp_path / 'advice'
    res = tc.run_ok([
        sys.executable, ANALYZE, ann, '--chip-size', '128', '--band', '16',
        '64', '--out-dir', adv_dir
    ])
    advice = json.loads((adv_dir / 'scale_advice.json').read_text())
    assert advice['config_block'] in res.stdout
    paste = '\n'.join(
        ln for ln in advice['config_block'].splitlines()
        if ln.startswith(('#', 'sniper_')) and 'SniperChipDataset level'
        not in ln)
    assert 'sniper_scales = ' in paste and 'sniper_valid_ranges = ' in paste
    # 3. the config
    (tmp_path / 'my_sniper_config.py').write_text(
        USER_CONFIG.format(base=str(BASE),
                           data_root=str(tmp_path / 'data' / 'my_dataset') +
                           '/', paste=paste))
    cfg = tmp_path / 'tiny_run.py'
    cfg.write_text(TINY_RUN)
    # 4. look at the chips
    browse = tmp_path / 'chips'
    tc.run_ok([sys.executable, BROWSE, cfg, '--out-dir', browse,
               '--images', '1'])
    pngs = sorted(browse.glob('*.png'))
    assert len(pngs) >= 2
    assert all(cv2.imread(str(p)) is not None for p in pngs)
    # 5. train
    work_dir = tmp_path / 'work_dir'
    res = tc.run_ok(tc.train_cmd(cfg, work_dir), timeout=400)
    log = tc.read_logs(work_dir)
    scales = advice['proposal']['scales']
    assert 'SniperChipDataset: 4 images' in log
    assert '(per scale [' in log and 'valid at some scale' in log
    assert 'valid at no scale and train only' not in log  # no warning
    assert 'Iter(train) [2/2]' in log
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.is_file()
    assert len(scales) >= 2
    # 6. test
    res = tc.run_ok(tc.eval_cmd(cfg, ckpt, tmp_path / 'test_wd'),
                    timeout=400)
    assert 'coco/bbox_mAP:' in res.output
