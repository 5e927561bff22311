# Copyright (c) mmsniper contributors. All rights reserved.
"""Per-epoch chip work in distributed training: every rank doing all of it
on demand (the old path) against rank shards prepared in the background.

With ``stride_jitter`` and negative chips, every epoch regenerates every
image's positive chips and mines its negative chips again. This script
starts ``--ranks`` processes (gloo, as torchrun would) for each path, each
with ``--procs / --ranks`` chip-work processes, builds
:class:`SniperChipDataset` with :class:`SniperChipSampler` in each rank, and
runs ``--epochs`` epochs of a stand-in training loop: the first draw of an
epoch (where a real loop waits for its chips), then the epoch's chips are
consumed and the loop sleeps for the rest of ``--train-s`` (the GPUs'
share of an epoch; the CPUs stay free for the chip work, as they mostly
are in GPU training). It prints per path and epoch: each rank's chip work
(wall seconds of its own generation and mining) and how long the training
loop waited for the epoch's chips.

Workload: the COCO train workload of ``bench_negative_mining.py`` (COCO
val2014 boxes of ``../shared/data``, replicated to ``--num-images``; 300
synthetic proposals per image), the reference setup: scales (3.0, 1.667,
(-1, 512)), ranges ((-1, 80), (32, 150), (120, -1)), chip 512,
``stride_jitter=(56, 60)``, 2 negative chips per image.

Usage::

    python benchmarks/bench_epoch_chip_work.py [--num-images 118287]
        [--ranks 2] [--procs 8] [--epochs 3] [--old-epochs 2]
        [--train-s 240]
"""
import argparse
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # benchmark the working tree
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from bench_chip_generation import SHARED_DATA  # noqa
from bench_negative_mining import (coco_workload, reference_dataset,  # noqa
                                   write_workload)

SEED = 0
PATHS = dict(
    old=dict(shard_chip_work=False, prefetch_next_epoch=False),
    new=dict(shard_chip_work=True, prefetch_next_epoch=True))
