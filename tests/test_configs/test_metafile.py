# Copyright (c) mmsniper contributors. All rights reserved.
"""configs/sniper/metafile.yml: real configs, and only figures that the
READMEs and docs report (no placeholder results)."""
import glob
import os.path as osp

import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_metafile_configs_exist_and_figures_match_the_readmes():
    with open(osp.join(ROOT, 'configs', 'sniper', 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    with open(osp.join(ROOT, 'configs', 'sniper', 'README.md')) as f:
        config_readme = f.read()
    # the README and the docs pages (the demo in README.md, the AutoFocus
    # demo in docs/en/user_guides/autofocus.md)
    docs = [osp.join(ROOT, 'README.md')] + sorted(
        glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True))
    readme = ''
    for path in docs:
        with open(path, encoding='utf-8') as f:
            readme += f.read()
    assert osp.isfile(
        osp.join(ROOT, 'configs', 'sniper', meta['Collections'][0]['README']))
    figures = 0
    for model in meta['Models']:
        assert osp.isfile(osp.join(ROOT, model['Config'])), model['Name']
        assert osp.basename(model['Config']) in config_readme
        for result in model.get('Results', []):
            for name, value in result['Metrics'].items():
                assert value is not None, (model['Name'], name)
                figures += 1
                assert f'| {value:.1f} |' in config_readme, (name, value)
                assert f'{value / 100:.3f}' in readme, (name, value)
    assert figures > 0
