"""Storage backend ``dvc-gs`` and credential provider ``gcs``: DVC's format on
Google Cloud Storage.

The DVC remote of a team/model is ``gs://{bucket}/{team}/{model}``; the URL is
committed in ``.dvc/config``, so a plain ``dvc pull`` (with ``dvc-gs``) finds
it. The endpoint (an emulator or a private endpoint), project and the
credentials file's **path** go to ``.dvc/config.local``; cpv never stores key
material: it reads a service-account or authorized-user JSON by path, or uses
Application Default Credentials. Objects move through
:class:`cpv_plugins.transports.gcs.GcsTransport` on the shared DVC-format engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
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
from cpv_plugins.dvc import CACHE_COPY_KEY
from cpv_plugins.endpoints import tcp_reachable, validate_endpoint
from cpv_plugins.gcs_settings import LIST_PRICE_PER_GB_MONTH, GcsSettings

if TYPE_CHECKING:
    import click

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
KEYS = ("bucket", "endpoint_url", "credentials_path", "project")
INSTALL_FIX = "install the GCS client: pip install 'cpv[gcs]'"


def validate_bucket(bucket: Any) -> str:
    """``bucket`` if it is a valid GCS bucket name."""
    if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket) or ".." in bucket or bucket.startswith("goog"):
        raise ValidationError(
            f"bucket name {bucket!r} is not a valid GCS bucket name",
            fix="use 3-63 characters: lower-case letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        )
    return bucket


def credentials_file(value: str | None) -> str | None:
    """The absolute path of an existing credentials file (None stays None)."""
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise CredentialError(
            f"Google credentials file {path} does not exist",
            fix="download a service-account key (JSON) from the Google Cloud console, or give the path of another one",
        )
    return str(path)


def gcs_storage(ctx: BackendContext) -> StorageBackend:
    """The ``dvc-gs`` storage backend's factory: the engine and client are imported on first use."""
    try:
        from cpv_plugins.gcs_storage import GcsStorage
    except ImportError as exc:
        raise ConfigError(f"storage dvc-gs needs the Google Cloud Storage client ({exc.name} is not installed)", fix=INSTALL_FIX) from None
    return GcsStorage(ctx)


class GcsCredentials:
    """Credential provider ``gcs``: a bucket and, by path, a Google credentials file."""

    name = "gcs"

    def is_configured(self, config: Any) -> bool:
        return bool(config.get_config("gcs"))

    def setup(self, config: Any, **options: Any) -> dict[str, Any]:
        unknown = set(options) - set(KEYS)
        if unknown:
            raise ConfigError(f"unknown GCS option(s): {', '.join(sorted(unknown))}", fix=f"use {', '.join(KEYS)}")
        entries = {"bucket": validate_bucket(options.get("bucket"))}
        endpoint = validate_endpoint(options.get("endpoint_url") or None, "--gcs-endpoint http://127.0.0.1:4443")
        if endpoint:
            entries["endpoint_url"] = endpoint
        path = credentials_file(options.get("credentials_path"))
        if path:
            from cpv_plugins.gcs_settings import load_credentials_file

            load_credentials_file(Path(path))  # a malformed file is refused now, not at the first upload
            entries["credentials_path"] = path
        project = options.get("project")
        if project:
            if not _PROJECT_RE.fullmatch(project):
                raise ValidationError(f"project id {project!r} is not a valid Google Cloud project id", fix="e.g. my-ml-project")
            entries["project"] = project
        return entries

    def validate(self, config: Any) -> list[CheckResult]:
        s = GcsSettings(config.get_config("gcs"))
        checks: list[CheckResult] = []
        if s.endpoint_url:
            ok, detail = tcp_reachable(s.endpoint_url)
            checks.append(
                CheckResult("gcs.endpoint", ok, detail, None if ok else "start the server / check the network, or fix --gcs-endpoint")
            )
            if not ok:
                return checks
        try:
            from cpv_plugins.transports.gcs import preflight

            preflight(s, s.client())
        except ImportError as exc:
            return [*checks, CheckResult("gcs.client", False, f"{exc.name} is not installed", INSTALL_FIX)]
        except CredentialError as exc:
            return [*checks, CheckResult("gcs.credentials", False, exc.message, exc.fix)]
        except CPVError as exc:
            return [*checks, CheckResult("gcs.bucket", False, exc.message, exc.fix)]
        who = s.credentials_path or ("anonymous (emulator)" if s.endpoint_url else "Application Default Credentials")
        checks.append(CheckResult("gcs.credentials", True, f"GCS accepted {who}"))
        checks.append(CheckResult("gcs.bucket", True, f"bucket {s.bucket!r} exists on {s.where}"))
        return checks

    def environment(self, config: Any) -> dict[str, str]:
        return {}


@hookimpl
def cpv_enumerate_models(config: CPVConfig) -> list[tuple[str, str]]:
    """The ``{team}/{model}/`` prefixes of the bucket (storage ``dvc-gs``)."""
    if config.backend_name("storage") != "dvc-gs":
        return []
    from cpv_plugins.transports.gcs import list_model_prefixes

    return list_model_prefixes(GcsSettings(config.get_config("gcs")))


