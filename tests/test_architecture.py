"""The shape of the code, enforced: cpv_core's import graph has no cycle, and
the core never imports a backend's library (checked on the source, by AST)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "cpv_core"
FORBIDDEN = {"dvc", "git", "boto3", "botocore", "s3fs", "subprocess"}


def _runtime_imports(tree: ast.AST) -> list[tuple[str, int, list[str]]]:
    """``(module, level, names)`` of every import that runs (``if TYPE_CHECKING:`` blocks excluded)."""
    found: list[tuple[str, int, list[str]]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, 0, []) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append((child.module or "", child.level, [a.name for a in child.names]))
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in CORE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in CORE.glob("*.py"):
        edges = set()
        for module, level, names in _runtime_imports(ast.parse(path.read_text())):
            if level == 0 and not module.startswith("cpv_core"):
                continue
            target = module.removeprefix("cpv_core").lstrip(".") if level == 0 else module
            if target:
                edges.add(target.split(".")[0])
            else:  # "from . import x": x is a module, or a name from the package (__init__)
                edges.update(n if n in modules else "__init__" for n in names)
        graph[path.stem] = edges - {path.stem}
    return graph


def test_cpv_core_import_graph_has_no_cycle():
    graph = _graph()
    assert "config" in graph and graph["config"] <= {"backends", "errors", "paths", "credentials"}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle in cpv_core: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)


def test_cpv_core_never_imports_a_backend_library():
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


PACKAGES = [CORE, CORE.parent / "cpv_plugins"]
_OWN = {"self", "cls"}
_STDLIB_UNDERSCORED = {"os._exit"}


def test_no_module_reaches_into_another_modules_private_names():
    """What another module needs is public: no ``from x import _name``, and no
    ``obj._name`` on anything but ``self``/``cls``/``super()``."""
    offenders = []
    for package in PACKAGES:
        for path in sorted(package.glob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    offenders += [
                        f"{path.name}:{node.lineno} imports {a.name}"
                        for a in node.names
                        if a.name.startswith("_") and a.name != "__version__"
                    ]
                elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                    owner = node.value
                    if isinstance(owner, ast.Name) and owner.id in _OWN:
                        continue
                    if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                        continue
                    if ast.unparse(node) in _STDLIB_UNDERSCORED:
                        continue
                    offenders.append(f"{path.name}:{node.lineno} uses {ast.unparse(node)}")
    assert not offenders, offenders
