"""The package's layers as a contract: each layer imports only from itself and those below.

Layers, lowest first (README, "Layout"):

    core < server < frames < sim | monitor < dashboard < bench < cli

``sim`` and ``monitor`` are siblings: neither imports the other. The check
reads every import statement of the package (also those inside functions,
which run later but still tie two modules together); imports under
``if TYPE_CHECKING:`` are annotations only and are not counted. A static
check in the spirit of import-linter's layers contract, written here because
the wheel maps ``dashboard/`` into the package, a layout import-linter's
graph builder does not follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "botrix_toolkit"
# package folder -> where it lives in the repository
SOURCES = {PACKAGE: REPO / "botrix_toolkit", f"{PACKAGE}.dashboard": REPO / "dashboard"}

LAYER_RANKS = {
    "core": 0,
    "server": 1,
    "frames": 2,
    "sim": 3,
    "monitor": 3,
    "dashboard": 4,
    "bench": 5,
    "cli": 6,
}
# The one upward dependency, by design: QueueService's frame methods
# (q.pending_jobs_frame() in a notebook) import the frames layer when called,
# so a worker that never asks for a frame never loads pandas.
ALLOWED_UPWARD = {("botrix_toolkit.core.queue", "botrix_toolkit.frames.job_frames")}


def _modules() -> Iterator[tuple[str, Path]]:
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            if ".venv" in path.parts:
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str, path: Path) -> Iterator[tuple[str, bool]]:
    """(imported module, at module level) for each import of ``module``, resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"

    def visit(node: ast.AST, top_level: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking_block(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, top_level
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".")
                    base = base[: len(base) - child.level + (1 if is_package else 0)]
                    target = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    target = child.module or ""
                for alias in child.names:
                    # `from package import module` imports the module itself
                    yield f"{target}.{alias.name}", top_level
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from visit(child, top_level and not nested)

    yield from visit(tree, True)


MODULES = dict(_modules())


def _known(name: str) -> str | None:
    """The package module ``name`` refers to (a module, or the module an attribute is taken from)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYER_RANKS else None


def test_every_module_is_in_a_layer() -> None:
    stray = [m for m in MODULES if m != PACKAGE and _layer(m) is None]
    assert not stray, f"modules outside the layers {sorted(LAYER_RANKS)}: {stray}"


def test_layers_import_only_downward() -> None:
    violations = []
    for module, path in MODULES.items():
        source_layer = _layer(module)
        if source_layer is None:
            continue  # the package root re-exports names from every layer
        for imported, _ in _imports(module, path):
            target = _known(imported)
            target_layer = _layer(target) if target else None
            if target_layer is None or target_layer == source_layer:
                continue
            if (module, target) in ALLOWED_UPWARD:
                continue
            if LAYER_RANKS[target_layer] >= LAYER_RANKS[source_layer]:
                violations.append(f"{module} ({source_layer}) imports {target} ({target_layer})")
    assert not violations, "\n".join(violations)


def test_no_import_cycles_at_module_level() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module, path in MODULES.items():
        for imported, top_level in _imports(module, path):
            target = _known(imported)
            if top_level and target and target != module:
                graph[module].add(target)
    cycles = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("source, target", sorted(ALLOWED_UPWARD))
def test_the_allowed_upward_import_is_inside_a_function(source: str, target: str) -> None:
    found = [(imported, top) for imported, top in _imports(source, MODULES[source]) if _known(imported) == target]
    assert found, f"{source} no longer imports {target}: drop it from ALLOWED_UPWARD"
    assert not any(top for _, top in found), f"{source} imports {target} at module level"


def test_the_contract_sees_a_violation() -> None:
    # the checker itself: a core module importing the frames layer is caught
    module = "botrix_toolkit.core.keys"
    fake = REPO / "tests" / "_layer_probe.py"
    fake.write_text("from botrix_toolkit.frames import analysis\n", encoding="utf-8")
    try:
        imported = [_known(name) for name, _ in _imports(module, fake)]
    finally:
        fake.unlink()
    assert imported == ["botrix_toolkit.frames.analysis"]
    assert LAYER_RANKS[_layer(imported[0]) or ""] > LAYER_RANKS[_layer(module) or ""]
