"""tools/analysis_tools/{analyze_scales,browse_chips}.py, run as users run
them (subprocesses from the repo root) on tiny generated COCO data."""
import json
import sys

import cv2
import numpy as np
import pytest
import tiny_coco as tc

ANALYZE = tc.TOOLS / 'analysis_tools' / 'analyze_scales.py'
BROWSE = tc.TOOLS / 'analysis_tools' / 'browse_chips.py'

SNIPER_EXTRA = '''
sniper_pipeline = [
    dict(type='LoadSniperChipFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SniperChipCrop'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs', meta_keys=(
        'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
        'flip', 'flip_direction', 'chip_offset', 'chip_scale',
        'chip_valid_range', 'chip_scale_idx', 'chip_is_negative'))
]
train_dataloader = dict(
    sampler=dict(_delete_=True, type='SniperChipSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='SniperChipDataset',
        scales={scales!r},
        valid_ranges={ranges!r},
        chip_size={chip_size},
        dataset=dict(
            type='CocoDataset', data_root=data_root, metainfo=metainfo,
            ann_file='annotations/tiny.json', data_prefix=dict(img='images/'),
            filter_cfg=dict(filter_empty_gt=False),
            pipeline=sniper_pipeline)))
'''


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('analysis')
    ann = tc.make_tiny_coco(root / 'data', num_images=3, img_size=256,
                            sides=(6, 120), boxes_per_image=8)
    return root, ann


def test_analyze_scales_on_a_coco_json(data, tmp_path):
    _, ann = data
    res = tc.run_ok([
        sys.executable, ANALYZE, ann, '--chip-size', '128', '--band', '16',
        '64', '--out-dir', tmp_path
    ])
    out = res.stdout
    assert 'Object size (sqrt-area, original px) percentiles:' in out
    assert 'rect' in out and 'frame' in out and '(all)' in out
    advice = json.loads((tmp_path / 'scale_advice.json').read_text())
    prop = advice['proposal']
    assert len(prop['scales']) >= 2
    assert prop['valid_ranges'][0][0] == -1
    assert prop['valid_ranges'][-1][1] == -1
    reports = advice['reports']
    assert set(reports) == {'proposal', 'reference (default)'}
    assert reports['proposal']['invalid'] == 0
    # the reference COCO scales upsample 3x: most of these boxes no longer
    # fit a 128 px chip
    assert reports['reference (default)']['invalid_share'] > 0.5
    assert 'too long for a chip' in out
    # the printed block is Python and carries the proposal
    block = advice['config_block']
    assert block in out
    scope = {}
    exec(block, scope)  # noqa: S102 (our own output)
    assert [list(s) if isinstance(s, tuple) else s
            for s in scope['sniper_scales']] == prop['scales']
    assert scope['train_dataloader']['dataset']['chip_size'] == 128
    img = cv2.imread(str(tmp_path / 'scale_histogram.png'))
    # two panels (proposal, current), 8 x 5.5 inches at 80 dpi
    assert img is not None and img.shape[:2] == (440, 640)
    assert img.std() > 10


def test_analyze_scales_on_a_config_uses_its_settings(data, tmp_path):
    root, _ = data
    cfg = tc.write_tiny_config(
        tmp_path / 'cfg.py', root / 'data',
        extra=SNIPER_EXTRA.format(scales=[1.0, 0.5],
                                  ranges=[(-1, 40), (30, -1)],
                                  chip_size=128))
    res = tc.run_ok([sys.executable, ANALYZE, cfg])
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith('config ')]
    assert len(lines) == 1
    assert '[1, 0.5]' in lines[0] and '[(-1, 40), (30, -1)]' in lines[0]
    assert 'chip 128, stride 32' in res.stdout