@hookimpl
def cpv_storage_backends() -> list[StorageBackendInfo]:
    """DVC's format on Google Cloud Storage."""
    return [
        StorageBackendInfo(
            "dvc-gs",
            gcs_storage,
            "DVC with a Google Cloud Storage remote gs://{bucket}/{team}/{model}",
            settings=(CACHE_COPY_KEY,),
            list_price_per_gb_month=LIST_PRICE_PER_GB_MONTH,
        )
    ]


@hookimpl
def cpv_credential_providers() -> list[CredentialProviderInfo]:
    """A GCS bucket, with credentials by path (or Application Default Credentials)."""
    return [
        CredentialProviderInfo(
            "gcs",
            GcsCredentials(),
            "Google Cloud Storage bucket + credentials file path",
            section="gcs",
            selects={"storage": "dvc-gs"},
            keys=KEYS,
        )
    ]


def _apply(config: Any, answers: Mapping[str, str]) -> list[str]:
    from cpv_core.plugin.credentials import setup_provider

    entries = setup_provider(config, "gcs", {k: v for k, v in answers.items() if v})
    where = f" at {entries['endpoint_url']}" if entries.get("endpoint_url") else ""
    who = entries.get("credentials_path") or ("anonymous" if entries.get("endpoint_url") else "Application Default Credentials")
    return [f"storage: GCS bucket {entries['bucket']}{where}, credentials: {who}"]


def _current(config: Any) -> dict[str, str]:
    section = config.get_config("gcs") or {}
    names = {"bucket": "bucket", "endpoint_url": "endpoint", "credentials_path": "credentials", "project": "project"}
    return {names[key]: str(section[key]) for key in KEYS if section.get(key)}


@hookimpl
def cpv_setup_choices() -> list[SetupChoice]:
    """``cpv setup --storage gcs --gcs-bucket B [--gcs-endpoint URL] [--gcs-credentials PATH]``."""
    return [
        SetupChoice(
            "storage",
            "gcs",
            "dvc-gs",
            "Google Cloud Storage (or an emulator), credentials by file path or Application Default Credentials",
            questions=(
                SetupQuestion(
                    "bucket", "GCS bucket (it must exist; objects go under {team}/{model}/)", None, lambda v, _: validate_bucket(v)
                ),
                SetupQuestion(
                    "endpoint",
                    "Endpoint URL (empty for Google itself)",
                    "",
                    lambda v, _: validate_endpoint(v or None, "http://127.0.0.1:4443") or "",
                ),
                SetupQuestion(
                    "credentials",
                    "Credentials file (service-account JSON; empty for Application Default Credentials)",
                    "",
                    lambda v, _: credentials_file(v) or "",
                    "cpv stores only this path, never the key",
                ),
            ),
            apply=lambda config, answers: _apply(
                config,
                {
                    "bucket": answers["bucket"],
                    "endpoint_url": answers.get("endpoint", ""),
                    "credentials_path": answers.get("credentials", ""),
                },
            ),
            current=_current,
            provider="gcs",
        )
    ]


@hookimpl
def cpv_register_commands(cli: click.Group) -> None:
    """``cpv gcs-config`` and ``cpv config gcs``."""
    import click

    from cpv_core.cli.api import Ctx, add_setup_commands, dry_run_option

    options = [
        click.option("--bucket", "-b", required=True, help="GCS bucket (it must exist)."),
        click.option("--endpoint-url", help="Endpoint (an emulator such as fake-gcs-server, or a private endpoint)."),
        click.option("--credentials-path", "-c", type=click.Path(dir_okay=False), help="Service-account or authorized-user JSON."),
        click.option("--project", help="Google Cloud project id."),
        dry_run_option,
    ]

    def configure(
        ctx: Ctx, bucket: str, endpoint_url: str | None, credentials_path: str | None, project: str | None, dry_run: bool = False
    ) -> None:
        from cpv_core.plugin.credentials import setup_provider

        config = CPVConfig()
        if dry_run:
            ctx.echo(
                f"[dry-run] would store in {config.config_path}: gcs = bucket {bucket}, endpoint {endpoint_url or 'Google'}, credentials {credentials_path or 'ADC'}"
            )
            return
        options = {"bucket": bucket, "endpoint_url": endpoint_url, "credentials_path": credentials_path, "project": project}
        entries = setup_provider(config, "gcs", {k: v for k, v in options.items() if v})
        ctx.echo(f"GCS configured: bucket {entries['bucket']}" + (f" at {entries['endpoint_url']}" if entries.get("endpoint_url") else ""))
        ctx.echo("new models now store their data on GCS (storage: dvc-gs); run `cpv validate` to check access")

    add_setup_commands(cli, "gcs", options, configure, "Configure Google Cloud Storage (bucket, credentials file by path).")
