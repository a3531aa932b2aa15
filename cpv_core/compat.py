"""Old import paths keep working.

Before 0.4 every core module sat directly in ``cpv_core/``; they now live on
floors (``domain``, ``plugin``, ``workspace``, ``ops``, ``api``, ``cli``; see
docs/architecture.md). ``import cpv_core.backends`` and friends still work:
the finder below answers an old name with the very module object at its new
path (not a copy; the import protocol is duck-typed, so ``importlib.abc``, 10 ms
at start-up, is not imported), so ``monkeypatch.setattr("cpv_core.transfer.x", ...)`` and
``isinstance`` checks behave exactly as before. New code should import the new
paths; mypy sees only those.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import importlib.abc

#: old module name -> where the module lives now
MOVED: dict[str, str] = {
    "cpv_core.versions": "cpv_core.domain.versions",
    "cpv_core.names": "cpv_core.domain.names",
    "cpv_core.metrics": "cpv_core.domain.metrics",
    "cpv_core.records": "cpv_core.domain.records",
    "cpv_core.stage_rules": "cpv_core.domain.stage_rules",
    "cpv_core.kinds": "cpv_core.domain.kinds",
    "cpv_core.artifacts": "cpv_core.domain.artifacts",
    "cpv_core.cost": "cpv_core.domain.cost",
    "cpv_core.backoff": "cpv_core.domain.backoff",
    "cpv_core.backends": "cpv_core.plugin.protocols",
    "cpv_core.bases": "cpv_core.plugin.bases",
    "cpv_core.hookspecs": "cpv_core.plugin.hookspecs",
    "cpv_core.plugins": "cpv_core.plugin.manager",
    "cpv_core.entry_points": "cpv_core.plugin.entry_points",
    "cpv_core.settings": "cpv_core.plugin.settings",
    "cpv_core.credentials": "cpv_core.plugin.credentials",
    "cpv_core.events": "cpv_core.plugin.events",
    "cpv_core.config": "cpv_core.plugin.config",
    "cpv_core.sources": "cpv_core.plugin.sources",
    "cpv_core.history": "cpv_core.workspace.history",
    "cpv_core.gc_fence": "cpv_core.workspace.gc_fence",
    "cpv_core.run_folders": "cpv_core.workspace.run_folders",
    "cpv_core.manager": "cpv_core.api.checkpoint_manager",
    "cpv_core.transfer": "cpv_core.ops.transfer",
    "cpv_core.tagging": "cpv_core.ops.tagging",
    "cpv_core.revert": "cpv_core.ops.revert",
    "cpv_core.inspection": "cpv_core.ops.inspection",
    "cpv_core.pull": "cpv_core.ops.pull",
    "cpv_core.stages": "cpv_core.ops.stages",
    "cpv_core.status": "cpv_core.ops.status",
    "cpv_core.retention": "cpv_core.ops.retention",
    "cpv_core.registry": "cpv_core.ops.registry",
    "cpv_core.report": "cpv_core.ops.report",
    "cpv_core.workspace_setup": "cpv_core.ops.init",
    "cpv_core.tensor_diff": "cpv_core.ops.tensor_diff",
    "cpv_core.progress": "cpv_core.plugin.progress",
    "cpv_core.model_data": "cpv_core.api.model_data",
    "cpv_core.combined": "cpv_core.api.combined",
    "cpv_core.checkpointer": "cpv_core.api.checkpointer",
    "cpv_core.integrations": "cpv_core.api.integrations",
    "cpv_core.quickstart": "cpv_core.cli.quickstart",
    "cpv_core.setup_command": "cpv_core.cli.setup_command",
    "cpv_core.setup_wizard": "cpv_core.cli.setup_wizard",
    "cpv_core.terminal": "cpv_core.cli.terminal",
}


class MovedModuleLoader:
    """Loads an old name as the module at its new path."""

    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self.own_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new_name)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new path is already executed. The
        import system has just given it the old name's spec; it gets its own back
        (so ``__spec__.name`` stays the new path, as ``importlib.reload`` needs)."""
        module.__spec__ = self.own_spec


class MovedModuleFinder:
    """Finds the old names listed in :data:`MOVED`, and nothing else."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new_name = MOVED.get(fullname)
        if new_name is None:
            return None
        loader = cast("importlib.abc.Loader", MovedModuleLoader(new_name))  # the protocol, duck-typed
        return importlib.machinery.ModuleSpec(fullname, loader)


def register(moved: dict[str, str]) -> None:
    """Answer more old names (a plugin package that moved its own modules), and
    make sure the finder is installed."""
    MOVED.update(moved)
    install()


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
