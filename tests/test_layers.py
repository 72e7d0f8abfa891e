"""The package's import graph: no circle, and the core never imports the algorithms in `baselines/`.

Every import counts, the lazy ones inside functions included, since they run too. Read with `ast`,
so nothing of the package is executed.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bmrl_bench"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: frozenset[str] = frozenset()) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved).

    `from pkg import module` names `pkg.module` only: the package's `__init__` runs first, but
    it is not what the importer depends on, and counting it would draw circles through every
    package that re-exports its own modules."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            name = ".".join(p for p in (base, node.module or "") if p)
            submodules = {f"{name}.{alias.name}" for alias in node.names} & modules
            found.update(submodules or {name})
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # `import a.b.c` of a module that does not exist (a name in it): point at the deepest that does.
        targets = set()
        for imported in imports_of(path, frozenset(modules)):
            parts = imported.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                targets.add(".".join(parts))
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_checker_finds_a_planted_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_circle() -> None:
    edges = graph()
    assert "bmrl_bench.builder" in edges and "bmrl_bench.data" in edges  # the graph was read
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_the_package_never_imports_baselines() -> None:
    offenders = sorted(
        module_name(p) for p in PACKAGE.rglob("*.py")
        if any(name == "baselines" or name.startswith("baselines.") for name in imports_of(p))
    )
    assert offenders == []

