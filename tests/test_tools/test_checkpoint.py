"""Checkpoint loading: the weights-only allow-list that ``import mmsniper``
adds (mmsniper._safe_globals) and the trust fallback for other checkpoints
(mmsniper.utils.checkpoint).

Unit tests run in-process; subprocess tests check a fresh interpreter; the
last test drives ``tools/train.py`` with a ``load_from`` checkpoint outside
every trusted root.
"""
import argparse
import functools
import os
import pickle
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.utils import digit_version
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        load_checkpoint)

import mmsniper.utils.checkpoint as ckpt_mod
from mmsniper.utils import (TRUSTED_DIRS_ENV, CheckpointTrustPolicy,
                            UntrustedCheckpointError, is_weights_only_error,
                            load_local_checkpoint, trusted_checkpoint_loading)
import tiny_coco as tc


def _mmengine_like_checkpoint(path: Path, model=None, extra=None) -> Path:
    """What CheckpointHook writes, in miniature: weights plus non-tensor
    state (the HistoryBuffer of the brief's error, numpy arrays), plus an
    ``argparse.Namespace`` (as other tools' checkpoints hold), which no
    allow-list admits: only the trust fallback loads it."""
    model = torch.nn.Linear(3, 2) if model is None else model
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save(
        dict(
            meta=dict(
                epoch=0,
                iter=2,
                seed=0,
                args=argparse.Namespace(lr=0.1) if extra is None else extra),
            state_dict=OrderedDict(model.state_dict()),
            message_hub=dict(
                log_scalars={'train/loss': buf},
                runtime_info={'iter_arr': np.arange(3)})), path)
    return path


def _weights_only_checkpoint(path: Path) -> Path:
    torch.save({'state_dict': torch.nn.Linear(3, 2).state_dict()}, path)
    return path


@pytest.fixture(autouse=True)
def no_env_roots(monkeypatch):
    """No trust (or distrust) inherited from the caller's environment."""
    for var in (TRUSTED_DIRS_ENV, 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD',
                'TORCH_FORCE_WEIGHTS_ONLY_LOAD'):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def warnings_log(monkeypatch):
    calls = []

    def fake_print_log(msg, **kwargs):
        calls.append((msg, kwargs))

    monkeypatch.setattr(ckpt_mod, 'print_log', fake_print_log)
    return calls


def test_runs_the_checkout_copy():
    # a stale installed copy in site-packages must not be the one tested
    repo = Path(__file__).resolve().parents[2]
    assert Path(ckpt_mod.__file__).resolve().is_relative_to(repo)


def test_other_globals_still_fail_weights_only(tmp_path, no_env_roots):
    """Guard: what the trust fallback is for is real on this torch."""
    path = _mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        pytest.skip('torch < 2.6 does not default to weights_only=True')
    with pytest.raises(pickle.UnpicklingError) as err:
        torch.load(path)
    assert is_weights_only_error(err.value)
    assert 'argparse.Namespace' in str(err.value)


def test_weights_only_file_loads_from_anywhere(tmp_path, no_env_roots,
                                               warnings_log):
    path = _weights_only_checkpoint(tmp_path / 'plain.pth')
    ckpt = load_local_checkpoint(str(path), 'cpu', CheckpointTrustPolicy())
    assert set(ckpt['state_dict']) == {'weight', 'bias'}
    assert warnings_log == []


def test_untrusted_full_checkpoint_raises_clear_error(tmp_path, no_env_roots):
    outside = tmp_path / 'downloads'
    outside.mkdir()
    path = _mmengine_like_checkpoint(outside / 'ckpt.pth')
    policy = CheckpointTrustPolicy(trusted_dirs=[tmp_path / 'work_dir'])
    with pytest.raises(UntrustedCheckpointError) as err:
        load_local_checkpoint(str(path), 'cpu', policy)
    msg = str(err.value)
    assert str(path) in msg
    assert 'not weights-only loadable' in msg and 'run code' in msg
    assert f'--trust-checkpoint-dir {outside}' in msg
    assert f'{TRUSTED_DIRS_ENV}={outside}' in msg
    # not named by the user: the file flag would not help, so not offered
    assert 'pass --trust-checkpoint ' not in msg
    assert 'argparse.Namespace' in msg
    assert is_weights_only_error(err.value.__cause__)


