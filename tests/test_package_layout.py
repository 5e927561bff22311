"""The package holds what it runs, in files one can read: no import cycles
between mmsniper's modules (lazy imports inside functions included), and no
source file over 800 lines without the reason stated at its top."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / 'mmsniper'
MAX_LINES = 800
#: What a long file's docstring says, in its first lines.
REASON = 'Longer than 800 lines because'


def _modules():
    mods = {}
    for path in PKG.rglob('*.py'):
        if '.mim' in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        mods[name] = path
    return mods


def _imported(name, is_pkg, node, mods):
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split('.') if is_pkg else name.split('.')[:-1]
            base = base[:len(base) - (node.level - 1)]
            mod = '.'.join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ''
        found = [mod] + [f'{mod}.{alias.name}' for alias in node.names]
    else:
        found = [alias.name for alias in node.names]
    return [m for m in found if m in mods]


def import_graph():
    """Module -> the mmsniper modules it imports anywhere in its code (a
    package's imports of its own submodules left out: importing the package
    runs them by design)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        is_pkg = path.name == '__init__.py'
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for mod in _imported(name, is_pkg, node, mods):
                    if mod != name and not (is_pkg
                                            and mod.startswith(name + '.')):
                        deps.add(mod)
        graph[name] = deps
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, stack)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}
    assert find_cycle(graph) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_graph_sees_lazy_imports():
    graph = import_graph()
    # tools import lazily inside functions; the graph must see those too
    assert 'mmsniper.chips' in graph['mmsniper.datasets.chip_settings']
    assert graph['mmsniper.datasets.sniper_chip_dataset'] >= {
        'mmsniper.datasets.chip_settings', 'mmsniper.datasets.proposals'
    }


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_long_files_say_why():
    long = []
    for path in sorted(PKG.rglob('*.py')):
        if '.mim' in path.parts:
            continue
        text = path.read_text(encoding='utf-8')
        head = '\n'.join(text.splitlines()[:60])
        if text.count('\n') > MAX_LINES and REASON not in head:
            long.append(f'{path.relative_to(ROOT)} '
                        f'({text.count(chr(10))} lines)')
    assert not long, (f'over {MAX_LINES} lines with no "{REASON} ..." in '
                      f'the first lines: {long}')
