"""SNIPER multi-scale testing end to end: ``tools/test.py --tta`` on the
demo config, the Python API (a file, a folder) and demo/image_demo.py, with
a demo-config checkpoint written by ``tools/train.py`` (1 iteration)."""
import pickle
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

import tiny_coco as tc

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from sniper_test_utils import write_image_dataset  # noqa: E402

DEMO_CONFIG = (
    tc.REPO_ROOT / 'configs/sniper' /
    'faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py')
CLASSES = ('vehicle', 'roof', 'tank')
IMG_SIZE = (360, 480)


def _data_options(root: Path):
    """--cfg-options pointing the demo config at the tiny data set."""
    data_root = f'{root}/'
    ann = f'{root}/ann.json'
    opts = [
        f'train_dataloader.dataset.dataset.data_root={data_root}',
        'train_dataloader.dataset.dataset.ann_file=ann.json',
        'train_dataloader.dataset.dataset.data_prefix.img=images/',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
    ]
    for split in ('val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.data_root={data_root}',
            f'{split}_dataloader.dataset.ann_file=ann.json',
            f'{split}_dataloader.dataset.data_prefix.img=images/',
            f'{split}_dataloader.num_workers=0',
            f'{split}_evaluator.ann_file={ann}',
        ]
    return opts


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('sniper_test')
    data = root / 'data'
    write_image_dataset(
        str(data), num_images=2, size=IMG_SIZE, seed=1, classes=CLASSES)
    work_dir = root / 'work_dir'
    res = tc.run_ok(
        tc.train_cmd(DEMO_CONFIG, work_dir, '--cfg-options',
                     *_data_options(data), 'train_cfg.max_iters=1',
                     'default_hooks.checkpoint.interval=1'),
        timeout=600)
    ckpt = work_dir / 'iter_1.pth'
    assert ckpt.is_file(), res.describe()
    return dict(root=root, data=data, ckpt=ckpt)


def _expected_pixels():
    """Per scale, the px the demo's test scales cost on a 360x480 image
    when the 1.5x scale is tiled (max_pixels=2e5, tile_size=300)."""
    from mmsniper.chips import plan_scale_tiles, scaled_size
    height, width = IMG_SIZE
    tiles = plan_scale_tiles(IMG_SIZE, 1.5, 2e5, 300, 50, 10)
    assert len(tiles) > 1
    fine = sum(
        np.prod(scaled_size((t[3] - t[1], t[2] - t[0]), 1.5)) for t in tiles)
    middle = np.prod(scaled_size(IMG_SIZE, 0.6))
    coarse = np.prod(scaled_size(IMG_SIZE, 512 / 480))
    return [fine, middle, coarse]


def test_tools_test_tta_runs_the_sniper_test(trained, tmp_path):
    out = tmp_path / 'results.pkl'
    res = tc.run_ok(
        tc.eval_cmd(DEMO_CONFIG, trained['ckpt'], tmp_path / 'wd', '--tta',
                    '--out', str(out), '--cfg-options',
                    *_data_options(trained['data']),
                    'tta_model.tile_cfg.max_pixels=200000',
                    'tta_model.tile_cfg.tile_size=300'),
        timeout=600)
    text = res.output
    assert 'coco/bbox_mAP:' in text
    # the accounting, on the metric line and per scale
    metric_line = [x for x in text.splitlines() if 'coco/bbox_mAP:' in x][-1]
    expected = _expected_pixels()
    for idx, pixels in enumerate(expected):
        match = re.search(rf'sniper/Mpx_per_img_scale{idx}: ([0-9.]+)',
                          metric_line)
        assert match, metric_line
        assert float(match.group(1)) == pytest.approx(pixels / 1e6, abs=1e-4)
    match = re.search(r'sniper/Mpx_per_img: ([0-9.]+)', metric_line)
    assert float(match.group(1)) == pytest.approx(
        sum(expected) / 1e6, abs=1e-4)
    assert 'sniper/s_per_img' in metric_line
    assert 'SNIPER test: 2 images' in text
    assert 'scale 0 1.5:' in text and '2 images tiled' in text
    # predictions in original px, at most 200 per image
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 2
    for result in results:
        boxes = result['pred_instances']['bboxes']
        assert len(boxes) <= 200
        if len(boxes):
            assert boxes[:, 2].max() <= IMG_SIZE[1] + 1e-3
            assert boxes[:, 3].max() <= IMG_SIZE[0] + 1e-3


def test_api_on_a_file_and_a_folder(trained):
    from mmsniper.apis import inference_sniper, init_sniper_detector
    local_loader = CheckpointLoader._schemes['']
    # the checkpoint of tools/train.py loads weights-only once mmsniper is
    # imported (its allow-list of mmengine's HistoryBuffer and numpy types)
    state = torch.load(trained['ckpt'], map_location='cpu', weights_only=True)
    assert 'state_dict' in state
    model = init_sniper_detector(
        str(DEMO_CONFIG),
        str(trained['ckpt']),
        device='cpu',
        tta_model=dict(scales=[1.0, 0.5], valid_ranges=[(-1, 60), (30, -1)]))
    # scoped: mmengine's loader is restored, torch's default untouched
    assert CheckpointLoader._schemes[''] is local_loader
    assert model.dataset_meta['classes'] == CLASSES
    state = torch.load(trained['ckpt'], map_location='cpu',
                       weights_only=False)['state_dict']
    key = 'roi_head.bbox_head.fc_cls.weight'
    assert torch.equal(model.module.state_dict()[key], state[key])

    images = sorted((trained['data'] / 'images').glob('*.jpg'))
    single = inference_sniper(model, str(images[0]))
    assert single.img_path == str(images[0])
    assert tuple(single.ori_shape) == IMG_SIZE
    assert {'bboxes', 'scores', 'labels'} <= set(single.pred_instances.keys())
    assert model.sniper_stats['pixels'].tolist() == [
        360 * 480, 180 * 240
    ]
    folder = inference_sniper(model, str(trained['data'] / 'images'))
    assert [r.img_path for r in folder] == [str(p) for p in images]
    # the same image gives the same result through either route
    assert torch.equal(folder[0].pred_instances.bboxes,
                       single.pred_instances.bboxes)
    array = inference_sniper(model, cv2.imread(str(images[0])))
    assert torch.allclose(array.pred_instances.bboxes,
                          single.pred_instances.bboxes)
    empty = trained['root'] / 'empty'
    empty.mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match='no image'):
        inference_sniper(model, str(empty))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        inference_sniper(model, str(empty / 'missing.jpg'))