def test_trusted_dir_falls_back_with_one_warning(tmp_path, no_env_roots,
                                                 warnings_log):
    work_dir = tmp_path / 'work_dir'
    (work_dir / 'sub').mkdir(parents=True)
    path = _mmengine_like_checkpoint(work_dir / 'sub' / 'iter_2.pth')
    policy = CheckpointTrustPolicy(trusted_dirs=[str(work_dir)])
    ckpt = load_local_checkpoint(str(path), 'cpu', policy)
    assert ckpt['meta']['iter'] == 2
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert len(warnings_log) == 1
    msg, kwargs = warnings_log[0]
    assert str(path) in msg and 'weights_only=False' in msg
    assert '\n' not in msg
    assert kwargs['level'] == 30  # logging.WARNING


def test_explicit_file_is_trusted_but_not_its_neighbours(
        tmp_path, no_env_roots, warnings_log):
    named = _mmengine_like_checkpoint(tmp_path / 'named.pth')
    other = _mmengine_like_checkpoint(tmp_path / 'other.pth')
    policy = CheckpointTrustPolicy(trusted_files=[str(named)])
    assert load_local_checkpoint(str(named), 'cpu', policy)['meta']
    assert 'trusted explicitly with --trust-checkpoint' in warnings_log[0][0]
    with pytest.raises(UntrustedCheckpointError):
        load_local_checkpoint(str(other), 'cpu', policy)


def test_env_var_roots(tmp_path, monkeypatch, warnings_log):
    a, b = tmp_path / 'a', tmp_path / 'b'
    a.mkdir()
    b.mkdir()
    path = _mmengine_like_checkpoint(b / 'ckpt.pth')
    monkeypatch.setenv(TRUSTED_DIRS_ENV, f'{a}{os.pathsep}{b}')
    assert load_local_checkpoint(str(path), 'cpu', CheckpointTrustPolicy())
    with pytest.raises(UntrustedCheckpointError):
        load_local_checkpoint(
            str(path), 'cpu', CheckpointTrustPolicy(use_env=False))


def test_torch_process_wide_opt_out_is_honoured(tmp_path, no_env_roots,
                                                monkeypatch, warnings_log):
    path = _mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    assert load_local_checkpoint(str(path), 'cpu', CheckpointTrustPolicy())
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' in warnings_log[0][0]


def test_trust_is_by_real_path(tmp_path, no_env_roots):
    root = tmp_path / 'work'
    root.mkdir()
    sibling = tmp_path / 'work2'
    sibling.mkdir()
    outside = _mmengine_like_checkpoint(tmp_path / 'outside.pth')
    (root / 'link.pth').symlink_to(outside)
    policy = CheckpointTrustPolicy(trusted_dirs=[str(root)])
    assert policy.is_trusted(str(root / 'x' / 'iter_1.pth'))
    # prefix of the name is not containment
    assert not policy.is_trusted(str(sibling / 'iter_1.pth'))
    # '..' and symlinks are resolved before the check
    assert not policy.is_trusted(str(root / '..' / 'outside.pth'))
    assert not policy.is_trusted(str(root / 'link.pth'))
    with pytest.raises(UntrustedCheckpointError):
        load_local_checkpoint(str(root / 'link.pth'), 'cpu', policy)


def test_missing_file(tmp_path, no_env_roots):
    with pytest.raises(FileNotFoundError):
        load_local_checkpoint(str(tmp_path / 'nope.pth'), 'cpu')


def test_context_manager_is_scoped_and_restores(tmp_path, no_env_roots,
                                                warnings_log):
    original = CheckpointLoader._schemes['']
    path = _mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    with trusted_checkpoint_loading(trusted_dirs=[str(tmp_path)]) as policy:
        assert CheckpointLoader._schemes[''] is not original
        assert policy.is_trusted(str(path))
        # mmengine's own entry points go through the policy
        model = torch.nn.Linear(3, 2)
        load_checkpoint(model, str(path), map_location='cpu')
        assert _load_checkpoint(str(path), 'cpu')['meta']['iter'] == 2
        # remote schemes keep mmengine's loaders
        assert CheckpointLoader._get_checkpoint_loader(
            'https://x/y.pth') is not CheckpointLoader._schemes['']
    assert CheckpointLoader._schemes[''] is original
    # outside the block nothing is trusted any more (torch's default)
    if digit_version(torch.__version__) >= digit_version('2.6.0'):
        with pytest.raises(pickle.UnpicklingError):
            _load_checkpoint(str(path), 'cpu')


