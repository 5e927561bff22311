"""benchmarks/bench_pixel_budget.py: chips and pixels on hand-made images,
checked against figures computed by hand (reference COCO settings: scales
(3.0, 1.667, (-1, 512)), ranges ((-1, 80), (32, 150), (120, -1)), chip
512, stride 32, thresholds > 25 / > 10 proposals)."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
from conftest import ROOT, shared_path

sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
import bench_pixel_budget as bpb  # noqa: E402

CHIP_PX = 512 * 512
SIZE = (480, 640)  # height, width
# 640x480 at 3.0, 1.667 and 512 / 640 = 0.8
PYRAMID_PX = 640 * 480 * (3.0**2 + 1.667**2 + 0.8**2)
# mmdet rule: min(800 / 480, 1333 / 640) = 5 / 3
RESIZE_PX = 640 * 480 * (5 / 3)**2
SMALL_BOX = np.array([[100., 100., 140., 140.]])  # sqrt-area 40
LARGE_BOX = np.array([[0., 0., 300., 300.]])  # sqrt-area 300


def cluster(x, y, count, side=30.):
    """``count`` copies of a ``side`` px proposal at ``(x, y)``."""
    return np.tile([[x, y, x + side, y + side]], (count, 1))


def test_one_small_box_two_positive_chips():
    # sqrt-area 40 is in (-1, 80) and (32, 150), not in (120, -1): one chip
    # at 3.0 and one at 1.667, each a full 512x512 of image.
    budget = bpb.image_budget(SMALL_BOX, SIZE)
    assert budget.pos_chips.tolist() == [1, 1, 0]
    assert budget.pos_image_px == pytest.approx(2 * CHIP_PX)
    assert budget.neg_mined.tolist() == [0, 0, 0]
    assert budget.neg_drawn.tolist() == [0, 0, 0]
    assert budget.neg_image_px == 0


def test_coarsest_chip_is_padded():
    # Only (120, -1) holds a 300 px box: one chip, the whole image at 0.8
    # (512x384 of image, padded to 512x512).
    budget = bpb.image_budget(LARGE_BOX, SIZE)
    assert budget.pos_chips.tolist() == [0, 0, 1]
    assert budget.pos_image_px == pytest.approx(512 * 384)


@pytest.mark.parametrize('count, mined', [(25, 0), (26, 1)])
def test_finest_negative_chip_needs_more_than_25_proposals(count, mined):
    # 30 px proposals far from the box: valid only at 3.0 (30 < 32 at
    # 1.667), outside the positive chip [0, 170.7]^2.
    budget = bpb.image_budget(
        SMALL_BOX, SIZE, cluster(500, 20, count), rng=np.random.default_rng(0))
    assert budget.neg_mined.tolist() == [mined, 0, 0]
    assert budget.neg_drawn.tolist() == [mined, 0, 0]
    assert budget.neg_image_px == pytest.approx(mined * CHIP_PX)


def test_two_of_three_negative_chips_drawn():
    # Three clusters more than 170.7 px apart: three chips at 3.0; 2 drawn.
    proposals = np.concatenate(
        [cluster(500, 20, 26),
         cluster(500, 420, 26),
         cluster(20, 400, 26)])
    budget = bpb.image_budget(
        SMALL_BOX, SIZE, proposals, rng=np.random.default_rng(0))
    assert budget.neg_mined.tolist() == [3, 0, 0]
    assert budget.neg_drawn.tolist() == [2, 0, 0]
    assert budget.neg_image_px == pytest.approx(2 * CHIP_PX)
    none = bpb.image_budget(SMALL_BOX, SIZE, proposals, num_neg=0)
    assert none.neg_drawn.sum() == 0


def test_dataset_budget_per_image_means():
    images = [bpb.Image(SIZE, SMALL_BOX), bpb.Image(SIZE, LARGE_BOX)]
    positive = bpb.dataset_budget(images)
    assert positive.num_images == 2
    assert positive.pos_chips.tolist() == [0.5, 0.5, 0.5]
    assert positive.pos_chip_px == 1.5 * CHIP_PX
    assert positive.pos_image_px == pytest.approx(
        (2 * CHIP_PX + 512 * 384) / 2)
    assert positive.resize_px == pytest.approx(RESIZE_PX)
    assert positive.pyramid_px == pytest.approx(PYRAMID_PX)
    assert positive.neg_chip_px == 0
    proposals = [cluster(500, 20, 26), np.zeros((0, 4))]
    both = bpb.dataset_budget(images, proposals, rng=np.random.default_rng(0))
    assert both.neg_drawn.tolist() == [0.5, 0, 0]
    assert both.neg_chip_px == 0.5 * CHIP_PX
    assert both.images_with_neg == 0.5
    with pytest.raises(ValueError, match='proposals for 1 images'):
        bpb.dataset_budget(images, proposals[:1])


def test_box_statistics():
    sizes, log_aspects = bpb.box_statistics(
        [bpb.Image(SIZE, np.array([[0., 0., 10., 40.]]))])
    np.testing.assert_allclose(sizes, [20])
    np.testing.assert_allclose(log_aspects, [np.log(4)])
    with pytest.raises(ValueError, match='no GT box'):
        bpb.box_statistics([bpb.Image(SIZE, np.zeros((0, 4)))])


def test_simulated_proposals():
    sizes, log_aspects = np.array([10.]), np.array([0.])
    boxes = bpb.simulate_proposals(SMALL_BOX, SIZE, 300, 0.5, sizes,
                                   log_aspects, np.random.default_rng(3))
    again = bpb.simulate_proposals(SMALL_BOX, SIZE, 300, 0.5, sizes,
                                   log_aspects, np.random.default_rng(3))
    assert boxes.shape == (300, 4)
    np.testing.assert_array_equal(boxes, again)
    assert (boxes >= 0).all() and (boxes[:, [2, 3]] <= [640, 480]).all()
    # the first half: jittered copies of the box (about 40 px, near it)
    centres = (boxes[:150, :2] + boxes[:150, 2:]) / 2
    assert np.abs(centres - 120).max() < 40
    assert np.median(boxes[:150, 2] - boxes[:150, 0]) == pytest.approx(
        40, rel=0.1)
    # the rest: the pool's 10x10 boxes (where not clipped)
    inner = boxes[150:]
    inner = inner[(inner[:, :2] > 0).all(1) & (inner[:, 2] < 640) &
                  (inner[:, 3] < 480)]
    assert len(inner) > 100
    np.testing.assert_allclose(inner[:, 2:] - inner[:, :2], 10)
    # an image without GT gets random boxes only
    empty = bpb.simulate_proposals(
        np.zeros((0, 4)), SIZE, 50, 0.5, sizes, log_aspects,
        np.random.default_rng(3))
    assert empty.shape == (50, 4)
    assert np.allclose((empty[:, 2:] - empty[:, :2])[(empty[:, :2] > 0).all(1)
                                                     & (empty[:, 2] < 640) &
                                                     (empty[:, 3] < 480)], 10)


def test_load_annotations(tmp_path):
    coco = dict(
        images=[dict(id=7, file_name='a.jpg', height=480, width=640)],
        annotations=[
            dict(id=1, image_id=7, bbox=[10, 20, 30, 40], iscrowd=0),
            dict(id=2, image_id=7, bbox=[0, 0, 50, 50], iscrowd=1)
        ])
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(coco))
    (image, ) = bpb.load_annotations(str(path))
    assert image.size == (480, 640)
    np.testing.assert_array_equal(image.boxes, [[10, 20, 40, 60]])
    coco['annotations'][0]['bbox'] = [10, 20, 0, 40]
    path.write_text(json.dumps(coco))
    with pytest.raises(
            ValueError, match=r'ann\.json: annotation 1 has no '
            'area'):
        bpb.load_annotations(str(path))


def test_missing_shared_data_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bpb.main(['--data-root', str(tmp_path)])
    err = capsys.readouterr().err
    assert '../shared/data' in err and 'missing' in err
    assert 'gt_instances_val2014_100img.json' in err


def test_real_annotations_run():
    data_root = osp.dirname(shared_path('data', 'visdrone50_annotations'))
    (coco_rel, _) = bpb.ANNOTATION_FILES.values()
    images = bpb.load_annotations(osp.join(data_root, coco_rel))
    assert len(images) == 100
    assert sum(len(image.boxes) for image in images) == 830
    args = bpb.parse_args(['--data-root', data_root, '--seeds', '1'])
    # run_dataset cross-checks the positive chips with evaluate_settings
    # (it raises on a mismatch)
    bpb.run_dataset('coco', images[:20], args)
