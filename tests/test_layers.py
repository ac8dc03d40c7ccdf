"""The floors of the code base: imports only run downwards, and no module imports itself back.

protocol < common < device | gateway | central (siblings) < provisioning < chot

Every module's imports are read with `ast`, including the ones inside functions (a lazy import
is an arrow all the same) and `from package import name` of a package `__init__`. Imports
under `if TYPE_CHECKING:` count as arrows between floors but not for cycles (they never run).
"""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {
    "protocol": 0,
    "common": 1,
    "device": 2,
    "gateway": 2,
    "central": 2,
    "provisioning": 3,
    "chot": 4,
}


@dataclass(frozen=True)
class Arrow:
    source: str  # importing module, e.g. "gateway.app"
    target: str  # imported module, e.g. "protocol.topics"
    line: int
    runs: bool  # False under `if TYPE_CHECKING:`

    @property
    def where(self) -> str:
        return f"{self.source.replace('.', '/')}.py:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in LEVELS:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, runs: bool = True) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it executes at run time (False inside `if TYPE_CHECKING:`)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for inner in child.body:
                yield inner, False
                yield from _walk(inner, False)
            for inner in child.orelse:
                yield inner, runs
                yield from _walk(inner, runs)
            continue
        yield child, runs
        yield from _walk(child, runs)


def _resolve_relative(source: str, is_package: bool, level: int, module: str | None) -> str:
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def arrows(source: str, path: Path) -> list[Arrow]:
    """The modules `source` imports. `from a.b import c` is a.b.c when c is a module,
    else a.b (the name comes from its `__init__` or module body)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Arrow] = []
    for node, runs in _walk(tree):
        if isinstance(node, ast.Import):
            found += [Arrow(source, alias.name, node.lineno, runs) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(source, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in MODULES else base
                found.append(Arrow(source, target, node.lineno, runs))
    return [a for a in found if a.target.split(".")[0] in LEVELS]


ARROWS = [arrow for name, path in MODULES.items() for arrow in arrows(name, path)]


def _floor(module: str) -> str:
    return module.split(".")[0]


def test_the_packages_are_found() -> None:
    assert {_floor(m) for m in MODULES} == set(LEVELS)
    assert any(a.target.startswith("protocol.") for a in ARROWS)


def upward_arrows() -> list[str]:
    bad = []
    for arrow in ARROWS:
        low, high = _floor(arrow.source), _floor(arrow.target)
        if low == high:
            continue
        if LEVELS[high] > LEVELS[low]:
            bad.append(f"{arrow.where}: {low} imports {arrow.target} from a higher floor")
        elif LEVELS[high] == LEVELS[low]:
            bad.append(f"{arrow.where}: {low} imports its sibling {arrow.target}")
    return bad


def test_imports_only_run_downwards() -> None:
    assert upward_arrows() == []


def _graph() -> dict[str, set[str]]:
    """Module -> modules its import runs. Importing a.b.c also runs the `__init__` of a and
    a.b, except the packages the importer itself lives in (they are already loading)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for arrow in ARROWS:
        if not arrow.runs or arrow.target not in MODULES:
            continue
        parts = arrow.target.split(".")
        for depth in range(1, len(parts)):
            package = ".".join(parts[:depth])
            if not arrow.source.startswith(package + "."):
                graph[arrow.source].add(package)
        if arrow.target != arrow.source:
            graph[arrow.source].add(arrow.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    assert cycles(_graph()) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_checker_sees_lazy_upward_and_init_imports(tmp_path: Path) -> None:
    """The reader itself: a function-level import and a `from package import name` count."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "def f():\n    from chot.cli import main\n"
        "if TYPE_CHECKING:\n    from provisioning.keys import load_key_file\n"
        "from gateway import web\n"
    )
    found = {(a.target, a.runs) for a in arrows("device.mod", source)}
    assert ("chot.cli", True) in found
    assert ("provisioning.keys", False) in found
    assert ("gateway.web", True) in found
