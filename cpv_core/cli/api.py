"""What a plugin may use to add commands to ``cpv`` (``cpv_register_commands``).

Declared stable: these names keep their meaning across minor versions
(docs/plugins.md). Everything else in :mod:`cpv_core.cli` is private to the
command line and may change.

* :class:`Ctx` - the object every command gets (``@click.pass_obj``): ``echo``,
  ``verbose``, ``quiet``;
* :func:`target_options` - ``-t/--team-name``, ``-m/--model-name``,
  ``-r/--repo-path`` (the workspace you are in by default), resolved by
  :func:`resolve_target`;
* :data:`dry_run_option`, :data:`json_option`, :func:`emit_json` - the flags
  and the JSON output every command shares;
* :func:`add_setup_commands` - a backend's ``<name>-config`` group (``setup``,
  ``validate``);
* :class:`Workspace`, :func:`published_versions`, :func:`stage_holders` - a
  listener plugin's catch-up command (e.g. ``cpv mlflow-sync``) reads what the
  remote holds through these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cpv_core.cli.options import Ctx, add_setup_commands, dry_run_option, json_option, resolve_target, target_options
from cpv_core.cli.output import emit_json

if TYPE_CHECKING:
    from cpv_core.workspace.announce import published_versions, stage_holders
    from cpv_core.workspace.workspace import Workspace

#: names loaded when first used: the workspace and its backends are not needed for `cpv --help`
_LAZY = {
    "Workspace": "cpv_core.workspace.workspace",
    "published_versions": "cpv_core.workspace.announce",
    "stage_holders": "cpv_core.workspace.announce",
}

__all__ = [
    "Ctx",
    "Workspace",
    "add_setup_commands",
    "dry_run_option",
    "emit_json",
    "json_option",
    "published_versions",
    "resolve_target",
    "stage_holders",
    "target_options",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cpv_core.cli.api' has no attribute {name!r}")
