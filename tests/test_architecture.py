"""The import structure of ``formulac/``: no cycles, and imports only point down the layers.

Every module's AST is read, imports inside functions included (a lazy import still makes a
module depend on another); the graph of formulac-internal imports must be acyclic, and an
import from one layer may only reach the same layer or one below it, in the order that
docs/architecture.md draws.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "formulac"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> set[str]:
    """The formulac modules that ``module`` imports anywhere in its source."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node, path.name == "__init__.py")
            # `from pkg import sub` imports the submodule when there is one
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import formulac.analysis.linear as x` and friends
                name = name.rpartition(".")[0]
            if name.startswith("formulac") and name != module:
                found.add(name)
    return found


def _graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for module in MODULES:
        graph.add_edges_from((module, target) for target in _imports(module))
    return graph


def test_the_walk_sees_imports_inside_functions():
    assert "formulac.codegen" in _imports("formulac.formula"), "Formula.compile imports codegen lazily"


def test_no_import_cycle_anywhere():
    graph = _graph()
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:5])


def _layers() -> list[list[str]]:
    """The layers of docs/architecture.md's drawing, top first: each a list of path prefixes."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("```", 2)[1]
    layers = []
    for line in block.strip("\n").splitlines():
        entry = re.split(r"\s{2,}", line.strip())[0]  # the first column: names, then two spaces
        if entry:
            layers.append([item.strip() for item in entry.split(",") if item.strip()])
    return layers


def _layer_of(module: str, layers: list[list[str]]) -> int:
    rel = module.replace(".", "/")
    best, best_len = None, -1
    for i, prefixes in enumerate(layers):
        for prefix in prefixes:
            name = prefix.rstrip("/")
            if name == "__init__.py":  # the package itself, not everything in it
                path, pattern = "formulac", "formulac"
            else:
                path = "formulac/" + name.removesuffix(".py")
                pattern = re.escape(path) + r"(/.*)?"
            if re.fullmatch(pattern, rel) and len(path) > best_len:
                best, best_len = i, len(path)
    assert best is not None, f"{module} is in no layer of docs/architecture.md"
    return best


def test_imports_point_down_the_layers():
    layers = _layers()
    assert len(layers) >= 8
    wrong = []
    for module, target in _graph().edges:
        if _layer_of(target, layers) < _layer_of(module, layers):
            wrong.append(f"{module} -> {target}")
    assert not wrong, "imports pointing up the layers: " + ", ".join(wrong)


def test_layers_are_read_from_the_drawing():
    layers = _layers()
    order = [
        _layer_of(m, layers) for m in ("formulac.cli", "formulac.analysis.graph", "formulac.parse.syntax")
    ]
    assert order == sorted(order) and len(set(order)) == 3
    assert _layer_of("formulac", layers) == _layer_of("formulac.cli.common", layers) == 0
    assert _layer_of("formulac.errors", layers) == _layer_of("formulac.limits", layers) == len(layers) - 1


def test_only_the_representation_reads_sympy_indices():
    pattern = re.compile(r"\.base\.label|\.indices\[0\]")
    offenders = []
    for path in MODULES.values():
        rel = path.relative_to(ROOT).as_posix()
        if rel == "formulac/ir.py":
            continue
        offenders += [
            f"{rel}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)
        ]
    assert not offenders, "use formulac.ir.StateRef: " + ", ".join(offenders)


def _private_imports(source: str, where: str) -> list[str]:
    """``from X import _name`` in ``source`` (imports inside functions included): a private
    name of another module, which should get a public name once another module needs it."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{where}:{node.lineno} imports {alias.name}")
    return found


def test_the_private_name_check_sees_imports_anywhere():
    source = "from .plan import var_name as _var\n\ndef f():\n    from .emit import _carry, carried\n"
    assert _private_imports(source, "m.py") == ["m.py:4 imports _carry"]
    assert _private_imports("from __future__ import annotations\nfrom . import __version__\n", "m.py") == []


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in MODULES.values():
        offenders += _private_imports(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    assert not offenders, "give these names public names: " + "; ".join(offenders)
