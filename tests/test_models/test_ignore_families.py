"""Every detector family of mmdet 3.3.0 honours SNIPER's ignored GT after
:func:`mmsniper.models.sniperize_model_cfg` (the model half of
``tools/misc/make_sniper_config.py``).

Per family, the mmdet model-zoo config (ResNet / CSPNeXt backbone, random
weights, one 256 x 256 chip with one valid GT, with and without one ignored
GT, same seeds):

- unconverted, the ignored GT changes nothing: every loss bit-identical
  (the defect of issue 18), and negatives lie on it;
- converted, it changes a classification-type loss, adds no positive, and
  no prediction lying on it counts: no sampled negative lies on it (heads
  whose weights come from the sampler), or the predictions counting in the
  classification-type losses drop (heads that weight their losses
  themselves);
- the valid GT still yields positives;
- the build-time check refuses the unconverted model and passes the
  converted one.
"""
import pytest
import torch

import ignore_matrix as im
from mmsniper.models import check_ignore_support

#: families whose ignored predictions stay sampler negatives but get zero
#: weight in the loss (the rest: not sampled at all)
WEIGHTED = ('fcos', 'centernet', 'yolox', 'vfnet', 'detr',
            'conditional-detr', 'dab-detr', 'deformable-detr', 'dino',
            'sparse-rcnn')


def _run(family, convert):
    model = im.build(family, convert)
    if family == 'tood':
        im.set_epoch(0)
    ignored = im.ignored_boxes(family, model)
    plain_losses, plain_spy = im.run_loss(model, family, None)
    ign_losses, ign_spy = im.run_loss(model, family, ignored)
    return model, ignored, (im.scalar_losses(plain_losses), plain_spy), (
        im.scalar_losses(ign_losses), ign_spy)


@pytest.mark.parametrize('family', list(im.FAMILIES))
def test_unconverted_family_trains_ignored_gt_as_background(family):
    model, ignored, (l0, s0), (l1, s1) = _run(family, convert=False)
    assert l0 == l1, f'{family}: mmdet already uses the ignored GT?'
    if family not in im.QUERY_FAMILIES + ('fcos', 'centernet'):
        assert im.negatives_on_ignored(s1, family, ignored) > 0
    assert check_ignore_support(model), \
        f'{family}: the build-time check passes an unconverted model'


@pytest.mark.parametrize('family', list(im.FAMILIES))
def test_converted_family_ignores_ignored_gt(family):
    model, ignored, (l0, s0), (l1, s1) = _run(family, convert=True)
    assert check_ignore_support(model) == []
    for losses in (l0, l1):
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    changed = [k for k in l0 if l0[k] != l1[k]]
    assert any('cls' in k or 'obj' in k for k in changed), \
        f'{family}: the ignored GT changed no classification loss: {l0}'
    (e0, p0), (e1, p1) = im.counts(s0), im.counts(s1)
    assert p0 == p1, f'{family}: the ignored GT changed the positives'
    assert sum(p0.values()) > 0, f'{family}: the valid GT has no positive'
    assert all(e1[k] <= e0[k] for k in e0)
    if family in WEIGHTED:
        assert any(e1[k] < e0[k] for k in e0), \
            f'{family}: as many predictions count with the ignored GT'
    else:
        assert s1.samples, f'{family}: no sampler was called'
        assert im.negatives_on_ignored(s1, family, ignored) == 0


def test_tood_ignores_with_both_of_its_assigners():
    """TOOD assigns with ATSS for its first epochs, then task-aligned."""
    for epoch in (0, 4):
        model = im.build('tood')
        im.set_epoch(epoch)
        _, spy = im.run_loss(model, 'tood', im.IGNORED)
        assert spy.samples
        assert im.negatives_on_ignored(spy, 'tood', im.IGNORED) == 0
        _, plain = im.run_loss(im.build('tood', convert=False), 'tood',
                               im.IGNORED)
        assert im.negatives_on_ignored(plain, 'tood', im.IGNORED) > 0
    im.set_epoch(0)
