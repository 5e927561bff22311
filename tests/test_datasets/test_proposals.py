# Copyright (c) mmsniper contributors. All rights reserved.
import json
import logging
import pickle

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmsniper.datasets.proposals import (ProposalFileError, ProposalSet,
                                         load_proposals, summarize)

QUIET = 'silent'


def _info(img_id, path, w=100, h=80):
    return dict(img_id=img_id, img_path=path, width=w, height=h)


@pytest.fixture
def infos():
    return [
        _info(1, 'data/coco/train2017/a.jpg'),
        _info(2, 'data/coco/train2017/b.jpg', w=50, h=40),
        _info(3, 'data/other/img/c.jpg'),
        # same <parent>/<file> and same file name: ambiguous by key/name
        _info(4, 'data/x1/img/d.jpg'),
        _info(5, 'data/x2/img/d.jpg'),
    ]


def _pkl(tmp_path, obj, name='props.pkl'):
    path = tmp_path / name
    with open(path, 'wb') as f:
        pickle.dump(obj, f)
    return str(path)


def _json(tmp_path, obj, name='props.json'):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def _boxes(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def _entry(boxes, scores, **extra):
    return dict(
        bboxes=np.asarray(boxes, np.float32),
        scores=np.asarray(scores, np.float32),
        **extra)


def _rows(props):
    return [props.get(i) for i in range(props.num_images)]


# --------------------------------------------------------------- formats


def test_dump_proposals_instance_data_numpy_and_torch(tmp_path, infos):
    a = InstanceData()
    a.bboxes = _boxes([1, 2, 30, 40], [5, 5, 10, 10])
    a.scores = np.array([0.9, 0.5], np.float32)
    b = InstanceData()  # torch tensors, float64, with grad
    b.bboxes = torch.tensor([[0., 0., 20., 20.]], requires_grad=True) * 1
    b.scores = torch.tensor([0.7], dtype=torch.float64)
    path = _pkl(tmp_path, {'train2017/b.jpg': b, 'train2017/a.jpg': a})

    props, report = load_proposals(path, infos, logger=QUIET)

    assert isinstance(props, ProposalSet)
    assert props.ptr.dtype == np.int64 and props.ptr.shape == (6, )
    assert props.bboxes.dtype == np.float32
    assert props.scores.dtype == np.float32
    assert props.ptr.tolist() == [0, 2, 3, 3, 3, 3]
    bb, sc = props.get(0)  # aligned with data_infos, not file order
    np.testing.assert_array_equal(bb, a.bboxes)
    np.testing.assert_array_equal(sc, a.scores)
    bb, sc = props.get(1)
    np.testing.assert_array_equal(bb, [[0, 0, 20, 20]])
    np.testing.assert_allclose(sc, [0.7])
    assert report['format'] == 'dump_proposals'
    assert report['images'] == 5
    assert report['images_with_proposals'] == 2
    assert report['images_missing'] == 3
    assert report['proposals_used'] == 3
    assert report['matched_by']['key'] == 2
    assert not props.bboxes.flags.writeable  # shared safely across workers


def test_sniper_format_matches_by_img_id_then_key(tmp_path, infos):
    raw = {
        # key is unknown to the dataset, the id is not
        'elsewhere/zzz.jpg': _entry([[1, 1, 9, 9]], [0.5], img_id=3),
        # id unknown, the key still matches
        'train2017/a.jpg': _entry([[2, 2, 8, 8]], [0.6], img_id=999),
        # ids disambiguate what the key alone cannot
        'img/d.jpg': _entry([[3, 3, 7, 7]], [0.7], img_id=5),
    }
    props, report = load_proposals(
        _pkl(tmp_path, raw), infos, fmt='sniper', logger=QUIET)
    np.testing.assert_array_equal(props.get(2)[0], [[1, 1, 9, 9]])
    np.testing.assert_array_equal(props.get(0)[0], [[2, 2, 8, 8]])
    np.testing.assert_array_equal(props.get(4)[0], [[3, 3, 7, 7]])
    assert len(props.get(3)[0]) == 0
    assert report['format'] == 'sniper'
    assert report['matched_by']['id'] == 2
    assert report['matched_by']['key'] == 1
    assert report['unknown_entries'] == 0
    assert report['id_path_mismatch'] == 1  # zzz.jpg is c.jpg by its id


def test_auto_detects_sniper_dict(tmp_path, infos):
    raw = {'train2017/b.jpg': _entry([[1, 1, 9, 9]], [0.5], img_id=1)}
    props, report = load_proposals(_pkl(tmp_path, raw), infos, logger=QUIET)
    assert report['format'] == 'sniper'
    assert props.ptr.tolist()[:3] == [0, 1, 1]  # by id: row 0 (a.jpg)
    # forcing DumpProposals semantics ignores ids: matched by key
    props, report = load_proposals(
        _pkl(tmp_path, raw), infos, fmt='dump_proposals', logger=QUIET)
    assert props.ptr.tolist()[:3] == [0, 0, 1]


def test_mmdet2_list_aligned(tmp_path, infos):
    raw = [
        np.array([[1, 2, 3, 4, 0.9], [2, 2, 9, 9, 0.1]]),
        np.zeros((0, 5)),
        np.array([[1, 1, 5, 5]], np.float32),  # (N, 4): score 1
        torch.tensor([[0., 0., 4., 4., 0.3]]),
        np.zeros((0, 5), np.float32),
    ]
    props, report = load_proposals(_pkl(tmp_path, raw), infos, logger=QUIET)
    assert report['format'] == 'mmdet2_list'
    assert props.ptr.tolist() == [0, 2, 2, 3, 4, 4]
    np.testing.assert_allclose(props.get(0)[1], [0.9, 0.1])
    np.testing.assert_array_equal(
        props.get(0)[0], [[1, 2, 3, 4], [2, 2, 9, 9]])
    assert props.get(2)[1].tolist() == [1.0]
    np.testing.assert_allclose(props.get(3)[1], [0.3])
    assert report['images_missing'] == 0

    with pytest.raises(ProposalFileError, match=r'4 entries.*5 images'):
        load_proposals(_pkl(tmp_path, raw[:4]), infos, logger=QUIET)


def test_coco_json_by_image_id(tmp_path, infos):
    recs = [
        dict(image_id=2, bbox=[1, 2, 10, 20], score=0.5, category_id=1),
        dict(image_id=1, bbox=[0, 0, 5, 5], score=0.9),
        dict(image_id=2, bbox=[3, 3, 1.5, 2], score=0.25, category_id=3),
        dict(image_id=77, bbox=[0, 0, 5, 5], score=0.9),  # not in dataset
        dict(image_id=77, bbox=[0, 0, 6, 6], score=0.8),
    ]
    props, report = load_proposals(_json(tmp_path, recs), infos, logger=QUIET)
    assert report['format'] == 'coco_json'
    assert props.ptr.tolist() == [0, 1, 3, 3, 3, 3]
    np.testing.assert_array_equal(props.get(0)[0], [[0, 0, 5, 5]])
    # xywh -> xyxy, record order kept within an image
    np.testing.assert_array_equal(
        props.get(1)[0], [[1, 2, 11, 22], [3, 3, 4.5, 5]])
    np.testing.assert_allclose(props.get(1)[1], [0.5, 0.25])
    assert report['clipped'] == 0
    assert report['unknown_entries'] == 1  # image 77
    assert report['unknown_proposals'] == 2
    assert any('77' in e for e in report['examples'])


def test_coco_json_string_ids_and_forced_fmt(tmp_path):
    infos = [_info('000005', 'voc/JPEGImages/000005.jpg')]
    recs = [dict(image_id='000005', bbox=[1, 1, 2, 2], score=1)]
    path = _json(tmp_path, recs, name='props.results')  # unknown extension
    with pytest.raises(ProposalFileError, match='unsupported .*extension'):
        load_proposals(path, infos, logger=QUIET)
    props, _ = load_proposals(path, infos, fmt='coco_json', logger=QUIET)
    np.testing.assert_array_equal(props.get(0)[0], [[1, 1, 3, 3]])


def test_mmdet_results_list(tmp_path, infos):
    raw = [
        dict(
            img_id=3,
            img_path='/abs/data/other/img/c.jpg',
            pred_instances=dict(
                bboxes=torch.tensor([[1., 1., 3., 3.]]),
                scores=torch.tensor([0.4]),
                labels=torch.tensor([0]))),
        dict(
            img_path='D:\\data\\coco\\train2017\\b.jpg',  # key fallback
            pred_instances=dict(
                bboxes=np.array([[2., 2., 4., 4.]]), scores=np.array([.2]))),
    ]
    props, report = load_proposals(_pkl(tmp_path, raw), infos, logger=QUIET)
    assert report['format'] == 'mmdet_results'
    assert props.ptr.tolist() == [0, 0, 1, 2, 2, 2]
    np.testing.assert_array_equal(props.get(2)[0], [[1, 1, 3, 3]])


# -------------------------------------------------------------- matching


def test_matching_by_path_key_basename_and_separators(tmp_path, infos):
    raw = {
        'train2017\\a.jpg': _entry([[1, 1, 2, 2]], [0.1]),  # backslashes
        'somewhere/else/c.jpg': _entry([[2, 2, 3, 3]], [0.2]),  # unique name
        'data/x1/img/d.jpg': _entry([[3, 3, 4, 4]], [0.3]),  # whole path
        'img/d.jpg': _entry([[4, 4, 5, 5]], [0.4]),  # ambiguous key
        'd.jpg': _entry([[5, 5, 6, 6]], [0.5]),  # ambiguous file name
    }
    props, report = load_proposals(_pkl(tmp_path, raw), infos, logger=QUIET)
    assert props.get(0)[1].tolist() == pytest.approx([0.1])
    assert props.get(2)[1].tolist() == pytest.approx([0.2])
    assert props.get(3)[1].tolist() == pytest.approx([0.3])
    assert len(props.get(4)[0]) == 0  # never matched silently
    assert len(props.get(1)[0]) == 0
    assert report['matched_by'] == dict(
        id=0, path=1, key=1, basename=1, order=0)
    assert report['ambiguous_entries'] == 2
    assert report['images_missing'] == 2
    assert any('ambiguous' in e and "'d.jpg'" in e for e in report['examples'])


def test_exact_match_wins_over_basename(tmp_path, infos):
    raw = {
        'val2017/a.jpg': _entry([[1, 1, 2, 2]], [0.1]),  # name-only match
        'train2017/a.jpg': _entry([[2, 2, 3, 3]], [0.2]),  # exact key
    }
    props, report = load_proposals(_pkl(tmp_path, raw), infos, logger=QUIET)
    assert props.get(0)[1].tolist() == pytest.approx([0.2])
    assert report['duplicate_entries'] == 1


def test_same_image_listed_twice_gets_the_same_proposals(tmp_path):
    infos = [
        _info(1, 'imgs/a.jpg'),
        _info(2, 'imgs/b.jpg'),
        _info(1, 'imgs/a.jpg'),  # e.g. a repeated entry
    ]
    raw = {'imgs/a.jpg': _entry([[1, 1, 4, 4]], [0.5])}
    props, report = load_proposals(_pkl(tmp_path, raw), infos, logger=QUIET)
    assert props.ptr.tolist() == [0, 1, 1, 2]
    np.testing.assert_array_equal(props.get(2)[0], props.get(0)[0])
    assert report['ambiguous_entries'] == 0


def test_missing_skip_counts_and_error_names_image(tmp_path, infos):
    path = _pkl(tmp_path, {'train2017/a.jpg': _entry([[1, 1, 2, 2]], [1])})
    props, report = load_proposals(
        path, infos, on_missing='skip', logger=QUIET)
    assert report['images_missing'] == 4
    assert props.ptr.tolist() == [0, 1, 1, 1, 1, 1]
    assert any('train2017/b.jpg' in e for e in report['examples'])
    with pytest.raises(
            ProposalFileError,
            match=r'no proposals for image #1 .*train2017/b\.jpg'):
        load_proposals(path, infos, on_missing='error', logger=QUIET)


def test_unknown_entries_counted_and_none_matching_errors(tmp_path, infos):
    raw = {
        'train2017/a.jpg': _entry([[1, 1, 2, 2]], [1]),
        'val2017/zzz.jpg': _entry([[1, 1, 2, 2], [1, 1, 3, 3]], [1, 1]),
    }
    _, report = load_proposals(_pkl(tmp_path, raw), infos, logger=QUIET)
    assert report['unknown_entries'] == 1
    assert report['unknown_proposals'] == 2
    assert any('val2017/zzz.jpg' in e for e in report['examples'])

    path = _pkl(tmp_path, {'val2017/zzz.jpg': _entry([[1, 1, 2, 2]], [1])})
    with pytest.raises(ProposalFileError, match='wrong file or split') as e:
        load_proposals(path, infos, logger=QUIET)
    assert 'props.pkl' in str(e.value) and 'zzz.jpg' in str(e.value)


# ------------------------------------------------------------- bad boxes


def test_bad_boxes_dropped_counted_and_clipped(tmp_path, infos):
    nan, inf = float('nan'), float('inf')
    boxes = [
        [10, 10, 20, 20],  # fine
        [nan, 0, 5, 5],  # NaN coordinate
        [1, 1, 5, 5],  # inf score
        [20, 10, 10, 30],  # inverted
        [5, 5, 5, 9],  # zero width
        [150, 10, 200, 20],  # entirely right of the 100 px wide image
        [-10, -10, 0, 5],  # touches the left edge only: nothing inside
        [-5, 70, 120, 90],  # partly outside: clipped
    ]
    scores = [0.9, 0.9, inf, 0.8, 0.7, 0.6, 0.5, 0.4]
    path = _pkl(tmp_path, {'train2017/a.jpg': _entry(boxes, scores)})
    props, report = load_proposals(path, infos, logger=QUIET)
    bb, sc = props.get(0)
    np.testing.assert_array_equal(bb, [[10, 10, 20, 20], [0, 70, 100, 80]])
    np.testing.assert_allclose(sc, [0.9, 0.4])
    assert report['dropped_nan'] == 2
    assert report['dropped_inverted'] == 2
    assert report['dropped_outside'] == 2
    assert report['clipped'] == 1
    assert report['proposals_used'] == 2
    assert report['proposals_in_file'] == 8

    with pytest.raises(ProposalFileError) as e:
        load_proposals(path, infos, on_bad_box='error', logger=QUIET)
    msg = str(e.value)
    assert 'props.pkl' in msg and 'train2017/a.jpg' in msg
    assert 'proposal #1' in msg and 'NaN' in msg


def test_bad_box_error_names_json_record(tmp_path, infos):
    recs = [
        dict(image_id=1, bbox=[1, 1, 5, 5], score=0.5),
        dict(image_id=2, bbox=[1, 1, -3, 5], score=0.5),  # negative width
    ]
    path = _json(tmp_path, recs)
    with pytest.raises(
            ProposalFileError, match=r'props\.json: record #1 .*inverted'):
        load_proposals(path, infos, on_bad_box='error', logger=QUIET)


def test_max_per_image_and_min_score(tmp_path, infos):
    boxes = [[i, i, i + 10, i + 10] for i in range(6)]
    scores = [0.1, 0.9, 0.3, 0.8, 0.05, 0.7]
    path = _pkl(tmp_path, {'train2017/a.jpg': _entry(boxes, scores)})
    props, report = load_proposals(path, infos, max_per_image=3, logger=QUIET)
    bb, sc = props.get(0)
    assert sorted(sc.tolist()) == pytest.approx([0.7, 0.8, 0.9])
    assert bb[:, 0].tolist() == [1, 3, 5]  # the boxes of those scores
    assert report['dropped_over_max'] == 3
    props, report = load_proposals(path, infos, min_score=0.2, logger=QUIET)
    assert sorted(props.get(0)[1].tolist()) == pytest.approx(
        [0.3, 0.7, 0.8, 0.9])
    assert report['dropped_low_score'] == 2


# ------------------------------------------------------- malformed files


@pytest.mark.parametrize('entry, pattern', [
    (dict(bboxes=np.zeros((2, 3)), scores=np.zeros(2)), r'\(N, 4\)'),
    (dict(bboxes=np.zeros((2, 4)), scores=np.zeros(3)), r'scores'),
    (dict(bboxes=[['a', 'b', 'c', 'd']], scores=[1]), 'not numeric'),
    (dict(bboxes=[[1, 2, 3, 4], [1, 2]], scores=[1, 1]), 'numeric'),
    (dict(scores=np.zeros(2)), 'no .bboxes'),
    (dict(bboxes=np.zeros((1, 4))), 'no .scores'),
    ('not an entry', 'expected a dict'),
])
def test_wrong_shapes_name_file_and_entry(tmp_path, infos, entry, pattern):
    path = _pkl(tmp_path, {
        'train2017/a.jpg': _entry([[1, 1, 2, 2]], [1]),
        'train2017/b.jpg': entry
    })
    with pytest.raises(ProposalFileError, match=pattern) as e:
        load_proposals(path, infos, logger=QUIET)
    assert 'props.pkl' in str(e.value)
    assert 'train2017/b.jpg' in str(e.value)


def test_unreadable_files(tmp_path, infos):
    good = pickle.dumps({'train2017/a.jpg': _entry([[1, 1, 2, 2]], [1])})
    trunc = tmp_path / 'trunc.pkl'
    trunc.write_bytes(good[:len(good) // 2])
    with pytest.raises(ProposalFileError, match=r'trunc\.pkl.*trunc'):
        load_proposals(str(trunc), infos, logger=QUIET)

    empty = tmp_path / 'empty.pkl'
    empty.write_bytes(b'')
    with pytest.raises(ProposalFileError, match=r'empty\.pkl is empty'):
        load_proposals(str(empty), infos, logger=QUIET)

    broken = tmp_path / 'broken.json'
    broken.write_text('[{"image_id": 1, "bbox": [1, 2, 3')
    with pytest.raises(ProposalFileError, match=r'broken\.json .*json'):
        load_proposals(str(broken), infos, logger=QUIET)

    with pytest.raises(FileNotFoundError, match='nope.pkl'):
        load_proposals(str(tmp_path / 'nope.pkl'), infos, logger=QUIET)

    for obj, pattern in ((42, 'unsupported .*structure'), ({}, 'no proposal'),
                         ([], 'no proposal')):
        with pytest.raises(ProposalFileError, match=pattern):
            load_proposals(_pkl(tmp_path, obj), infos, logger=QUIET)

    coco_ann = dict(images=[], annotations=[], categories=[])
    with pytest.raises(ProposalFileError, match='annotation file'):
        load_proposals(_json(tmp_path, coco_ann), infos, logger=QUIET)

    with pytest.raises(ProposalFileError, match="fmt='sniper'"):
        load_proposals(
            _pkl(tmp_path, [np.zeros((0, 5))] * 5),
            infos,
            fmt='sniper',
            logger=QUIET)
    assert issubclass(ProposalFileError, ValueError)


@pytest.mark.parametrize('rec, pattern', [
    (dict(image_id=1, bbox=[1, 2, 3], score=0.5), 'bbox is not a list of 4'),
    (dict(image_id=1, bbox=[1, 2, 3, 'x'], score=0.5), 'bbox is not'),
    (dict(image_id=1, bbox=[1, 2, 3, 4], score='high'), 'score is not'),
    (dict(image_id=1, bbox=[1, 2, 3, 4]), "no 'score'"),
    (dict(image_id=None, bbox=[1, 2, 3, 4], score=1), 'invalid image_id'),
])
def test_malformed_json_record_is_named(tmp_path, infos, rec, pattern):
    recs = [dict(image_id=1, bbox=[1, 1, 2, 2], score=0.5), rec]
    with pytest.raises(ProposalFileError, match=pattern) as e:
        load_proposals(_json(tmp_path, recs), infos, logger=QUIET)
    assert 'props.json' in str(e.value) and 'record #1' in str(e.value)


# ---------------------------------------------------- result and logging


def test_empty_entry_and_get(tmp_path, infos):
    raw = {
        'train2017/a.jpg': _entry(np.zeros((0, 4)), np.zeros(0)),
        'train2017/b.jpg': _entry([[1, 1, 2, 2]], [1]),
    }
    props, report = load_proposals(_pkl(tmp_path, raw), infos, logger=QUIET)
    assert report['images_missing'] == 3  # a.jpg has an (empty) entry
    assert report['images_with_proposals'] == 1
    assert props.get(np.int64(1))[0].shape == (1, 4)
    assert props.get(-4)[0].shape == (1, 4)
    with pytest.raises(IndexError):
        props.get(5)


def test_missing_image_size_is_an_error(tmp_path):
    infos = [dict(img_id=1, img_path='x/a.jpg', width=None, height=None)]
    path = _pkl(tmp_path, {'x/a.jpg': _entry([[1, 1, 2, 2]], [1])})
    with pytest.raises(ValueError, match='width/height'):
        load_proposals(path, infos, logger=QUIET)


def test_summary_logged_once(tmp_path, infos, caplog):
    raw = {
        'train2017/a.jpg': _entry([[1, 1, 2, 2], [3, 3, 2, 2]], [1, 1]),
        'val2017/zzz.jpg': _entry([[1, 1, 2, 2]], [1]),
    }
    logger = logging.getLogger('mmsniper_test_proposals')
    with caplog.at_level(logging.INFO, logger=logger.name):
        _, report = load_proposals(_pkl(tmp_path, raw), infos, logger=logger)
    records = [r for r in caplog.records if r.name == logger.name]
    assert len(records) == 1
    msg = records[0].getMessage()
    assert msg == summarize(report)
    assert records[0].levelno == logging.WARNING  # something was skipped
    assert '1 proposals used for 1/5 images' in msg
    assert '4 images had no entry' in msg
    assert '1 inverted' in msg and '1 entries for images not' in msg


def test_clean_load_logs_info(tmp_path, caplog):
    infos = [_info(1, 'imgs/a.jpg')]
    path = _pkl(tmp_path, {'imgs/a.jpg': _entry([[1, 1, 4, 4]], [0.5])})
    logger = logging.getLogger('mmsniper_test_proposals_info')
    with caplog.at_level(logging.INFO, logger=logger.name):
        load_proposals(path, infos, logger=logger)
    records = [r for r in caplog.records if r.name == logger.name]
    assert [r.levelno for r in records] == [logging.INFO]
    assert '1 proposals used for 1/1 images' in records[0].getMessage()


# ------------------------------------------- untrusted pickles (issue 7)


class _Payload:
    """Unpickling it runs a shell command that writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f'touch {self.marker}', ))


class _EvalPayload:

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f'open({self.marker!r}, "w").close()', ))


@pytest.mark.parametrize('payload', [_Payload, _EvalPayload])
@pytest.mark.parametrize('protocol', [2, pickle.HIGHEST_PROTOCOL])
def test_payload_in_a_proposal_pickle_does_not_run(tmp_path, infos, payload,
                                                   protocol):
    """Before: load_proposals pickle.load-ed the file and the payload ran;
    now it is refused, naming the file and the global, and only trust=True
    runs it."""
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'crafted.pkl'
    raw = {'train2017/a.jpg': _entry([[1, 1, 9, 9]], [0.5],
                                     note=payload(marker))}
    path.write_bytes(pickle.dumps(raw, protocol=protocol))
    with pytest.raises(ProposalFileError) as e:
        load_proposals(str(path), infos, logger=QUIET)
    assert not marker.exists()
    msg = str(e.value)
    assert str(path) in msg and 'trust=True' in msg
    # protocol 2 spells builtins '__builtin__'
    assert ('posix.system' if payload is _Payload else 'builtin') in msg
    assert 'system' in msg or '.eval' in msg
    # the switch is the only way it runs
    load_proposals(str(path), infos, trust=True, logger=QUIET)
    assert marker.exists()


def test_payload_in_tensor_storage_does_not_run(tmp_path, infos):
    """A plain-pickled tensor keeps its storage as a torch.save archive,
    which torch's own _load_from_bytes reads with weights_only=False."""
    import io
    marker = tmp_path / 'PWNED'
    buf = io.BytesIO()
    torch.save(_Payload(marker), buf)

    class Storage:  # pickles as torch.storage._load_from_bytes(archive)

        def __reduce__(self):
            import torch.storage as ts
            return (ts._load_from_bytes, (buf.getvalue(), ))

    path = tmp_path / 'crafted.pkl'
    path.write_bytes(
        pickle.dumps({'train2017/a.jpg': dict(bboxes=Storage(), scores=[1])}))
    with pytest.raises(ProposalFileError, match='crafted.pkl'):
        load_proposals(str(path), infos, logger=QUIET)
    assert not marker.exists()


@pytest.mark.parametrize('protocol', [2, pickle.HIGHEST_PROTOCOL])
def test_safe_loader_reads_what_mmdet_and_our_tools_write(
        tmp_path, infos, protocol):
    """DumpProposals (InstanceData + numpy), tools/test.py --out (dicts of
    tensors), numpy scalars, empty arrays, mmengine.dump (protocol 2)."""
    import mmengine
    a = InstanceData()
    a.bboxes = _boxes([1, 2, 30, 40])
    a.scores = np.array([0.9], np.float32)
    keyed = {
        'train2017/a.jpg': a,
        'train2017/b.jpg': _entry(np.zeros((0, 4)), [], img_id=np.int64(2)),
    }
    path = tmp_path / f'keyed{protocol}.pkl'
    path.write_bytes(pickle.dumps(keyed, protocol=protocol))
    props, _ = load_proposals(str(path), infos, logger=QUIET)
    assert props.ptr.tolist() == [0, 1, 1, 1, 1, 1]
    mmengine.dump(keyed, str(tmp_path / 'mm.pkl'))
    props, _ = load_proposals(str(tmp_path / 'mm.pkl'), infos, logger=QUIET)
    assert props.ptr.tolist() == [0, 1, 1, 1, 1, 1]
    results = [
        dict(
            img_id=3,
            img_path='data/other/img/c.jpg',
            pred_instances=dict(
                bboxes=torch.tensor([[1., 1., 5., 5.]]),
                scores=torch.tensor([0.4]),
                labels=torch.tensor([0])))
    ]
    path = tmp_path / f'results{protocol}.pkl'
    path.write_bytes(pickle.dumps(results, protocol=protocol))
    props, report = load_proposals(str(path), infos, logger=QUIET)
    assert report['format'] == 'mmdet_results'
    np.testing.assert_array_equal(props.get(2)[0], [[1, 1, 5, 5]])


# ------------------------------------- another dataset's file (issue 7)


def test_foreign_ids_not_matched_by_bare_file_name(tmp_path, infos, caplog):
    """Before: an entry with an unknown img_id was matched by its bare file
    name and the summary was INFO; now it is not matched (counted unknown)
    and the summary is a WARNING with the counts and examples."""
    raw = {
        'train2017/a.jpg': _entry([[1, 1, 9, 9]], [0.5], img_id=1),
        # another dataset's c.jpg: foreign id, only the file name in common
        'voc/JPEGImages/c.jpg': _entry([[2, 2, 8, 8]], [0.6], img_id=777),
        # foreign id but the same <parent>/<file>: matched, counted
        'train2017/b.jpg': _entry([[3, 3, 7, 7]], [0.7], img_id=778),
    }
    logger = logging.getLogger('mmsniper-test-foreign')
    with caplog.at_level(logging.INFO, logger=logger.name):
        props, report = load_proposals(
            _pkl(tmp_path, raw), infos, logger=logger)
    assert len(props.get(2)[0]) == 0  # c.jpg got nothing
    np.testing.assert_array_equal(props.get(1)[0], [[3, 3, 7, 7]])
    assert report['unknown_entries'] == 1
    assert report['id_unknown'] == 1
    assert report['matched_by'] == dict(
        id=1, path=0, key=1, basename=0, order=0)
    (record, ) = [r for r in caplog.records if r.name == logger.name]
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert '1 entries for images not in the dataset' in text
    assert '1 entries with an unknown img_id matched by path' in text
    assert 'voc/JPEGImages/c.jpg' in text


def test_file_with_only_foreign_ids_raises(tmp_path, infos):
    """Every file name coincides, no id does: another dataset's file."""
    raw = {
        'train2017/a.jpg': _entry([[1, 1, 9, 9]], [0.5], img_id=101),
        'train2017/b.jpg': _entry([[1, 1, 9, 9]], [0.5], img_id=102),
    }
    path = _pkl(tmp_path, raw)
    with pytest.raises(ProposalFileError, match='none of the 2 img_ids') as e:
        load_proposals(path, infos, logger=QUIET)
    assert path in str(e.value) and 'ignore_ids=True' in str(e.value)
    props, report = load_proposals(
        path, infos, ignore_ids=True, logger=QUIET)
    assert report['matched_by']['key'] == 2
    assert props.ptr.tolist() == [0, 1, 2, 2, 2, 2]
    results = [dict(img_id=101, img_path='x/train2017/a.jpg',
                    bboxes=_boxes([1, 1, 2, 2]), scores=np.ones(1))]
    with pytest.raises(ProposalFileError, match='none of the 1 img_ids'):
        load_proposals(_pkl(tmp_path, results, 'r.pkl'), infos, logger=QUIET)