def test_context_manager_restores_on_error_and_nests(tmp_path, no_env_roots,
                                                     warnings_log):
    original = CheckpointLoader._schemes['']
    path = _mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    with pytest.raises(UntrustedCheckpointError):
        with trusted_checkpoint_loading(trusted_dirs=[str(tmp_path)]):
            inner_root = tmp_path / 'elsewhere'
            with trusted_checkpoint_loading(trusted_dirs=[inner_root]):
                _load_checkpoint(str(path), 'cpu')
    assert CheckpointLoader._schemes[''] is original


def test_loaded_weights_are_the_saved_ones(tmp_path, no_env_roots,
                                           warnings_log):
    src = torch.nn.Linear(3, 2)
    path = _mmengine_like_checkpoint(tmp_path / 'ckpt.pth', model=src)
    dst = torch.nn.Linear(3, 2)
    with trusted_checkpoint_loading(trusted_files=[str(path)]):
        load_checkpoint(dst, str(path), map_location='cpu')
    assert torch.equal(dst.weight, src.weight)


def test_load_from_outside_trusted_roots_via_train_py(tmp_path):
    """(d) ``load_from`` of an untrusted, non-weights-only checkpoint fails
    with the clear message; ``--trust-checkpoint`` makes it work."""
    tc.make_tiny_coco(tmp_path / 'data')
    cfg = tc.write_tiny_config(
        tmp_path / 'tiny_cfg.py', tmp_path / 'data', max_iters=1)
    outside = tmp_path / 'downloads'
    outside.mkdir()
    ckpt = _mmengine_like_checkpoint(outside / 'pretrained.pth')
    opts = ['--cfg-options', f'load_from={ckpt}']

    res = tc.run(tc.train_cmd(cfg, tmp_path / 'wd_untrusted', *opts))
    assert res.returncode != 0, res.describe()
    assert 'UntrustedCheckpointError' in res.stderr, res.describe()
    assert f'Refusing to load checkpoint {ckpt}' in res.stderr
    # load_from is the checkpoint the run starts from: --trust-checkpoint
    assert 'pass --trust-checkpoint (or' in res.stderr
    assert f'--trust-checkpoint-dir {outside}' in res.stderr
    print(f'untrusted load_from run: {res.seconds:.1f}s')

    # the flag the message names (--trust-checkpoint-dir: unit tests above)
    work_dir = tmp_path / 'wd_trusted'
    res = tc.run_ok(
        tc.train_cmd(cfg, work_dir, *opts, '--trust-checkpoint'))
    log = tc.read_logs(work_dir)
    assert f'Checkpoint {ckpt} is not weights-only' in log
    assert 'trusted (trusted explicitly with --trust-checkpoint)' in log
    assert f'Load checkpoint from {ckpt}' in log
    assert (work_dir / 'iter_1.pth').is_file()
    print(f'trusted load_from run: {res.seconds:.1f}s')


# ------------------------------------ weights-only allow-list (issue 7)

NEEDS_WEIGHTS_ONLY = pytest.mark.skipif(
    digit_version(torch.__version__) < digit_version('2.6.0'),
    reason='torch < 2.6 does not default to weights_only=True')


@NEEDS_WEIGHTS_ONLY
def test_mmengine_checkpoint_loads_weights_only(tmp_path, no_env_roots):
    """HistoryBuffer, its statistic methods, numpy arrays and scalars."""
    buf = HistoryBuffer()
    for v in (1.0, 3.0):
        buf.update(v)
    path = tmp_path / 'ckpt.pth'
    torch.save(
        dict(
            state_dict=torch.nn.Linear(3, 2).state_dict(),
            message_hub=dict(
                log_scalars={'train/loss': buf},
                runtime_info=dict(
                    arr=np.arange(3),
                    f32=np.float32(0.5),
                    i64=np.int64(7),
                    b=np.array([True])))), path)
    ckpt = torch.load(path)  # torch's default: weights_only=True
    loaded = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loaded, HistoryBuffer)
    assert loaded.mean() == 2.0 and loaded.max() == 3.0
    assert loaded.statistics('min') == 1.0
    info = ckpt['message_hub']['runtime_info']
    assert info['arr'].tolist() == [0, 1, 2] and info['i64'] == 7


