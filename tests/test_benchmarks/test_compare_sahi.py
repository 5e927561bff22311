"""benchmarks/compare_sahi.py: the pieces that need no SAHI (arguments,
pixel counting, COCO results, evaluation, the table, the config SAHI's mmdet
wrapper is given) and, only where sahi is importable (it is installed for
the benchmark alone, from requirements/sahi.txt), SAHI's own wrapper on that
config. Nothing is installed here."""
import importlib.util
import json
import os.path as osp
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import compare_sahi as cs  # noqa: E402

DEMO_CONFIG = osp.join(
    ROOT, 'configs/sniper/faster-rcnn_r18-slim_fpn_sniper-demo_synthetic.py')
HAS_SAHI = importlib.util.find_spec('sahi') is not None


def test_parse_args_defaults_and_errors(capsys):
    args = cs.parse_args(['c.py', 'k.pth', '--ann', 'a.json', '--img-dir',
                          'imgs'])
    assert (args.slice_size, args.overlap) == (512, 0.2)  # SAHI's defaults
    assert args.settings is None and args.max_images is None
    assert args.worker is None
    args = cs.parse_args(['c.py', 'k.pth', '--ann', 'a.json', '--img-dir',
                          'i', '--settings', 'tta', 'sahi-default',
                          '--max-images', '2'])
    assert args.settings == ['tta', 'sahi-default'] and args.max_images == 2
    for bad in (['--max-images', '0'], ['--overlap', '1'],
                ['--slice-size', '0'], ['--budget-factor', '0'],
                ['--settings', 'nope'], ['--worker', 'tta']):
        with pytest.raises(SystemExit):
            cs.parse_args(['c.py', 'k.pth', '--ann', 'a.json', '--img-dir',
                           'i'] + bad)
    with pytest.raises(SystemExit):  # --ann is required
        cs.parse_args(['c.py', 'k.pth', '--img-dir', 'i'])
    capsys.readouterr()


@pytest.mark.parametrize('resize', [
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='Resize', scale_factor=1.5, keep_ratio=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='Resize', scale=(768, 768), keep_ratio=True),
    dict(type='Resize', scale=(64, 48), keep_ratio=False),
    dict(type='Resize', scale=300, keep_ratio=True),
])
@pytest.mark.parametrize('hw', [(37, 53), (512, 512), (90, 41)])
def test_resized_hw_matches_mmdet_resize(resize, hw):
    from mmdet.datasets.transforms import Resize
    cfg = {k: v for k, v in resize.items() if k != 'type'}
    out = Resize(**cfg)(dict(img=np.zeros(hw + (3, ), np.uint8)))
    assert cs.resized_hw(*hw, resize) == tuple(out['img'].shape[:2])
    assert cs.resized_hw(*hw, resize) == tuple(out['img_shape'])


def test_resized_hw_without_resize_and_known_values():
    assert cs.resized_hw(2022, 2390, None) == (2022, 2390)
    # 512 px slice, keep-ratio into 768x768: 1.5x
    assert cs.resized_hw(512, 512, dict(scale=(768, 768),
                                        keep_ratio=True)) == (768, 768)
    # mmdet 1333x800 on 480x640: min(800 / 480, 1333 / 640) = 5 / 3
    assert cs.resized_hw(480, 640, dict(scale=(1333, 800),
                                        keep_ratio=True)) == (800, 1067)


def test_find_resize():
    pipe = [dict(type='LoadImageFromFile'),
            dict(type='mmdet.Resize', scale=(5, 5), keep_ratio=True),
            dict(type='PackDetInputs')]
    assert cs.find_resize(pipe) == pipe[1]
    assert cs.find_resize([pipe[0], pipe[2]]) is None
    with pytest.raises(NotImplementedError, match='RandomResize'):
        cs.find_resize([dict(type='RandomResize', scale=(5, 5))])
    with pytest.raises(NotImplementedError, match='two Resize'):
        cs.find_resize([pipe[1], pipe[1]])


def test_budget_factor():
    assert cs.budget_factor(dict(scales=[1.5, 0.6, (-1, 512)])) == 1.5
    assert cs.budget_factor(dict(scales=[(-1, 512), 2, 0.5])) == 2.0
    with pytest.raises(ValueError, match='--budget-factor'):
        cs.budget_factor(dict(scales=[(800, 1333)]))


def _write_gt(tmp_path):
    gt = dict(
        images=[dict(id=7, file_name='a.jpg', width=100, height=80),
                dict(id=9, file_name='b.jpg', width=100, height=80)],
        categories=[dict(id=3, name='vehicle'), dict(id=5, name='roof')],
        annotations=[
            dict(id=1, image_id=7, category_id=3, bbox=[10, 10, 20, 10],
                 area=200, iscrowd=0),
            dict(id=2, image_id=9, category_id=5, bbox=[40, 30, 50, 40],
                 area=2000, iscrowd=0)
        ])
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(gt))
    return str(path), gt


def test_label_to_category_by_name(tmp_path):
    _, gt = _write_gt(tmp_path)
    assert cs.label_to_category(('roof', 'vehicle'),
                                gt['categories']) == {0: 5, 1: 3}
    with pytest.raises(ValueError, match="'tank'"):
        cs.label_to_category(('vehicle', 'tank'), gt['categories'])