def test_image_demo_writes_pictures(trained, tmp_path):
    out_dir = tmp_path / 'vis'
    res = tc.run_ok([
        sys.executable,
        str(tc.REPO_ROOT / 'demo/image_demo.py'),
        str(trained['data'] / 'images'),
        str(DEMO_CONFIG),
        str(trained['ckpt']), '--out-dir',
        str(out_dir), '--cfg-options', 'tta_model.scales=[1.0,0.5]',
        'tta_model.valid_ranges=[(-1,60),(30,-1)]'
    ],
                    timeout=600)
    names = sorted(p.name for p in (out_dir / 'vis').iterdir())
    assert names == ['0000.jpg', '0001.jpg']
    assert cv2.imread(str(out_dir / 'vis/0000.jpg')).shape[:2] == IMG_SIZE
    assert 'SNIPER test: 2 images' in res.output
    assert (out_dir / 'predictions.json').is_file()


def test_api_loads_and_runs_an_autofocus_model(tmp_path):
    """Issue 19, item 2: mmdet's init_detector reads model.backbone, which
    an AutoFocusDetector keeps in model.detector."""
    from mmengine.config import Config

    from mmdet.registry import MODELS
    from mmsniper.apis import inference_sniper, init_sniper_detector
    config = (tc.REPO_ROOT / 'configs/sniper' /
              'faster-rcnn_r18-slim_fpn_sniper-autofocus-demo_synthetic.py')
    write_image_dataset(str(tmp_path), num_images=1, size=IMG_SIZE,
                        classes=CLASSES)
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    built = MODELS.build(cfg.model)
    ckpt = tmp_path / 'autofocus.pth'
    torch.save(dict(state_dict=built.state_dict(),
                    meta=dict(dataset_meta=dict(classes=CLASSES))), ckpt)
    model = init_sniper_detector(str(config), str(ckpt), device='cpu')
    assert type(model).__name__ == 'AutoFocusTTAModel'
    assert type(model.module).__name__ == 'AutoFocusDetector'
    assert model.dataset_meta['classes'] == CLASSES
    key = next(k for k in built.state_dict() if k.startswith('focus_head'))
    assert torch.equal(model.module.state_dict()[key],
                       built.state_dict()[key])
    image = next((tmp_path / 'images').glob('*.jpg'))
    result = inference_sniper(model, str(image))
    assert tuple(result.ori_shape) == IMG_SIZE
    assert 'bboxes' in result.pred_instances
    assert model.sniper_stats['images'] == 1
    assert model.sniper_stats['full_pixels'].sum() > 0


@pytest.mark.parametrize('img, word', [
    (np.zeros((0, 0, 3), np.uint8), 'empty'),
    (np.zeros((40, 60), np.uint8), 'grayscale'),
    (np.zeros((40, 60, 3), np.float32), 'float32'),
])
def test_api_refuses_arrays_it_would_misread(img, word):
    """Issue 19, item 6: these failed deep in mmengine or were read as
    0-255 pixels."""
    from mmsniper.apis import inference_sniper
    with pytest.raises(ValueError, match=word):
        inference_sniper(object(), img)
    with pytest.raises(ValueError, match='batch_size'):
        inference_sniper(object(), np.zeros((4, 4, 3), np.uint8),
                         batch_size=0)


def test_checkpoint_of_another_model_is_refused(trained, tmp_path):
    """Issue 19, item 7: a checkpoint matching few of the detector's keys
    (an RPN's, a classifier's) loaded with exit status 0 and the detector
    ran with random weights."""
    from mmsniper.apis import init_sniper_detector
    from mmsniper.utils import CheckpointMismatchError
    state = torch.load(trained['ckpt'], map_location='cpu',
                       weights_only=False)['state_dict']
    rpn_only = {k: v for k, v in state.items() if not k.startswith('roi')}
    rpn_only = {k: v for k, v in rpn_only.items()
                if k.startswith('rpn_head')}  # no backbone, no neck
    other = tmp_path / 'rpn_only.pth'
    torch.save(dict(state_dict=rpn_only), other)
    with pytest.raises(CheckpointMismatchError,
                       match=r'rpn_only.pth: only \d+ of the \d+ weights'):
        init_sniper_detector(str(DEMO_CONFIG), str(other), device='cpu')
    model = init_sniper_detector(str(DEMO_CONFIG), str(other),
                                 device='cpu', allow_partial_checkpoint=True)
    assert model is not None
    res = tc.run(
        tc.eval_cmd(DEMO_CONFIG, other, tmp_path / 'wd', '--cfg-options',
                    *_data_options(trained['data'])),
        timeout=300)
    assert res.returncode == 1, res.describe()
    assert 'rpn_only.pth: only' in res.output
    assert '--allow-partial-checkpoint' in res.output
