"""A run killed after iteration k and resumed with ``--resume`` trains on
the same chips in the same order as an uninterrupted run, without a
configured seed (the runner draws one; the sampler must take up the seed
the checkpoint restores). One process, and two processes with gloo."""
import json
import sys

import pytest
import torch
import tiny_coco as tc

MAX_ITERS = 8
KILL_AT = 3
KILL_CODE = 37

HOOK_MODULE = '''\
import json
import os

from mmengine.dist import barrier, get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class ChipOrderHook(Hook):
    """Log img_id and chip of every sample; die after iteration kill_at."""
    priority = 'LOWEST'  # after CheckpointHook has saved the iteration

    def __init__(self, out, kill_at=None, kill_code=37):
        self.out = out
        self.kill_at = kill_at
        self.kill_code = kill_code

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        with open(f'{self.out}.{get_rank()}', 'a') as f:
            for sample in data_batch['data_samples']:
                meta = sample.metainfo
                f.write(json.dumps([
                    runner.iter + 1, meta['img_id'], meta['chip_scale_idx'],
                    [round(v, 3) for v in meta['chip_offset']],
                    round(meta['chip_scale'], 5)
                ]) + '\\n')
        if self.kill_at is not None and runner.iter + 1 == self.kill_at:
            barrier()  # rank 0 has written the checkpoint
            os._exit(self.kill_code)  # as abrupt as a kill
'''

SNIPER_EXTRA = '''
custom_imports = dict(imports=['mmsniper', 'chip_order_hook'],
                      allow_failed_imports=False)
sniper_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='SniperChipCrop', min_gt_size=4),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'chip_offset', 'chip_scale',
                    'chip_valid_range', 'chip_scale_idx',
                    'chip_is_negative'))
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(_delete_=True, type='SniperChipSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='SniperChipDataset',
        scales=[1.0, 0.5],
        valid_ranges=[(-1, 40), (30, -1)],
        chip_size=64,
        stride_jitter=(8, 16),
        dataset=dict(
            type='CocoDataset',
            data_root=data_root,
            metainfo=metainfo,
            ann_file='annotations/tiny.json',
            data_prefix=dict(img='images/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=8),
            pipeline=sniper_train_pipeline)))
randomness = dict(seed={seed})
custom_hooks = [dict(type='ChipOrderHook', out={out!r}, kill_at={kill_at})]
# ignore-aware, as tools/train.py requires on chips (merged over the base)
model['roi_head']['type'] = 'SniperRoIHead'
model['train_cfg'] = dict(
    rpn=dict(assigner=dict(type='SniperMaxIoUAssigner')),
    rcnn=dict(assigner=dict(type='SniperMaxIoUAssigner')))
'''


def _config(root, name, seed, out, kill_at):
    return tc.write_tiny_config(
        root / f'{name}.py', root / 'data', max_iters=MAX_ITERS,
        extra=SNIPER_EXTRA.format(seed=seed, out=str(out), kill_at=kill_at))


def _train(cfg, work_dir, nproc, env, *args):
    if nproc == 1:
        cmd = tc.train_cmd(cfg, work_dir, *args)
    else:
        cmd = ['bash', str(tc.TOOLS / 'dist_train.sh'), str(cfg),
               str(nproc), '--work-dir', str(work_dir), *args,
               '--cfg-options', 'env_cfg.dist_cfg.backend=gloo']
    return tc.run(cmd, env=env, timeout=400)


def _order(out, rank):
    with open(f'{out}.{rank}') as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('nproc', [1, 2])
def test_killed_and_resumed_run_replays_the_chip_order(tmp_path, nproc):
    tc.make_tiny_coco(tmp_path / 'data')
    (tmp_path / 'chip_order_hook.py').write_text(HOOK_MODULE)
    env = tc.tool_env(PYTHONPATH=str(tmp_path))
    if nproc > 1:
        env.update(PYTHON=sys.executable, PORT=str(tc.free_port()),
                   MASTER_ADDR='127.0.0.1')

    # A run without a seed, killed right after iteration KILL_AT was saved.
    killed_out = tmp_path / 'killed.jsonl'
    cfg = _config(tmp_path, 'killed', None, killed_out, KILL_AT)
    work_dir = tmp_path / 'work_killed'
    res = _train(cfg, work_dir, nproc, env)
    assert res.returncode != 0, res.describe()
    assert (work_dir / f'iter_{KILL_AT}.pth').is_file(), res.describe()
    assert not (work_dir / f'iter_{KILL_AT + 1}.pth').exists()
    seed = torch.load(work_dir / f'iter_{KILL_AT}.pth', map_location='cpu',
                      weights_only=False)['meta']['seed']

    # Resume it (same config: no seed; this process draws another one).
    cfg = _config(tmp_path, 'killed', None, killed_out, None)
    if nproc > 1:
        env['PORT'] = str(tc.free_port())
    res = _train(cfg, work_dir, nproc, env, '--resume')
    assert res.returncode == 0, res.describe()
    log = tc.read_logs(work_dir)
    assert f'resumed epoch: 0, iter: {KILL_AT}' in log, res.describe()
    # The test is meaningful only if the resumed process drew another seed.
    assert f'using its seed {seed} instead of' in res.output, res.describe()

    # The uninterrupted run with the seed the killed run had drawn.
    full_out = tmp_path / 'full.jsonl'
    cfg = _config(tmp_path, 'full', seed, full_out, None)
    if nproc > 1:
        env['PORT'] = str(tc.free_port())
    res = _train(cfg, tmp_path / 'work_full', nproc, env)
    assert res.returncode == 0, res.describe()

    for rank in range(nproc):
        full = _order(full_out, rank)
        killed = _order(killed_out, rank)
        assert [row[0] for row in full] == [
            it for it in range(1, MAX_ITERS + 1) for _ in range(2)]
        # the resumed part is iterations KILL_AT + 1 .. MAX_ITERS
        assert [row[0] for row in killed] == [row[0] for row in full]
        assert killed == full, f'rank {rank}: chip order differs'
    if nproc > 1:
        assert _order(full_out, 0) != _order(full_out, 1)