def test_coco_results_round_trip_through_cocoeval(tmp_path):
    ann, gt = _write_gt(tmp_path)
    l2c = cs.label_to_category(('vehicle', 'roof'), gt['categories'])
    res = cs.to_coco_results(7, np.array([[10., 10., 30., 20.]]), [0.9], [0],
                             l2c)
    assert res == [dict(image_id=7, category_id=3,
                        bbox=[10.0, 10.0, 20.0, 10.0], score=0.9)]
    res += cs.to_coco_results(9, [[40, 30, 90, 70]], [0.8], [1], l2c)
    ap, ap_small = cs.coco_eval(ann, res, [7, 9])
    assert ap == pytest.approx(1.0) and ap_small == pytest.approx(1.0)
    # the wrong class (xyxy read as xywh would also miss): AP drops
    wrong = cs.to_coco_results(9, [[40, 30, 90, 70]], [0.8], [0], l2c)
    ap, _ = cs.coco_eval(ann, res[:1] + wrong, [7, 9])
    assert ap == pytest.approx(0.5)
    # only the images asked for count; no results at all is AP 0
    assert cs.coco_eval(ann, res[:1], [7])[0] == pytest.approx(1.0)
    assert cs.coco_eval(ann, [], [7, 9]) == (0.0, 0.0)


def test_select_images(tmp_path):
    ann, _ = _write_gt(tmp_path)
    (tmp_path / 'a.jpg').write_bytes(b'x')
    with pytest.raises(FileNotFoundError, match=r'b\.jpg.*id 9'):
        cs.select_images(ann, str(tmp_path), None)
    assert [im['id'] for im in cs.select_images(ann, str(tmp_path), 1)] == [7]


def test_format_table():
    rows = [
        dict(setting='single', ap=0.1234, ap_small=0.05, px_per_image=4e6,
             s_per_image=2.0, peak_rss_bytes=512 * 2**20),
        dict(setting='sahi-default', ap=0.2, ap_small=0.25,
             px_per_image=1.2e7, s_per_image=30.5,
             peak_rss_bytes=1024 * 2**20),
    ]
    lines = cs.format_table(rows).splitlines()
    assert lines[0].startswith('| setting | AP | AP_small | M px / image')
    assert len(lines) == 4
    assert lines[2] == ('| single scale (mmdet test pipeline) | 12.3 | 5.0 '
                        '| 4.00 | 1.00x | 2.00 | 512 |')
    assert lines[3] == ('| SAHI 0.12.8, defaults (GREEDYNMM/IOS 0.5) '
                        '| 20.0 | 25.0 | 12.00 '
                        '| 3.00x | 30.50 | 1024 |')
    # without a single-scale row there is no ratio
    assert '| - |' in cs.format_table(rows[1:])


def test_sahi_config_and_score_thr():
    cfg = cs._load_cfg(DEMO_CONFIG)
    new = cs.sahi_config(cfg)
    pipe = new.test_dataloader.dataset.pipeline
    assert pipe[0]['type'] == 'LoadImageFromFile'
    assert [s['type'] for s in pipe[1:]] == [
        s['type'] for s in cfg.test_dataloader.dataset.pipeline[1:]]
    assert new.train_dataloader.dataset.pipeline == pipe
    # the original is untouched
    assert cfg.test_dataloader.dataset.pipeline[0]['type'] == (
        'LoadSniperChipFromFile')
    assert cs._score_thr(cfg) == pytest.approx(0.05)
    assert not cs.is_autofocus(cfg)
    assert cs.budget_factor(cfg.tta_model) == 1.5


def test_missing_sahi_names_requirements_file(monkeypatch):
    monkeypatch.setitem(sys.modules, 'sahi', None)  # import sahi fails
    with pytest.raises(cs.SahiMissingError, match='requirements/sahi.txt'):
        cs.import_sahi()


def test_main_exits_2_without_sahi(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, 'sahi', None)
    ann, _ = _write_gt(tmp_path)
    code = cs.main([DEMO_CONFIG, 'none.pth', '--ann', ann, '--img-dir',
                    str(tmp_path), '--settings', 'sahi-default'])
    assert code == 2
    assert 'requirements/sahi.txt' in capsys.readouterr().err


@pytest.mark.skipif(not HAS_SAHI,
                    reason='sahi is not importable: it is installed for '
                    'benchmarks/compare_sahi.py only (requirements/sahi.txt)')
def test_sahi_wrapper_accepts_our_config_and_detections_convert():
    from sahi.models.mmdet import MmdetDetectionModel
    from sahi.prediction import ObjectPrediction
    cfg = cs._load_cfg(DEMO_CONFIG)
    # SAHI's own mmdet wrapper builds on the adapted config (random
    # weights: the pipeline and the output format are what is checked)
    model = MmdetDetectionModel(config_path=cs.sahi_config(cfg),
                                device='cpu', confidence_threshold=0.0,
                                image_size=96)
    model.perform_inference(np.zeros((64, 80, 3), np.uint8))
    model.convert_original_predictions(shift_amount=[[0, 0]],
                                       full_shape=[[64, 80]])
    assert isinstance(model.object_prediction_list, list)
    pred = ObjectPrediction(bbox=[10, 20, 30, 60], category_id=1,
                            category_name='roof', score=0.7,
                            shift_amount=[100, 5], full_shape=[200, 300])
    boxes, scores, labels = cs.sahi_detections(
        [pred.get_shifted_object_prediction()])
    assert boxes == [[110, 25, 130, 65]]
    assert scores == [pytest.approx(0.7)] and labels == [1]
