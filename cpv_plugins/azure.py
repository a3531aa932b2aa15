"""Storage backend ``dvc-azure`` and credential provider ``azure``: DVC's format
on Azure Blob Storage.

The DVC remote of a team/model is ``azure://{container}/{team}/{model}``,
committed in ``.dvc/config`` so a plain ``dvc pull`` (with ``dvc-azure``) finds
it. cpv stores no secret: the connection string (or the account key / SAS
token that goes with an account URL) is read from an environment variable
whose *name* is configured as ``env:NAME``; with an account URL and no
variable, DefaultAzureCredential (``az login``, managed identity) is used.
Objects move through :class:`cpv_plugins.transports.azure.AzureTransport` on the
shared DVC-format engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cpv_core import hookimpl
from cpv_core.errors import ConfigError, CPVError, CredentialError, ValidationError
from cpv_core.plugin.config import CPVConfig
from cpv_core.plugin.protocols import (
    BackendContext,
    CheckResult,
    CredentialProviderInfo,
    SetupChoice,
    SetupQuestion,
    StorageBackend,
    StorageBackendInfo,
)
from cpv_plugins.azure_settings import LIST_PRICE_PER_GB_MONTH, AzureSettings
from cpv_plugins.dvc import CACHE_COPY_KEY
from cpv_plugins.endpoints import parse_env_reference, tcp_reachable, validate_endpoint

if TYPE_CHECKING:
    import click

_CONTAINER_RE = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
KEYS = ("container", "connection_string_env", "account_url", "credential_env")
INSTALL_FIX = "install the Azure client: pip install 'cpv[azure]'"


def validate_container(name: Any) -> str:
    """``name`` if it is a valid Azure container name."""
    if not isinstance(name, str) or not _CONTAINER_RE.fullmatch(name):
        raise ValidationError(
            f"container name {name!r} is not a valid Azure container name",
            fix="use 3-63 characters: lower-case letters, digits and single '-', starting and ending with a letter or digit",
        )
    return name


def azure_storage(ctx: BackendContext) -> StorageBackend:
    """The ``dvc-azure`` storage backend's factory: the engine and client are imported on first use."""
    try:
        from cpv_plugins.azure_storage import AzureStorage
    except ImportError as exc:
        raise ConfigError(f"storage dvc-azure needs the Azure Blob client ({exc.name} is not installed)", fix=INSTALL_FIX) from None
    return AzureStorage(ctx)


class AzureCredentials:
    """Credential provider ``azure``: a container, and secrets by environment-variable name."""

    name = "azure"

    def is_configured(self, config: Any) -> bool:
        return bool(config.get_config("azure"))

    def setup(self, config: Any, **options: Any) -> dict[str, Any]:
        unknown = set(options) - {"container", "connection_string", "account_url", "credential"}
        if unknown:
            raise ConfigError(
                f"unknown Azure option(s): {', '.join(sorted(unknown))}", fix="use container, connection_string, account_url, credential"
            )
        entries: dict[str, str | None] = {"container": validate_container(options.get("container"))}
        if options.get("connection_string"):
            if options.get("account_url"):
                raise ValidationError("give a connection string or an account URL, not both", fix="drop one of them")
            entries["connection_string_env"] = parse_env_reference(options["connection_string"], "Azure connection string")
        elif options.get("account_url"):
            entries["account_url"] = validate_endpoint(options["account_url"], "--azure-account-url https://ACCOUNT.blob.core.windows.net")
            if options.get("credential"):
                entries["credential_env"] = parse_env_reference(options["credential"], "Azure account key or SAS token")
        else:
            raise ValidationError(
                "Azure needs a connection string (env:NAME) or an account URL",
                fix="pass --azure-connection-string env:NAME, or --azure-account-url https://ACCOUNT.blob.core.windows.net",
            )
        return entries

    def validate(self, config: Any) -> list[CheckResult]:
        s = AzureSettings(config.get_config("azure"))
        checks: list[CheckResult] = []
        try:
            endpoint = s.endpoint()
        except CPVError as exc:
            return [CheckResult("azure.credentials", False, exc.message, exc.fix)]
        if endpoint:
            ok, detail = tcp_reachable(endpoint)
            checks.append(
                CheckResult("azure.endpoint", ok, detail, None if ok else "start the server / check the network, or fix the account URL")
            )
            if not ok:
                return checks
        try:
            from cpv_plugins.transports.azure import preflight

            preflight(s, s.client(retries=0))
        except ImportError as exc:
            return [*checks, CheckResult("azure.client", False, f"{exc.name} is not installed", INSTALL_FIX)]
        except (CredentialError, ConfigError) as exc:
            return [*checks, CheckResult("azure.credentials", False, exc.message, exc.fix)]
        except CPVError as exc:
            return [*checks, CheckResult("azure.container", False, exc.message, exc.fix)]
        checks.append(CheckResult("azure.credentials", True, f"Azure accepted the credentials at {s.where}"))
        checks.append(CheckResult("azure.container", True, f"container {s.container!r} exists"))
        return checks

    def environment(self, config: Any) -> dict[str, str]:
        return {}


