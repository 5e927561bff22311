# Copyright (c) mmsniper contributors. All rights reserved.
"""Does the KIT AIS conclusion hold past the first steps? AP_small against
the training budget, (a) single-scale whole images against (c) SNIPER.

    python benchmarks/kit_ais/plot_budgets.py WORK_DIR [WORK_DIR ...]
        [--out resources/kit_ais_budgets.png]

Each WORK_DIR is a ``study_kit_ais.py --work-dir`` whose
``fold*/{a,c}/result.json`` exist (e.g. the 24-minute run). The 6-minute
study of 2026-11-30 is read from ``results_6min.json`` beside this script:
its printed table (``benchmarks/RESULTS.md``), fold by fold. Prints a table
(budget, variant, test, AP and AP_small per fold, iterations) and draws
AP_small of the single-scale and the SNIPER multi-scale test per budget.
"""
import argparse
import glob
import json
import os.path as osp

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
TESTS = {'single': 'single-scale test (1333x800)',
         'sniper': 'SNIPER multi-scale test (1.43, 1.0)'}
VARIANTS = {'a': '(a) single-scale whole images (1333x800)',
            'c': '(c) SNIPER, positive chips'}


def rows_6min():
    with open(osp.join(HERE, 'results_6min.json')) as f:
        table = json.load(f)
    rows = []
    for var, vname in VARIANTS.items():
        for test, tname in TESTS.items():
            row = next(r for r in table['rows']
                       if r['training'] == vname and r['test'] == tname)
            rows.append(dict(budget_min=table['budget_min'], variant=var,
                             test=test, AP=row['AP'],
                             AP_small=row['AP_small'], iters=row['iters']))
    return rows


def rows_of(work_dir):
    rows = []
    for var in VARIANTS:
        results = []
        for path in sorted(glob.glob(osp.join(work_dir, 'fold*', var,
                                              'result.json'))):
            with open(path) as f:
                results.append(json.load(f))
        if len(results) != 2:
            continue
        results.sort(key=lambda r: r['fold'])
        for test in TESTS:
            metrics = [r['tests'][test]['metrics'] for r in results]
            rows.append(dict(
                budget_min=round(results[0]['budget_s'] / 60),
                variant=var, test=test,
                AP=[m['coco/bbox_mAP'] for m in metrics],
                AP_small=[m['coco/bbox_mAP_s'] for m in metrics],
                iters=[r['iters'] for r in results]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--out', default=None, help='the plot (png)')
    args = parser.parse_args()
    rows = rows_6min()
    for work_dir in args.work_dirs:
        rows += rows_of(work_dir)
    print('| budget | training | test | AP (fold 1 / fold 2) | AP_small '
          '(fold 1 / fold 2) | iterations |')
    print('|---|---|---|---|---|---|')
    for r in sorted(rows, key=lambda r: (r['test'], r['budget_min'],
                                         r['variant'])):
        print(f"| {r['budget_min']} min | {VARIANTS[r['variant']]} | "
              f"{TESTS[r['test']]} | {np.mean(r['AP']):.3f} "
              f"({r['AP'][0]:.3f} / {r['AP'][1]:.3f}) | "
              f"{np.mean(r['AP_small']):.3f} ({r['AP_small'][0]:.3f} / "
              f"{r['AP_small'][1]:.3f}) | {r['iters'][0]}/{r['iters'][1]} |")
    budgets = sorted({r['budget_min'] for r in rows})
    for test in TESTS:
        gaps = []
        for budget in budgets:
            by = {r['variant']: r for r in rows
                  if r['budget_min'] == budget and r['test'] == test}
            if len(by) == 2:
                gap = [c - a for c, a in zip(by['c']['AP_small'],
                                             by['a']['AP_small'])]
                gaps.append(f'{budget} min: {np.mean(gap):+.3f} '
                            f'({gap[0]:+.3f} / {gap[1]:+.3f})')
        print(f'AP_small of (c) minus (a), {TESTS[test]}: ' +
              '; '.join(gaps))
    if args.out:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        colors = dict(a='tab:gray', c='tab:orange')
        styles = dict(single='--', sniper='-')
        for var in VARIANTS:
            for test in TESTS:
                sel = sorted((r for r in rows if r['variant'] == var
                              and r['test'] == test),
                             key=lambda r: r['budget_min'])
                xs = [r['budget_min'] for r in sel]
                ax.plot(xs, [np.mean(r['AP_small']) for r in sel],
                        styles[test], color=colors[var], marker='o',
                        label=f'{VARIANTS[var]}: {TESTS[test]}')
                for r in sel:
                    ax.scatter([r['budget_min']] * 2, r['AP_small'],
                               color=colors[var], s=12, alpha=0.5)
        ax.set_xticks(budgets)
        ax.set_xlabel('training budget (min of wall time, 2 CPU cores)')
        ax.set_ylabel('AP_small')
        ax.set_title('KIT AIS cars: mean of the two folds (line), each '
                     'fold (dots)', fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc='best')
        fig.tight_layout()
        fig.savefig(args.out)
        print(f'plot: {args.out}')


if __name__ == '__main__':
    main()