def test_browse_chips_writes_one_png_per_image_and_chip(data, tmp_path):
    root, _ = data
    chip = 128
    cfg = tc.write_tiny_config(
        tmp_path / 'cfg.py', root / 'data',
        extra=SNIPER_EXTRA.format(scales=[2.0, 1.0],
                                  ranges=[(-1, 40), (30, -1)],
                                  chip_size=chip))
    out_dir = tmp_path / 'browse'
    res = tc.run_ok([
        sys.executable, BROWSE, cfg, '--out-dir', out_dir, '--images', '2'
    ])
    files = sorted(p.name for p in out_dir.iterdir())
    assert len(files) == len(set(files))
    wholes = [f for f in files if f.endswith('_image.png')]
    chips = [f for f in files if '_s' in f and '_c' in f]
    assert wholes == ['000001_i0_image.png', '000002_i1_image.png']
    assert len(chips) + len(wholes) == len(files)
    assert f'wrote {len(files)} images' in res.stdout
    # both scales have chips; 256 px images at 2x need several 128 px chips
    assert any('_s0_c001' in f for f in chips)
    assert any('_s1_c000' in f for f in chips)
    for name in files:
        img = cv2.imread(str(out_dir / name))
        assert img is not None, name
        if name in wholes:
            assert img.shape[:2] == (256, 256)
        else:
            assert img.shape[:2] == (chip, chip)
        assert img.std() > 5, name
    # the whole image shows chips in the scale colours (BGR of (0, 160, 255)
    # for scale 0)
    whole = cv2.imread(str(out_dir / wholes[0]))
    assert (np.abs(whole.astype(int) - (255, 160, 0)).sum(axis=2)
            < 60).sum() > 50


def test_browse_chips_by_image_id_and_bad_config(data, tmp_path):
    root, _ = data
    cfg = tc.write_tiny_config(
        tmp_path / 'cfg.py', root / 'data',
        extra=SNIPER_EXTRA.format(scales=[1.0], ranges=[(-1, -1)],
                                  chip_size=256))
    out_dir = tmp_path / 'browse'
    tc.run_ok([
        sys.executable, BROWSE, cfg, '--out-dir', out_dir, '--image-ids', '3',
        '--no-chips'
    ])
    assert sorted(p.name for p in out_dir.iterdir()) == ['000003_i2_image.png']
    res = tc.run([
        sys.executable, BROWSE, cfg, '--out-dir', out_dir, '--image-ids', '99'
    ])
    assert res.returncode != 0 and 'no image with img_id' in res.output
    plain = tc.write_tiny_config(tmp_path / 'plain.py', root / 'data')
    res = tc.run([sys.executable, BROWSE, plain, '--out-dir', out_dir])
    assert res.returncode != 0 and 'not a SniperChipDataset' in res.output


def test_analyze_scales_takes_ranges_that_start_with_minus_one(data):
    # '-1,40' and '30,-1' are values, not options (argparse took '-1,40'
    # for an unknown option and exited with status 2)
    _, ann = data
    res = tc.run_ok([
        sys.executable, ANALYZE, ann, '--chip-size', '128', '--scales',
        '1.0', '-1,256', '--valid-ranges', '-1,40', '30,-1'
    ])
    rows = [ln for ln in res.stdout.splitlines()
            if '[(-1, 40), (30, -1)]' in ln]
    assert len(rows) == 1 and '(-1, 256)' in rows[0]


def _load_analyze():
    import importlib.util
    spec = importlib.util.spec_from_file_location('analyze_scales', ANALYZE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _coco(**overrides):
    coco = dict(
        images=[dict(id=1, file_name='a.jpg', height=100, width=120)],
        annotations=[dict(id=7, image_id=1, category_id=1,
                          bbox=[1, 2, 30, 40])],
        categories=[dict(id=1, name='a')])
    coco.update(overrides)
    return coco


@pytest.mark.parametrize('content, words', [
    ('{"images": [', ['not valid JSON']),
    ('42', ['not a COCO annotation file', 'int']),
    (json.dumps(_coco(annotations=[dict(id=7, image_id=1, category_id=99,
                                        bbox=[1, 2, 3, 4])])),
     ['annotation 7', 'category_id 99']),
    (json.dumps(_coco(annotations=[dict(id=7, image_id=1, category_id=1,
                                        bbox=['1', '2', '3', '4'])])),
     ['annotation 7', 'four numbers']),
    (json.dumps(_coco(images=[dict(id=1, file_name='a.jpg', height=-5,
                                   width=120)])),
     ['image a.jpg', 'height -5']),
])
def test_read_coco_names_the_file_and_the_entry(tmp_path, content, words):
    """Issue 19, item 11: these gave raw KeyError / JSONDecodeError /
    TypeError, or a negative image height went through."""
    path = tmp_path / 'ann.json'
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        _load_analyze().read_coco(str(path))
    message = str(info.value)
    assert message.startswith(f'{path}: ')
    for word in words:
        assert word in message
