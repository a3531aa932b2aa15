"""The ``cpv`` command line (click), one module per area.

``root`` holds the group and ``main``; ``options`` and ``output`` what every
command shares; ``workspace_commands``, ``kind_commands``, ``stage_commands``,
``checkpoint_commands``, ``maintenance`` and ``config_commands`` the commands;
``api`` what plugins may use (declared stable, docs/plugins.md).

Importing this package must stay cheap: no dvc, boto3, s3fs or git here; the
managers load backends, and backends load their libraries, on first use.
"""

from cpv_core.cli.api import Ctx, add_setup_commands, dry_run_option, emit_json, json_option, resolve_target, target_options
from cpv_core.cli.root import cli, main

__all__ = ["Ctx", "add_setup_commands", "cli", "dry_run_option", "emit_json", "json_option", "main", "resolve_target", "target_options"]