@hookimpl
def cpv_enumerate_models(config: CPVConfig) -> list[tuple[str, str]]:
    """The ``{team}/{model}/`` prefixes of the container (storage ``dvc-azure``)."""
    if config.backend_name("storage") != "dvc-azure":
        return []
    from cpv_plugins.transports.azure import list_model_prefixes

    return list_model_prefixes(AzureSettings(config.get_config("azure")))


@hookimpl
def cpv_storage_backends() -> list[StorageBackendInfo]:
    """DVC's format on Azure Blob Storage."""
    return [
        StorageBackendInfo(
            "dvc-azure",
            azure_storage,
            "DVC with an Azure Blob remote azure://{container}/{team}/{model}",
            settings=(CACHE_COPY_KEY,),
            list_price_per_gb_month=LIST_PRICE_PER_GB_MONTH,
        )
    ]


@hookimpl
def cpv_credential_providers() -> list[CredentialProviderInfo]:
    """An Azure container, secrets named by environment variable."""
    return [
        CredentialProviderInfo(
            "azure",
            AzureCredentials(),
            "Azure Blob container + secrets by environment-variable name",
            section="azure",
            selects={"storage": "dvc-azure"},
            keys=KEYS,
        )
    ]


def _apply(config: Any, answers: Mapping[str, str]) -> list[str]:
    from cpv_core.plugin.credentials import setup_provider

    entries = setup_provider(config, "azure", {k: v for k, v in answers.items() if v})
    how = (
        f"connection string from ${entries['connection_string_env']}"
        if entries.get("connection_string_env")
        else entries.get("account_url")
    )
    return [f"storage: Azure container {entries['container']}, {how}"]


def _current(config: Any) -> dict[str, str]:
    section = config.get_config("azure") or {}
    current = {"container": str(section["container"])} if section.get("container") else {}
    if section.get("connection_string_env"):
        current["connection_string"] = f"env:{section['connection_string_env']}"
    if section.get("account_url"):
        current["account_url"] = str(section["account_url"])
    if section.get("credential_env"):
        current["credential"] = f"env:{section['credential_env']}"
    return current


def _env_reference_or_empty(value: str, what: str) -> str:
    return f"env:{parse_env_reference(value, what)}" if value else ""


@hookimpl
def cpv_setup_choices() -> list[SetupChoice]:
    """``cpv setup --storage azure --azure-container C --azure-connection-string env:NAME``
    (or ``--azure-account-url URL [--azure-credential env:NAME]``)."""
    return [
        SetupChoice(
            "storage",
            "azure",
            "dvc-azure",
            "Azure Blob Storage (or Azurite), secrets read from environment variables",
            questions=(
                SetupQuestion(
                    "container", "Container (it must exist; objects go under {team}/{model}/)", None, lambda v, _: validate_container(v)
                ),
                SetupQuestion(
                    "connection_string",
                    "Connection string, as env:NAME of the variable holding it (empty to give an account URL)",
                    "",
                    lambda v, _: _env_reference_or_empty(v, "Azure connection string"),
                    "cpv stores only the variable's name, never the value",
                ),
                SetupQuestion(
                    "account_url",
                    "Account URL (https://ACCOUNT.blob.core.windows.net; empty with a connection string)",
                    "",
                    lambda v, _: validate_endpoint(v or None, "https://ACCOUNT.blob.core.windows.net") or "",
                ),
                SetupQuestion(
                    "credential",
                    "Account key or SAS token as env:NAME (empty: DefaultAzureCredential / az login)",
                    "",
                    lambda v, _: _env_reference_or_empty(v, "Azure account key or SAS token"),
                ),
            ),
            apply=_apply,
            current=_current,
            provider="azure",
        )
    ]


@hookimpl
def cpv_register_commands(cli: click.Group) -> None:
    """``cpv azure-config`` and ``cpv config azure``."""
    import click

    from cpv_core.cli.api import Ctx, add_setup_commands, dry_run_option

    options = [
        click.option("--container", required=True, help="Blob container (it must exist)."),
        click.option("--connection-string", help="env:NAME of the variable holding the connection string."),
        click.option("--account-url", help="https://ACCOUNT.blob.core.windows.net (instead of a connection string)."),
        click.option("--credential", help="env:NAME of the variable holding an account key or SAS token (with --account-url)."),
        dry_run_option,
    ]

    def configure(
        ctx: Ctx, container: str, connection_string: str | None, account_url: str | None, credential: str | None, dry_run: bool = False
    ) -> None:
        from cpv_core.plugin.credentials import setup_provider

        config = CPVConfig()
        if dry_run:
            ctx.echo(f"[dry-run] would store in {config.config_path}: azure = container {container}, {connection_string or account_url}")
            return
        options = {"container": container, "connection_string": connection_string, "account_url": account_url, "credential": credential}
        entries = setup_provider(config, "azure", {k: v for k, v in options.items() if v})
        ctx.echo(f"Azure configured: container {entries['container']}")
        ctx.echo("new models now store their data on Azure Blob (storage: dvc-azure); run `cpv validate` to check access")

    add_setup_commands(cli, "azure", options, configure, "Configure Azure Blob Storage (container; secrets by env:NAME).")
