"""The shape of the code, enforced (on the source, by AST): cpv_core is built in
floors, each importing only the floors below it; no module-level import cycle,
``TYPE_CHECKING`` imports included; the core never imports a backend's library;
plugins import only the declared plugin API; no private cross-calls."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "cpv_core"
FORBIDDEN = {"dvc", "git", "boto3", "botocore", "s3fs", "subprocess"}

#: the floors, bottom first; a module may import its own floor and the ones below.
#: "top" is the foundation every floor stands on (errors, the trust boundary,
#: file-writing primitives, crash points).
FLOORS = ["top", "domain", "plugin", "workspace", "ops", "api", "cli"]
TOP = {"cpv_core.errors", "cpv_core.trust", "cpv_core.paths", "cpv_core.faults", "cpv_core.bulk"}
#: modules that only re-export (the package root, the seeds' module, old paths)
FACADES = {"cpv_core", "cpv_core.checkpoints", "cpv_core.compat"}
#: kits for people outside: may use any floor, and no cpv module imports them
KITS = {"cpv_core.testing"}
#: names of the package root any floor may import (they are defined there, not re-exported)
ROOT_NAMES = {"hookimpl", "__version__"}
#: what a plugin may import from cpv_core: the plugin floor, the values it passes
#: around, the foundation, and the CLI helpers declared for plugins
PLUGIN_API = ("cpv_core.plugin", "cpv_core.domain", "cpv_core.cli.api", "cpv_core.compat", *sorted(TOP))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, *, module_level_only: bool) -> list[tuple[str, list[str], int]]:
    """``(absolute module, names, line)`` of the cpv imports in ``path``; with
    ``module_level_only``, imports inside functions (deliberately lazy) are left
    out but ``if TYPE_CHECKING:`` blocks count."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, [], child.lineno) for a in child.names if a.name.startswith("cpv_"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.startswith("cpv_"):
                    found.append((target, [a.name for a in child.names], child.lineno))
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def resolve(target: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """The modules an import binds: ``from pkg import mod`` names a module."""
    subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    return subs or [target]


def floor_of(module: str) -> str:
    if module in TOP:
        return "top"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FLOORS:
        return parts[1]
    raise AssertionError(f"{module} is on no floor: put it in one of {FLOORS[1:]} (or list it in TOP/FACADES)")


def test_every_core_module_is_on_a_floor():
    for module in core_modules():
        if module not in FACADES | KITS:
            floor_of(module)


def test_each_floor_imports_only_the_floors_below_it():
    modules = core_modules()
    offenders = []
    for module, path in modules.items():
        if module in FACADES | KITS:
            continue
        mine = FLOORS.index(floor_of(module))
        for target, names, line in imports(path, module_level_only=False):
            if not target.startswith("cpv_core"):
                offenders.append(f"{module}:{line} imports {target} (the core never imports a plugin)")
                continue
            if target == "cpv_core" and set(names) <= ROOT_NAMES:
                continue
            for dep in resolve(target, names, modules):
                if dep in FACADES | KITS:
                    offenders.append(f"{module}:{line} imports {dep} (a re-export); import the module itself")
                elif FLOORS.index(floor_of(dep)) > mine:
                    offenders.append(f"{module}:{line} ({floor_of(module)}) imports {dep} ({floor_of(dep)}), a floor above it")
    assert not offenders, "\n".join(offenders)


def test_domain_imports_nothing_but_the_foundation():
    for module, path in core_modules().items():
        if module.startswith("cpv_core.domain"):
            for target, _names, line in imports(path, module_level_only=False):
                assert target.startswith("cpv_core.domain") or target in TOP, f"{module}:{line} imports {target}"


def test_cpv_core_import_graph_has_no_cycle():
    """Module-level imports, ``TYPE_CHECKING`` ones included (a type-only cycle is
    still a knot a reader has to untie)."""
    modules = core_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges = set()
        for target, names, _ in imports(path, module_level_only=True):
            edges.update(d for d in resolve(target, names, modules) if d in modules and d != module)
        # a package's __init__ runs before its submodules: an edge into a package is
        # an edge into its __init__, which is what we already have
        graph[module] = edges
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
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_plugins_import_only_the_plugin_api():
    """A plugin (ours or the example's) stands on ``cpv_core.plugin``, the domain
    values, the foundation and ``cpv_core.cli.api``; never on the managers, the
    workspace or the operations."""
    offenders = []
    plugin_files = [*sorted((ROOT / "cpv_plugins").rglob("*.py")), *sorted((ROOT / "examples").rglob("cpv_dirstore/**/*.py"))]
    modules = core_modules()
    for path in plugin_files:
        for target, names, line in imports(path, module_level_only=False):
            if not target.startswith("cpv_core"):
                continue
            if target == "cpv_core" and set(names) <= ROOT_NAMES | {"ValidationError", "StorageError", "CPVError"}:
                continue
            for module in resolve(target, names, modules):  # `from cpv_core import bulk` is cpv_core.bulk
                if not any(module == api or module.startswith(api + ".") for api in PLUGIN_API):
                    offenders.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_plugin_packages_keep_to_their_seams():
    """git knows nothing of storage; a transport knows the format (``dvc.layout``,
    ``dvc.part_digests``) but never the engine; the engine never a particular store."""
    rules = {
        "cpv_plugins.git": ("cpv_plugins.dvc", "cpv_plugins.transports"),
        "cpv_plugins.transports": ("cpv_plugins.dvc.engine", "cpv_plugins.dvc.cache", "cpv_plugins.git"),
        "cpv_plugins.dvc": ("cpv_plugins.git", "cpv_plugins.transports.s3", "cpv_plugins.local", "cpv_plugins.dvc_s3"),
    }
    offenders = []
    for path in sorted((ROOT / "cpv_plugins").rglob("*.py")):
        module = module_name(path)
        for package, forbidden in rules.items():
            if module == package or module.startswith(package + "."):
                for target, _names, line in imports(path, module_level_only=False):
                    offenders += [f"{module}:{line} imports {target}" for f in forbidden if target == f or target.startswith(f + ".")]
    assert not offenders, "\n".join(offenders)


PACKAGES = [CORE, CORE.parent / "cpv_plugins"]
_OWN = {"self", "cls"}
_STDLIB_UNDERSCORED = {"os._exit"}


def test_no_module_reaches_into_another_modules_private_names():
    """What another module needs is public: no ``from x import _name``, and no
    ``obj._name`` on anything but ``self``/``cls``/``super()``."""
    offenders = []
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
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


def test_every_module_is_in_the_architecture_picture():
    """docs/architecture.md's module table names every module of cpv_core and
    cpv_plugins (a row's first cell: a full path, then names beside it in the same
    folder), and names none that is gone."""
    import re

    listed: set[str] = set()
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        if not line.startswith("| `cpv_"):
            continue
        folder = ""
        for name in re.findall(r"`([^`]+\.py)`", line.split("|")[1]):
            if "/" in name:
                folder = name.rsplit("/", 1)[0]
                listed.add(name)
            else:
                listed.add(f"{folder}/{name}")
    actual = {
        p.relative_to(ROOT).as_posix()
        for package in ("cpv_core", "cpv_plugins")
        for p in (ROOT / package).rglob("*.py")
        if p.name not in {"__init__.py", "__main__.py"}
    }
    assert not actual - listed, f"not in docs/architecture.md: {sorted(actual - listed)}"
    assert not listed - actual, f"docs/architecture.md names modules that do not exist: {sorted(listed - actual)}"


def test_every_old_module_path_is_the_module_at_its_new_path():
    """Paths before 0.4 keep importing (CHANGELOG.md), as the very module objects:
    monkeypatching an old path patches the code that runs."""
    import importlib

    import cpv_plugins  # registers the plugins' old paths
    from cpv_core.compat import MOVED

    assert cpv_plugins and len(MOVED) > 40
    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
        assert importlib.import_module(old).__spec__.name == new
