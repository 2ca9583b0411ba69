"""The module graph has no cycles, and library modules are not commands (docs/layout.md).

Every `import` of one of our modules counts, at module level or inside a function: a lazy import hides
a cycle from Python's loader, not from a reader. Importing a submodule implicitly runs its parent
package's __init__, which is not counted (a package that re-exports its submodules is not a cycle).
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = ('config', 'dataloaders', 'deploy', 'engine', 'envs', 'evaluation', 'models', 'reporting', 'utils')
COMMANDS = ('tools',)
SCRIPTS = ('train_policy.py', 're-train.py', 'test.py')


def _module_files() -> dict[str, str]:
    """Dotted module name -> file, for the library packages, tools/ and the three scripts."""
    found = {}
    for package in LIBRARY + COMMANDS:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if not name.endswith('.py'):
                    continue
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, '.')
                found[rel.removesuffix('.__init__')] = os.path.join(folder, name)
    for script in SCRIPTS:
        found[script[:-3]] = os.path.join(ROOT, script)
    return found


def _imports(module: str, path: str, known: set[str]) -> set[str]:
    """The modules of ours that `module` imports (the most specific known name of each import)."""
    with open(path, encoding='utf-8') as handle:
        tree = ast.parse(handle.read(), path)
    package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
    targets: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition('.')[0]
        return name or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(resolve(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                parent = '.'.join(parts[:len(parts) - node.level + 1])
                base = f'{parent}.{base}' if base else parent
            for alias in node.names:
                targets.add(resolve(f'{base}.{alias.name}') if f'{base}.{alias.name}' in known else resolve(base))
    targets.discard(None)
    targets.discard(module)
    return targets


def import_graph() -> dict[str, set[str]]:
    files = _module_files()
    known = set(files)
    return {module: _imports(module, path, known) for module, path in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_cycle_finder_sees_a_cycle():
    assert find_cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert find_cycles({'a': {'b'}, 'b': set()}) == []


def test_graph_sees_lazy_imports():
    graph = import_graph()
    # a function-level import (config's registry look-up of the backbones) is an edge too
    assert 'models.backbones' in graph['config.schema']


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, 'import cycles: ' + '; '.join(' <-> '.join(c) for c in cycles)


def test_library_does_not_import_commands():
    graph = import_graph()
    bad = sorted(f'{m} -> {t}' for m, targets in graph.items() if m.split('.')[0] in LIBRARY
                 for t in targets if t.split('.')[0] in COMMANDS or t in ('train_policy', 're-train', 'test'))
    assert not bad, bad


@pytest.mark.parametrize('module', sorted(m for m in _module_files() if m.split('.')[0] in LIBRARY))
def test_library_modules_are_not_commands(module):
    path = _module_files()[module]
    with open(path, encoding='utf-8') as handle:
        source = handle.read()
    assert "__name__ == '__main__'" not in source and '__name__ == "__main__"' not in source, \
        f'{path}: library modules have no __main__; commands live in tools/'
    assert not os.path.basename(path) == '__main__.py', path


def package_graph() -> dict[str, set[str]]:
    """Top-level folder -> the top-level folders it imports (the layering docs/layout.md draws)."""
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        source = module.split('.')[0]
        graph.setdefault(source, set()).update(t.split('.')[0] for t in targets if t.split('.')[0] != source)
    return graph


def test_layering_of_docs_layout():
    graph = package_graph()
    assert 'envs' not in graph['engine'], 'engine/ drives an env it is handed; it never imports envs/'
    assert graph['models'] <= {'utils'} and graph['utils'] == set() and graph['dataloaders'] == set()
