# Copyright (c) mmsniper contributors. All rights reserved.
"""AutoFocus end to end: the demo AutoFocus config trained by
``tools/train.py`` (focus head and FocusPixel labels in the chip pipeline),
tested coarse to fine by ``tools/test.py --tta``, with pictures."""
import re
import sys
from pathlib import Path

import cv2
import torch

import tiny_coco as tc

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from sniper_test_utils import write_image_dataset  # noqa: E402
from test_tools.test_sniper_test import _data_options  # noqa: E402

AF_CONFIG = (
    tc.REPO_ROOT / 'configs/sniper' /
    'faster-rcnn_r18-slim_fpn_sniper-autofocus-demo_synthetic.py')
CLASSES = ('vehicle', 'roof', 'tank')


def test_autofocus_train_and_test(tmp_path):
    data = tmp_path / 'data'
    write_image_dataset(
        str(data), num_images=2, size=(360, 480), seed=1, classes=CLASSES)
    work_dir = tmp_path / 'work_dir'
    res = tc.run_ok(
        tc.train_cmd(AF_CONFIG, work_dir, '--cfg-options',
                     *_data_options(data), 'train_cfg.max_iters=2',
                     'default_hooks.checkpoint.interval=2',
                     'default_hooks.logger.interval=1'),
        timeout=600)
    assert 'loss_focus' in res.output, res.describe()
    ckpt = work_dir / 'iter_2.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert any(k.startswith('focus_head.') for k in state['state_dict'])
    # detector keys saved as the plain detector has them
    assert 'backbone.conv1.weight' in state['state_dict']

    vis = tmp_path / 'vis'
    res = tc.run_ok(
        tc.eval_cmd(AF_CONFIG, ckpt, tmp_path / 'wd', '--tta',
                    '--cfg-options', *_data_options(data),
                    f'tta_model.vis_dir={vis}',
                    'tta_model.chip_params=[(1,0.0,4),(1,0.0,4)]'),
        timeout=600)
    text = res.output
    assert 'coco/bbox_mAP:' in text
    assert 'AutoFocus test: 2 images' in text, text[-3000:]
    # threshold 0: every cell is set, the FocusChips cover each image, so
    # the finer scales cost what the full test costs
    metric_line = [x for x in text.splitlines() if 'coco/bbox_mAP:' in x][-1]
    match = re.search(r'sniper/px_fraction_of_full: ([0-9.]+)', metric_line)
    assert match and float(match.group(1)) >= 1.0 - 1e-6, metric_line
    pictures = sorted(vis.glob('*_autofocus.jpg'))
    assert len(pictures) == 2
    assert cv2.imread(str(pictures[0])).shape == (360, 480, 3)
