"""Docs that cannot rot: every shell command in README.md and docs/ names a
script that exists, and every ``--flag`` it passes appears in that script's
``--help`` (``make`` targets: in the Makefile; ``DEMO_ARGS``: in
``tools/demo.py --help``)."""
import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Shell scripts that hand their extra arguments to a Python tool.
SH_FORWARDS = {
    'tools/dist_train.sh': 'tools/train.py',
    'tools/dist_test.sh': 'tools/test.py',
    'tools/slurm_train.sh': 'tools/train.py',
    'tools/slurm_test.sh': 'tools/test.py',
}
#: Make variables whose value is passed to a script as its arguments.
MAKE_ARG_VARS = {'DEMO_ARGS': 'tools/demo.py'}
_FENCE = re.compile(r'^\s*```(\w*)\s*$')
_SCRIPT = re.compile(r'(?:^|\s)(?:\S*python\S*|bash)\s+(\S+\.(?:py|sh))\b')


def doc_files():
    files = [ROOT / 'README.md']
    docs = ROOT / 'docs'
    if docs.is_dir():
        files += sorted(docs.rglob('*.md'))
    return files


def _shell_lines(text):
    """Lines of ``bash``/``sh``/``shell`` (or unlabelled) fenced blocks,
    backslash continuations joined, and inline code spans that start with
    ``python``, ``bash`` or ``make``."""
    lines, block, lang = [], None, None
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence:
            if block is None:
                block, lang = [], fence.group(1)
            else:
                if lang in ('', 'bash', 'sh', 'shell', 'console'):
                    joined = '\n'.join(block).replace('\\\n', ' ')
                    lines += joined.splitlines()
                block = None
            continue
        if block is not None:
            block.append(line)
        else:
            lines += re.findall(r'`((?:python|bash|make) [^`]+)`', line)
    return lines


def _clean(line):
    """Drop a leading comment marker or list number and a trailing
    comment."""
    line = re.sub(r'^\s*#\s*(\d+\.\s*)?', '', line.strip())
    return re.split(r'\s+#', line)[0].strip()


def commands():
    found = []
    for path in doc_files():
        for line in _shell_lines(path.read_text(encoding='utf-8')):
            cmd = _clean(line)
            if _SCRIPT.search(cmd) or cmd.startswith('make '):
                found.append((path.relative_to(ROOT).as_posix(), cmd))
    return found


def _tokens(cmd):
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()


def _flags(tokens):
    flags = []
    for tok in tokens:
        for part in re.split(r'[\[\]|]', tok):
            if part.startswith('--') and len(part) > 2:
                flags.append(part.split('=')[0])
    return flags


@functools.lru_cache(maxsize=None)
def help_text(script):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, script, '--help'],
                         cwd=str(ROOT),
                         env=env,
                         stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT,
                         text=True,
                         timeout=300)
    assert res.returncode == 0, f'{script} --help failed:\n{res.stdout}'
    return res.stdout


def _check_flags(script, flags, where):
    if not flags:
        return
    text = help_text(script)
    missing = [f for f in flags if not re.search(re.escape(f) + r'\b', text)]
    assert not missing, (f'{where}: {missing} not in `python {script} '
                         f'--help`')


COMMANDS = commands()


def test_docs_have_commands():
    # the extraction itself must find the README's set-up and tools
    cmds = [c for _, c in COMMANDS]
    assert 'make demo' in cmds and 'make test' in cmds
    assert any(c.startswith('python tools/train.py') for c in cmds)
    assert any(c.startswith('python tools/test.py') for c in cmds)


@pytest.mark.parametrize('doc,cmd', COMMANDS,
                         ids=[c[:60] for _, c in COMMANDS])
def test_doc_command(doc, cmd):
    where = f'{doc}: `{cmd}`'
    tokens = _tokens(cmd)
    if tokens[0] == 'make':
        makefile = (ROOT / 'Makefile').read_text()
        for tok in tokens[1:]:
            if '=' in tok:
                var, value = tok.split('=', 1)
                if var in MAKE_ARG_VARS:
                    _check_flags(MAKE_ARG_VARS[var], _flags(_tokens(value)),
                                 where)
            else:
                assert re.search(rf'^{re.escape(tok)}:', makefile,
                                 re.M), f'{where}: no make target {tok}'
        return
    script = _SCRIPT.search(cmd).group(1)
    assert (ROOT / script).is_file(), f'{where}: {script} does not exist'
    rest = tokens[tokens.index(script) + 1:] if script in tokens else []
    target = SH_FORWARDS.get(script, script)
    if target.endswith('.py'):
        _check_flags(target, _flags(rest), where)