PATH_NAMES = dict(
    old='every rank all images, on demand (before)',
    new='rank shards, next epoch in the background')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=118287,
                        help='images (COCO train2017 has 118,287)')
    parser.add_argument('--proposals-per-image', type=int, default=300)
    parser.add_argument('--ranks', type=int, default=2)
    parser.add_argument('--procs', type=int, default=8,
                        help='chip-work processes in all (split over ranks)')
    parser.add_argument('--epochs', type=int, default=3,
                        help='epochs of the new path (the first included)')
    parser.add_argument('--old-epochs', type=int, default=2,
                        help='epochs of the old path (it waits the same '
                        'every epoch); 0 skips it')
    parser.add_argument('--train-s', type=float, default=240.0,
                        help='stand-in training time per epoch (s)')
    parser.add_argument('--data-root', default=SHARED_DATA)
    parser.add_argument('--out', default=None, help='write results as json')
    parser.add_argument('--rank-worker', nargs=3,
                        metavar=('PATH', 'FOLDER', 'OUT'),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ----------------------------------------------------------------------
# one rank
# ----------------------------------------------------------------------
def rank_worker(args):
    path, folder, out = args.rank_worker
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    import mmsniper  # noqa: F401  (registers the dataset)
    from mmengine.logging import MMLogger
    from mmsniper.datasets.samplers.sniper_chip_sampler import \
        SniperChipSampler
    MMLogger.get_instance('bench_epoch_chip_work', log_level='WARNING')
    start = time.perf_counter()
    ds = reference_dataset(
        folder, osp.join(folder, 'proposals.pkl'),
        num_proc=max(1, args.procs // args.ranks), **PATHS[path])
    build_s = time.perf_counter() - start
    sampler = SniperChipSampler(ds, seed=SEED)
    epochs = args.epochs if path == 'new' else args.old_epochs
    records = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        chips = iter(sampler)
        next(chips)  # the training loop's first batch waits for the table
        wait_s = time.perf_counter() - start
        log = ds.chip_work_log[(epoch, SEED)]
        num = 1 + sum(1 for _ in chips)
        time.sleep(max(0.0, args.train_s - (time.perf_counter() - start)))
        records.append(
            dict(epoch=epoch, wait_s=wait_s, work_s=log['work_s'],
                 how=log['how'], images=log['images'],
                 rank_work_s=log['rank_work_s'], chips_this_rank=num,
                 stride=ds.epoch_stride(epoch, SEED)))
    dist.barrier()
    with open(out, 'w') as f:
        json.dump(dict(rank=rank, build_s=build_s, epochs=records), f)
    dist.destroy_process_group()


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_path(args, path, folder):
    """Start the ranks of one path; returns their records."""
    env = dict(os.environ, MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(free_port()), WORLD_SIZE=str(args.ranks),
               LOCAL_WORLD_SIZE=str(args.ranks), OMP_NUM_THREADS='1')
    procs, outs = [], []
    for rank in range(args.ranks):
        out = osp.join(folder, f'{path}_rank{rank}.json')
        outs.append(out)
        cmd = [sys.executable, osp.abspath(__file__), '--rank-worker', path,
               folder, out] + [
                   f'--{k.replace("_", "-")}={v}'
                   for k, v in vars(args).items()
                   if k in ('ranks', 'procs', 'epochs', 'old_epochs',
                            'train_s')
               ]
        log = open(osp.join(folder, f'{path}_rank{rank}.log'), 'w')
        procs.append((subprocess.Popen(
            cmd, env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
            stdout=log, stderr=subprocess.STDOUT), log))
    for rank, (proc, log) in enumerate(procs):
        proc.wait()
        log.close()
        if proc.returncode != 0:
            with open(log.name) as f:
                tail = f.read()[-3000:]
            raise SystemExit(f'bench_epoch_chip_work: rank {rank} of the '
                             f'{path} path failed (exit {proc.returncode}):'
                             f'\n{tail}')
    records = []
    for out in outs:
        with open(out) as f:
            records.append(json.load(f))
    return records


def print_path(path, records, args):
    print(f'\n{path}: {PATH_NAMES[path]}; {args.ranks} ranks x '
          f'{max(1, args.procs // args.ranks)} processes')
    print('  dataset build (epoch 0 for seed None): ' + ', '.join(
        f'rank {r["rank"]} {r["build_s"]:.1f} s' for r in records))
    print('  | epoch | stride | chip work per rank (s) | wait per rank (s) '
          '| how |')
    print('  |---|---|---|---|---|')
    rows = []
    for epoch, per_rank in enumerate(zip(*[r['epochs'] for r in records])):
        work = [e['work_s'] for e in per_rank]
        waits = [e['wait_s'] for e in per_rank]
        rows.append(dict(epoch=epoch, work=work, waits=waits,
                         how=per_rank[0]['how']))
        print(f'  | {epoch} | {per_rank[0]["stride"]} | '
              f'{" / ".join(f"{w:.1f}" for w in work)} | '
              f'{" / ".join(f"{w:.2f}" for w in waits)} | '
              f'{per_rank[0]["how"]} |')
    return rows


def main():
    args = parse_args()
    if args.rank_worker:
        rank_worker(args)
        return
    name, images, workload, num_boxes = coco_workload(args.data_root,
                                                      args.num_images)
    results = dict(args={k: v for k, v in vars(args).items()
                         if k != 'rank_worker'}, cpus=os.cpu_count())
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_workload(workload, folder, args.proposals_per_image)
        print(f'[{name}] {len(images)} distinct images replicated to '
              f'{args.num_images} ({num_boxes} GT boxes), '
              f'{args.proposals_per_image} proposals per image, written in '
              f'{time.perf_counter() - start:.0f} s; {args.ranks} ranks, '
              f'{args.procs} chip-work processes in all, {os.cpu_count()} '
              f'CPUs; stand-in training {args.train_s:g} s per epoch')
        for path in ('old', 'new'):
            if path == 'old' and not args.old_epochs:
                continue
            records = run_path(args, path, folder)
            results[path] = dict(records=records,
                                 rows=print_path(path, records, args))
    if 'old' in results and 'new' in results:
        old = results['old']['rows']
        new = results['new']['rows']
        old_wait = np.mean([max(r['waits']) for r in old])
        new_later = [max(r['waits']) for r in new[1:]]
        old_work = np.mean([max(r['work']) for r in old])
        new_work = [max(r['work']) for r in new]
        print(f'\nper epoch: chip work (slowest rank) {old_work:.1f} s '
              f'before, {min(new_work):.1f}-{max(new_work):.1f} s with '
              f'shards ({old_work / np.mean(new_work):.2f}x); the loop '
              f'waited {old_wait:.1f} s before, '
              + (f'{max(new_later):.2f} s at most after the first epoch '
                 'with shards in the background' if new_later else
                 'and the new path ran one epoch only'))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
