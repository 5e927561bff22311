"""Docs whose links cannot rot: every relative link (and image) in
README.md, docs/ and the configs' READMEs names a file that exists, every
``#anchor`` is a heading of the page it points into (GitHub's slugs), every
docs page is reachable from README.md, and README.md stays short."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

_FENCE = re.compile(r'^\s*(```|~~~)')
_HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?'
                   r'(?:\s+"[^"]*")?\s*\)')
_EXTERNAL = re.compile(r'^[a-z][a-z0-9+.-]*:', re.I)


def doc_files():
    files = [ROOT / 'README.md']
    files += sorted((ROOT / 'docs').rglob('*.md'))
    files += sorted((ROOT / 'configs').rglob('README.md'))
    return files


def _prose_lines(text):
    """The lines outside fenced code blocks."""
    fence = None
    for line in text.splitlines():
        m = _FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield line


def slug(heading):
    """GitHub's anchor for a heading: link targets and markup dropped,
    lowercase, punctuation removed (letters, digits, ``_`` and ``-``
    kept), spaces to ``-``."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)
    text = re.sub(r'<[^>]+>', '', text)
    text = re.sub(r'[^\w\- ]', '', text.lower())
    return text.replace(' ', '-')


def anchors(text):
    """Every heading's slug, with GitHub's ``-1``, ``-2`` suffixes for
    repeated headings."""
    seen, found = {}, set()
    for line in _prose_lines(text):
        m = _HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f'{base}-{n}')
    return found


def links(text):
    """Targets of the markdown links and images outside code."""
    out = []
    for line in _prose_lines(text):
        line = re.sub(r'`[^`]*`', '', line)
        out += _LINK.findall(line)
    return out


def broken_links(path):
    """``(target, why)`` for each relative link of ``path`` that does not
    resolve."""
    text = path.read_text(encoding='utf-8')
    bad = []
    for target in links(text):
        if _EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition('#')
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append((target, 'no such file'))
            continue
        if anchor and dest.suffix == '.md':
            if anchor not in anchors(dest.read_text(encoding='utf-8')):
                bad.append((target, f'no heading #{anchor} in {dest.name}'))
    return bad


def test_slug_follows_github():
    assert slug('Multi-scale testing (SNIPER)') == 'multi-scale-testing-sniper'
    assert slug('The environment, in detail') == 'the-environment-in-detail'
    assert slug('`tools/analysis_tools/analyze_scales.py`: scales and '
                'valid ranges') == ('toolsanalysis_toolsanalyze_scalespy-'
                                    'scales-and-valid-ranges')
    assert slug('Evidence on real data: KIT AIS aerial cars') == \
        'evidence-on-real-data-kit-ais-aerial-cars'
    assert anchors('# A\n## A\n```\n# not a heading\n```\n') == {'a', 'a-1'}


def test_checker_finds_broken_links(tmp_path):
    (tmp_path / 'other.md').write_text('# Other page\n\n## Some part\n')
    page = tmp_path / 'page.md'
    page.write_text(
        '# Page\n\n[ok](other.md#some-part) [ok](#page) '
        '[ok](https://example.com/x.md) ![ok](other.md)\n'
        '[gone](missing.md) [bad anchor](other.md#no-such-part) '
        '[bad here](#nowhere)\n'
        '`[in code](missing2.md)`\n```\n[in a block](missing3.md)\n```\n')
    assert sorted(t for t, _ in broken_links(page)) == [
        '#nowhere', 'missing.md', 'other.md#no-such-part']


@pytest.mark.parametrize('path', doc_files(),
                         ids=[p.relative_to(ROOT).as_posix()
                              for p in doc_files()])
def test_relative_links_resolve(path):
    assert path.is_file()
    bad = broken_links(path)
    assert not bad, f'{path.relative_to(ROOT)}: broken links {bad}'


def test_readme_stays_short():
    n = len((ROOT / 'README.md').read_text(encoding='utf-8').splitlines())
    assert n <= README_MAX_LINES, (
        f'README.md has {n} lines, more than {README_MAX_LINES}: move '
        'details to a page under docs/en/ and link it')


def test_every_docs_page_is_linked_from_the_readme():
    readme = ROOT / 'README.md'
    linked = set()
    for target in links(readme.read_text(encoding='utf-8')):
        if not _EXTERNAL.match(target):
            linked.add((ROOT / target.partition('#')[0]).resolve())
    pages = sorted((ROOT / 'docs').rglob('*.md'))
    assert pages, 'docs/ has no pages'
    missing = [p.relative_to(ROOT).as_posix() for p in pages
               if p.resolve() not in linked]
    assert not missing, f'README.md does not link {missing}'


def tables_without_separator(text):
    """Line numbers of markdown tables whose header row is not followed by
    a ``|---|`` separator row (outside code fences)."""
    bad, fence, prev_is_row = [], False, False
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith('```'):
            fence = not fence
            prev_is_row = False
            continue
        row = not fence and line.lstrip().startswith('|')
        if row and not prev_is_row:  # a table starts here
            nxt = lines[i + 1] if i + 1 < len(lines) else ''
            if not re.match(r'^\s*\|[\s:|-]+\|\s*$', nxt):
                bad.append(i + 1)
        prev_is_row = row
    return bad


def test_table_check_finds_a_missing_separator():
    assert tables_without_separator('| a | b |\n| 1 | 2 |\n') == [1]
    assert tables_without_separator('| a | b |\n|---|:-:|\n| 1 | 2 |\n') == []


@pytest.mark.parametrize('path', doc_files(),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_tables_have_a_separator_row(path):
    bad = tables_without_separator(path.read_text(encoding='utf-8'))
    assert not bad, f'{path.relative_to(ROOT)}: tables at lines {bad} ' \
        'have no |---| row under their header (not rendered as tables)'
