"""The package's module structure: imports form a DAG (the pipeline's stages in order), no private names cross modules.

Every import is counted, at module level or inside a function: an import
hidden in a function is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "archdsl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) for every import of an archdsl module in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names if alias.name.startswith("archdsl")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if not base.startswith("archdsl"):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # `from archdsl import syntax`: the submodule itself
                    found.append((submodule, "", node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
    return found


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for name, path in MODULES.items():
        g.add_node(name)
        for target, _, line in _imports(name, path):
            # the package root is the public facade that re-exports the API; nothing inside imports it
            if target != name and target != "archdsl":
                g.add_edge(name, target, line=line)
    return g


def test_the_walker_sees_function_level_and_relative_imports(tmp_path):
    """The walker finds imports inside functions, or it could not see the cycles this test exists for."""
    g = _graph()
    assert g.has_edge("archdsl.cli", "archdsl.api")  # module level
    assert g.has_edge("archdsl.cli", "archdsl.export")  # inside the `export` command's function
    assert g.has_edge("archdsl.ops", "archdsl.ops.layers")


def test_no_import_cycles():
    g = _graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    described = [
        " -> ".join(f"{u} (line {g.edges[u, v]['line']})" for u, v in nx.find_cycle(g.subgraph(c))) for c in cycles
    ]
    assert not cycles, "import cycles: " + "; ".join(described)


def test_nothing_imports_the_package_root():
    """Modules import each other, never ``archdsl`` itself (whose __init__ imports the whole API)."""
    offenders = [
        f"{name}:{line}"
        for name, path in MODULES.items()
        for target, _, line in _imports(name, path)
        if target == "archdsl" and name != "archdsl"
    ]
    assert not offenders


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_names_imported_from_another_module(name):
    private = [
        f"`{imported}` from {target} (line {line})"
        for target, imported, line in _imports(name, MODULES[name])
        if imported.startswith("_") and target != name
    ]
    assert not private, f"{name} imports private names: " + ", ".join(private)


def test_the_pipeline_stages_come_in_order():
    """A stage may use the ones before it, never one after it (parse -> ... -> compile -> render)."""
    order = [
        "archdsl.parse",
        "archdsl.loader",
        "archdsl.elaborate",
        "archdsl.validate",
        "archdsl.compile",
        "archdsl.pipeline",
        "archdsl.render",
        "archdsl.api",
    ]
    reach = {name: nx.descendants(_graph(), name) for name in order}
    for index, name in enumerate(order):
        later = [other for other in order[index + 1 :] if other in reach[name]]
        assert not later, f"{name} depends on the later stage(s) {later}"