def _fresh_python(code, tmp_path):
    env = tc.tool_env(PYTHONPATH=str(tc.REPO_ROOT))
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=str(tmp_path),
                          env=env,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True,
                          timeout=240)
    return proc.returncode, proc.stdout


@NEEDS_WEIGHTS_ONLY
def test_allow_list_comes_with_import_mmsniper(tmp_path):
    """Fresh interpreters: without mmsniper the brief's error; with
    ``import mmsniper`` first (torch and mmengine imported after it) the
    same file loads."""
    buf = HistoryBuffer()
    buf.update(1.0)
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(log={'loss': buf}, arr=np.arange(2)), path)
    load = (f'import torch\nimport mmengine\n'
            f'c = torch.load({str(path)!r})\nprint("LOADED", c["arr"])\n')
    rc, out = _fresh_python(load, tmp_path)
    assert rc != 0 and 'HistoryBuffer' in out, out
    rc, out = _fresh_python('import mmsniper\n' + load, tmp_path)
    assert rc == 0 and 'LOADED [0 1]' in out, out


class _SystemPayload:

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _GetattrPayload:
    """getattr reaching past HistoryBuffer's statistic methods."""

    def __init__(self, target, name):
        self.target, self.name = target, name

    def __reduce__(self):
        return (getattr, (self.target, self.name))


@NEEDS_WEIGHTS_ONLY
def test_crafted_checkpoints_still_do_not_run(tmp_path, no_env_roots):
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=_SystemPayload(marker)), path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError):  # mmengine's loader too
        _load_checkpoint(str(path), 'cpu')
    assert not marker.exists()
    for target, name in ((np.ndarray, 'tofile'), (HistoryBuffer, '__init__'),
                         (HistoryBuffer, '__class__'), (np.ndarray, 'dump')):
        torch.save(dict(x=_GetattrPayload(target, name)), path)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)
    torch.save(dict(x=_GetattrPayload(HistoryBuffer, 'mean')), path)
    assert torch.load(path)['x'] is HistoryBuffer.mean


# --------------- issue 19, item 9: naming a file is not consent to run it


def _payload_checkpoint(path: Path, marker: Path, model=None) -> Path:
    """A checkpoint whose pickle runs ``touch marker`` when unpickled fully
    (the weights are real, so a trusted load succeeds)."""
    model = torch.nn.Linear(3, 2) if model is None else model
    torch.save(
        dict(state_dict=OrderedDict(model.state_dict()),
             meta=dict(epoch=1),
             payload=_SystemPayload(marker)), path)
    return path


def test_named_checkpoint_with_a_payload_is_refused(tmp_path, no_env_roots,
                                                    warnings_log):
    """Before: a file named on the command line was trusted, so its payload
    ran with one warning line. Now it is refused unless trusted
    explicitly."""
    marker = tmp_path / 'PAYLOAD_RAN'
    path = _payload_checkpoint(tmp_path / 'downloaded.pth', marker)
    policy = CheckpointTrustPolicy(named_files=[str(path)])
    with pytest.raises(UntrustedCheckpointError) as err:
        load_local_checkpoint(str(path), 'cpu', policy)
    assert not marker.exists()
    assert warnings_log == []
    msg = str(err.value)
    assert f'Refusing to load checkpoint {path}:' in msg
    assert 'the file is not weights-only loadable' in msg
    assert 'loading it would run code from it' in msg
    assert 'pass --trust-checkpoint (or' in msg
    assert 'posix.system' in msg  # the offending global
    # the API's wording of the switch
    api = CheckpointTrustPolicy(named_files=[str(path)],
                                file_switch='trust_checkpoint=True',
                                dir_switch=None)
    with pytest.raises(UntrustedCheckpointError,
                       match='pass trust_checkpoint=True'):
        load_local_checkpoint(str(path), 'cpu', api)
    assert not marker.exists()


def test_explicit_trust_runs_the_payload(tmp_path, no_env_roots,
                                         warnings_log):
    """The switch is what allows full unpickling: with it the payload runs
    (this is why it must be explicit)."""
    marker = tmp_path / 'PAYLOAD_RAN'
    src = torch.nn.Linear(3, 2)
    path = _payload_checkpoint(tmp_path / 'mine.pth', marker, src)
    policy = CheckpointTrustPolicy(trusted_files=[str(path)],
                                   named_files=[str(path)])
    ckpt = load_local_checkpoint(str(path), 'cpu', policy)
    assert marker.exists()
    assert torch.equal(ckpt['state_dict']['weight'], src.weight)
    assert len(warnings_log) == 1
    assert 'trusted explicitly with --trust-checkpoint' in warnings_log[0][0]


def _mmengine_saved_checkpoint(path: Path) -> Path:
    """What ``Runner.save_checkpoint`` writes after 2 iterations: meta with
    the config text and dataset_meta, the message hub's state (HistoryBuffer
    scalars, numpy runtime info), SGD's momentum state, a scheduler."""
    from mmengine.logging import MessageHub
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LinearLR(optim, start_factor=0.5)
    hub = MessageHub.get_instance(f'h3_{path.name}')
    for it in range(2):
        loss = model(torch.ones(1, 3)).sum()
        loss.backward()
        optim.step()
        sched.step()
        hub.update_scalar('train/loss', float(loss.detach()))
        hub.update_scalar('train/lr', np.float64(0.05))
        hub.update_info('iter', it + 1)
    hub.update_info('last_shape', np.array([2, 3]))
    torch.save(
        dict(
            meta=dict(epoch=0, iter=2, cfg='model = dict(type="X")\n',
                      seed=0, experiment_name='h3', time='20250101_000000',
                      mmengine_version='0.10.7',
                      dataset_meta=dict(classes=('a', 'b'),
                                        palette=[(1, 2, 3), (4, 5, 6)])),
            state_dict=OrderedDict(model.state_dict()),
            message_hub=hub.state_dict(),
            optimizer=optim.state_dict(),
            param_schedulers=[sched.state_dict()]), path)
    return path


def test_mmengine_saved_checkpoint_needs_no_trust(tmp_path, no_env_roots,
                                                  warnings_log):
    path = _mmengine_saved_checkpoint(tmp_path / 'iter_2.pth')
    policy = CheckpointTrustPolicy(named_files=[str(path)], use_env=False)
    ckpt = load_local_checkpoint(str(path), 'cpu', policy)
    assert warnings_log == []  # no fallback
    assert ckpt['meta']['iter'] == 2
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert ckpt['optimizer']['state'][0]['momentum_buffer'].shape == (2, 3)


# ----------------- issue 19, item 11: a damaged checkpoint names the file


def _damaged(tmp_path: Path, kind: str) -> Path:
    good = tmp_path / 'good.pth'
    legacy = kind.startswith('legacy')
    torch.save({'state_dict': torch.nn.Linear(30, 20).state_dict()}, good,
               _use_new_zipfile_serialization=not legacy)
    data = good.read_bytes()
    cut = dict(empty=0, zip_head=10, zip_half=len(data) // 2,
               zip_tail=len(data) - 10, legacy_head=5,
               legacy_tail=len(data) - 5)
    path = tmp_path / f'{kind}.pth'
    if kind == 'garbage':
        path.write_bytes(b'<html>not found</html>' * 10)
    else:
        path.write_bytes(data[:cut[kind]])
    return path


@pytest.mark.parametrize('kind', [
    'empty', 'zip_head', 'zip_half', 'zip_tail', 'legacy_head',
    'legacy_tail', 'garbage'
])
def test_damaged_checkpoint_names_the_file(tmp_path, no_env_roots, kind):
    """Before: torch's raw ``PytorchStreamReader failed reading zip
    archive`` / ``EOFError`` / ``OSError: Invalid argument`` /
    ``KeyError: 60``, without the file name."""
    from mmsniper.utils import CorruptCheckpointError
    path = _damaged(tmp_path, kind)
    with pytest.raises(CorruptCheckpointError) as err:
        load_local_checkpoint(str(path), 'cpu')
    msg = str(err.value)
    assert f'Cannot read checkpoint {path}:' in msg
    word = dict(empty='empty (0 bytes)',
                garbage='not a torch checkpoint').get(kind, 'truncated')
    assert word in msg
    # mmengine's entry points inside the scope say the same
    with trusted_checkpoint_loading():
        with pytest.raises(CorruptCheckpointError, match=re.escape(word)):
            _load_checkpoint(str(path), 'cpu')


def test_other_load_errors_keep_their_type_and_gain_the_name(
        tmp_path, no_env_roots):
    """A readable file failing for another reason is not called corrupt."""
    path = _weights_only_checkpoint(tmp_path / 'ok.pth')

    def bad_location(storage, loc):
        raise RuntimeError('no such device')

    with pytest.raises(RuntimeError, match='no such device') as err:
        load_local_checkpoint(str(path), bad_location)
    assert type(err.value) is RuntimeError
    assert any(str(path) in n for n in getattr(err.value, '__notes__', []))


def test_reuse_reads_the_file_once(tmp_path, no_env_roots, monkeypatch):
    path = _weights_only_checkpoint(tmp_path / 'ckpt.pth')
    reads = []
    real_load = torch.load

    @functools.wraps(real_load)  # keeps torch.load's signature
    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, 'load', counting_load)
    policy = CheckpointTrustPolicy(reuse=True)
    first = load_local_checkpoint(str(path), 'cpu', policy)
    second = load_local_checkpoint(str(path), 'cpu', policy)
    assert second is first and len(reads) == 1
    # served once: a third load reads again
    load_local_checkpoint(str(path), 'cpu', policy)
    assert len(reads) == 2
    # another map_location or a rewritten file is read again
    load_local_checkpoint(str(path), None, policy)
    assert len(reads) == 3
    torch.save({'state_dict': {'w': torch.ones(1)}}, path)
    os.utime(path, ns=(1, 1))
    assert 'w' in load_local_checkpoint(str(path), None, policy)['state_dict']
    assert len(reads) == 4
    # without reuse (the default) every load reads
    load_local_checkpoint(str(path), 'cpu')
    load_local_checkpoint(str(path), 'cpu')
    assert len(reads) == 6


@pytest.mark.slow
def test_tools_test_py_refuses_a_payload_and_names_a_truncated_file(
        tmp_path):
    """tools/test.py (issue 19, items 9 and 11): the CHECKPOINT it names
    with a payload is refused (before: trusted, the payload ran); with
    ``--trust-checkpoint`` it loads (and runs); a truncated one is named."""
    from mmengine.config import Config

    from mmdet.registry import MODELS
    tc.make_tiny_coco(tmp_path / 'data', num_images=2)
    cfg = tc.write_tiny_config(tmp_path / 'tiny_cfg.py', tmp_path / 'data')
    torch.manual_seed(0)
    state = MODELS.build(Config.fromfile(str(cfg)).model).state_dict()
    marker = tmp_path / 'PAYLOAD_RAN'
    evil = tmp_path / 'downloaded.pth'
    torch.save(dict(state_dict=state, payload=_SystemPayload(marker)), evil)

    res = tc.run(tc.eval_cmd(cfg, evil, tmp_path / 'wd1'))
    assert res.returncode == 1, res.describe()
    assert not marker.exists()
    assert 'Traceback' not in res.stderr, res.describe()
    assert f'Refusing to load checkpoint {evil}: the file is not ' \
        'weights-only loadable' in res.stderr
    assert 'would run code from it' in res.stderr
    assert 'pass --trust-checkpoint (or' in res.stderr
    print(f'refused: {res.seconds:.1f}s')

    cut = tmp_path / 'cut.pth'
    cut.write_bytes(evil.read_bytes()[:evil.stat().st_size // 3])
    res = tc.run(tc.eval_cmd(cfg, cut, tmp_path / 'wd2'))
    assert res.returncode == 1, res.describe()
    assert 'Traceback' not in res.stderr, res.describe()
    assert f'Cannot read checkpoint {cut}: it is truncated or corrupt' \
        in res.stderr

    res = tc.run_ok(
        tc.eval_cmd(cfg, evil, tmp_path / 'wd3', '--trust-checkpoint'))
    assert marker.exists()
    log = res.output
    assert f'Checkpoint {evil} is not weights-only' in log
    assert 'trusted explicitly with --trust-checkpoint' in log
    # read once: one fallback warning for the check and the runner's load
    assert log.count(f'Checkpoint {evil} is not weights-only') == 1
    assert 'coco/bbox_mAP' in log
    print(f'trusted: {res.seconds:.1f}s')
