"""Storage backend ``dvc-s3`` and credential provider ``aws``.

The DVC remote of a team/model is ``s3://{bucket}/{team}/{model}``; the URL is
committed in ``.dvc/config`` (it is the same for every team member). The
endpoint, region, AWS profile and credentials-file **path** go to
``.dvc/config.local`` (ignored by git), so a plain ``dvc pull`` finds the
bucket; key values are never written anywhere by cpv: boto3 (and DVC, for a
DVC user) read them from the credentials file by reference.

The storage engine is :class:`DvcStorage`; every S3 call goes through one
route, :class:`cpv_plugins.transports.s3.S3Transport` (boto3). This module
holds what is specific to AWS configuration: the credential provider and the
``aws-config`` commands.
"""

from __future__ import annotations

import configparser
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cpv_core import hookimpl

if TYPE_CHECKING:
    import click
from cpv_core.domain.checks import matching
from cpv_core.errors import ConfigError, CredentialError, ValidationError
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
from cpv_core.trust import open_regular
from cpv_plugins.dvc import CACHE_COPY_KEY
from cpv_plugins.s3_settings import DEFAULT_BUCKET, DEFAULT_REGION, S3Settings

logger = logging.getLogger("cpv")

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$|^[a-z0-9-]{2,32}$")
_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.@+=-]{1,64}$")
MAX_CREDENTIALS_BYTES = 1024 * 1024


def _validate_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValidationError(
            f"bucket name {bucket!r} is not a valid S3 bucket name", fix="use 3-63 characters: lower-case letters, digits, '.' and '-'"
        )
    return bucket


def _validate_endpoint(url: str | None) -> str | None:
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname or parsed.username or parsed.password:
        raise ValidationError(
            f"endpoint URL {url!r} is not an http(s) URL without credentials",
            fix="pass e.g. --endpoint-url http://127.0.0.1:8333 or https://s3.example.com",
        )
    return url.rstrip("/")


def _read_profile(path: Path, profile: str) -> dict[str, str]:
    parser = configparser.RawConfigParser()
    try:
        with open_regular(path) as handle:  # a FIFO or /dev/zero would hang or never end
            raw = handle.read(MAX_CREDENTIALS_BYTES + 1)
        if len(raw) > MAX_CREDENTIALS_BYTES:
            raise CredentialError(
                f"AWS credentials file {path} is larger than {MAX_CREDENTIALS_BYTES // 1024} KiB",
                fix="pass the path of an AWS credentials file (INI with [profile] sections)",
            )
        parser.read_string(raw.decode("utf-8"))
    except ValidationError:
        raise CredentialError(
            f"AWS credentials file {path} is not a regular file",
            fix="pass the path of an AWS credentials file (INI with [profile] sections)",
        ) from None
    except FileNotFoundError:
        raise CredentialError(
            f"AWS credentials file {path} does not exist", fix="create it (aws configure) or pass the right --credential-path"
        ) from None
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        raise CredentialError(
            f"AWS credentials file {path} is unreadable: {type(exc).__name__}", fix="check its permissions and INI syntax"
        ) from None
    if not parser.has_section(profile):
        profiles = ", ".join(parser.sections()) or "none"
        raise CredentialError(
            f"profile {profile!r} is not in {path} (profiles there: {profiles})",
            fix="pass --profile with one of those, or add the profile to the file",
        )
    return dict(parser.items(profile))


# --------------------------------------------------------------------------
# storage backend
# --------------------------------------------------------------------------


def s3_storage(ctx: BackendContext) -> StorageBackend:
    """The ``dvc-s3`` storage backend's factory: the engine is imported on first use."""
    from cpv_plugins.s3_storage import S3Storage

    return S3Storage(ctx)


# --------------------------------------------------------------------------
# credential provider
# --------------------------------------------------------------------------


class AwsCredentials:
    """Credential provider ``aws``: an AWS credentials file and profile, by reference."""

    name = "aws"

    def is_configured(self, config: Any) -> bool:
        return bool(config.get_config("aws"))

    def setup(self, config: Any, **options: Any) -> dict[str, Any]:
        path = options.get("credential_path")
        profile = options.get("aws_profile") or options.get("profile") or "default"
        if not isinstance(profile, str) or not _PROFILE_RE.fullmatch(profile):
            raise ValidationError(f"AWS profile name {profile!r} is not valid", fix="use letters, digits and _ . @ + = -")
        cred_path = Path(path).expanduser().resolve() if path else Path.home() / ".aws" / "credentials"
        fields = _read_profile(cred_path, profile)
        if not fields.get("aws_access_key_id") or not fields.get("aws_secret_access_key"):
            raise CredentialError(
                f"profile {profile!r} in {cred_path} has no aws_access_key_id/aws_secret_access_key", fix="add both keys to that profile"
            )
        bucket = options.get("bucket") or config.get_config("aws.bucket")
        if not bucket:  # the seeds' `cpv aws-config` took no bucket: theirs stays the fallback, said aloud
            bucket = DEFAULT_BUCKET
            logger.warning("no bucket given: using %s (the original design's bucket); pass --bucket NAME for your own", bucket)
        bucket = _validate_bucket(bucket)
        endpoint = _validate_endpoint(options.get("endpoint_url"))
        region = options.get("region") or DEFAULT_REGION
        if not _REGION_RE.fullmatch(region):
            raise ValidationError(f"region {region!r} is not a valid region name", fix="e.g. us-east-1")
        unknown = set(options) - {"credential_path", "aws_profile", "profile", "bucket", "endpoint_url", "region"}
        if unknown:
            raise ConfigError(
                f"unknown AWS option(s): {', '.join(sorted(unknown))}", fix="use credential_path, aws_profile, bucket, endpoint_url, region"
            )
        entries = {"credential_path": str(cred_path), "profile": profile, "bucket": bucket, "region": region}
        if endpoint:
            entries["endpoint_url"] = endpoint
        return entries

    def validate(self, config: Any) -> list[CheckResult]:
        s = S3Settings(config.get_config("aws"))
        checks: list[CheckResult] = []
        path = Path(s.credential_path) if s.credential_path else Path.home() / ".aws" / "credentials"
        try:
            fields = _read_profile(path, s.profile)
            has_keys = bool(fields.get("aws_access_key_id") and fields.get("aws_secret_access_key"))
            checks.append(CheckResult("aws.credentials_file", True, f"{path} is readable and has profile {s.profile!r}"))
            checks.append(
                CheckResult(
                    "aws.keys",
                    has_keys,
                    f"profile {s.profile!r} " + ("has a key pair" if has_keys else "has no aws_access_key_id/aws_secret_access_key"),
                    None if has_keys else f"add both keys to [{s.profile}] in {path}",
                )
            )
        except CredentialError as exc:
            name = "aws.profile" if "is not in" in exc.message else "aws.credentials_file"
            return [CheckResult(name, False, exc.message, exc.fix)]
        if not checks[-1].ok:
            return checks
        from cpv_plugins.transports.s3 import endpoint_reachable

        ok, detail = endpoint_reachable(s)
        checks.append(
            CheckResult("aws.endpoint", ok, detail, None if ok else "start the server / check the network, or fix --endpoint-url")
        )
        if not ok:
            return checks
        try:
            s.client().list_objects_v2(Bucket=s.bucket, MaxKeys=1)
            checks.append(CheckResult("aws.credentials", True, f"S3 accepted profile {s.profile!r}"))
            checks.append(CheckResult("aws.bucket", True, f"bucket {s.bucket!r} exists on {s.where}"))
        except Exception as exc:  # noqa: BLE001
            from cpv_plugins.transports.s3 import classify_s3_error

            err = classify_s3_error(exc, s, "list objects")
            if isinstance(err, CredentialError):
                checks.append(CheckResult("aws.credentials", False, err.message, err.fix))
            else:
                checks.append(CheckResult("aws.credentials", True, f"S3 accepted profile {s.profile!r}"))
                checks.append(CheckResult("aws.bucket", False, err.message, err.fix))
        return checks

    def environment(self, config: Any) -> dict[str, str]:
        s = S3Settings(config.get_config("aws"))
        env = {"AWS_PROFILE": s.profile, "AWS_DEFAULT_REGION": s.region}
        if s.credential_path:
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(s.credential_path)
        if s.endpoint_url:
            env["AWS_ENDPOINT_URL_S3"] = s.endpoint_url
        return env


@hookimpl
def cpv_enumerate_models(config: CPVConfig) -> list[tuple[str, str]]:
    """The ``{team}/{model}/`` prefixes of the bucket (storage ``dvc-s3``): two listings by delimiter."""
    if config.backend_name("storage") != "dvc-s3":
        return []
    from cpv_plugins.transports.s3 import list_model_prefixes

    return list_model_prefixes(S3Settings(config.get_config("aws")))


@hookimpl
def cpv_storage_backends() -> list[StorageBackendInfo]:
    """The DVC-on-S3 storage backend."""
    return [StorageBackendInfo("dvc-s3", s3_storage, "DVC with an S3 remote s3://{bucket}/{team}/{model}", settings=(CACHE_COPY_KEY,))]


@hookimpl
def cpv_credential_providers() -> list[CredentialProviderInfo]:
    """AWS credentials by reference to a credentials file and profile."""
    return [
        CredentialProviderInfo(
            "aws",
            AwsCredentials(),
            "AWS credentials file + profile (paths and names only)",
            section="aws",
            selects={"storage": "dvc-s3"},
            keys=("credential_path", "profile", "bucket", "endpoint_url", "region"),
        )
    ]


@hookimpl
def cpv_register_commands(cli: click.Group) -> None:
    """``cpv aws-config`` and ``cpv config aws``: S3 access by reference to a credentials file."""
    import click

    from cpv_core.cli.api import Ctx, add_setup_commands, dry_run_option

    options = [
        click.option("--credential-path", "-c", type=click.Path(dir_okay=False), help="AWS credentials file (default ~/.aws/credentials)."),
        click.option("--profile", "-p", default="default", show_default=True, help="Profile in that file."),
        click.option("--bucket", "-b", help="S3 bucket (default: the one configured already)."),
        click.option("--endpoint-url", help="S3-compatible endpoint (SeaweedFS, MinIO, Ceph ...)."),
        click.option("--region", help=f"Region (default {DEFAULT_REGION})."),
        dry_run_option,
    ]

    def configure(
        ctx: Ctx,
        credential_path: str | None,
        profile: str,
        bucket: str | None,
        endpoint_url: str | None,
        region: str | None,
        dry_run: bool = False,
    ) -> None:
        from cpv_core.plugin.config import CPVConfig

        if dry_run:
            ctx.echo(
                f"[dry-run] would store in {CPVConfig().config_path}: aws = credentials file "
                f"{credential_path or '~/.aws/credentials'}, profile {profile}, bucket {bucket or CPVConfig().get_config('aws.bucket') or DEFAULT_BUCKET}, "
                f"endpoint {endpoint_url or 'AWS'}, region {region or DEFAULT_REGION}"
            )
            return
        entries = CPVConfig().setup_aws_profile(
            credential_path=credential_path, aws_profile=profile, bucket=bucket, endpoint_url=endpoint_url, region=region
        )
        ctx.echo(
            f"AWS configured: profile {entries['profile']} in {entries['credential_path']}, bucket {entries['bucket']}"
            + (f" at {entries['endpoint_url']}" if entries.get("endpoint_url") else "")
        )
        ctx.echo("new models now store their data on S3 (storage: dvc-s3); run `cpv validate` to check access")

    add_setup_commands(cli, "aws", options, configure, "Configure S3 access by reference to an AWS credentials file and profile.")


# --------------------------------------------------------------------------
# cpv setup
# --------------------------------------------------------------------------


def _credentials_file(value: str, answers: Mapping[str, str]) -> str:
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise CredentialError(f"AWS credentials file {path} does not exist", fix="create it with `aws configure`, or give another path")
    return str(path)


def _profile(value: str, answers: Mapping[str, str]) -> str:
    if not _PROFILE_RE.fullmatch(value):
        raise ValidationError(f"AWS profile name {value!r} is not valid", fix="use letters, digits and _ . @ + = -")
    fields = _read_profile(Path(answers["credential_path"]), value)
    if not fields.get("aws_access_key_id") or not fields.get("aws_secret_access_key"):
        raise CredentialError(
            f"profile {value!r} has no aws_access_key_id/aws_secret_access_key", fix="add both keys, or pick another profile"
        )
    return value


def _apply(config: Any, answers: Mapping[str, str]) -> list[str]:
    entries = config.setup_aws_profile(
        credential_path=answers["credential_path"],
        aws_profile=answers["profile"],
        bucket=answers["bucket"],
        endpoint_url=answers.get("endpoint_url") or None,
        region=answers["region"],
    )
    where = f" at {entries['endpoint_url']}" if entries.get("endpoint_url") else ""
    return [f"storage: S3 bucket {entries['bucket']}{where}, profile {entries['profile']} in {entries['credential_path']}"]


def _current(config: Any) -> dict[str, str]:
    section = config.get_config("aws") or {}
    keys = ("credential_path", "profile", "bucket", "endpoint_url", "region")
    return {key: str(section[key]) for key in keys if section.get(key)}


@hookimpl
def cpv_setup_choices() -> list[SetupChoice]:
    """``cpv setup``: S3 (AWS or any S3-compatible server), by reference to a credentials file."""
    return [
        SetupChoice(
            "storage",
            "s3",
            "dvc-s3",
            "S3: AWS or an S3-compatible server (SeaweedFS, MinIO, Ceph), keys read from a credentials file",
            questions=(
                SetupQuestion(
                    "credential_path",
                    "AWS credentials file",
                    str(Path("~/.aws/credentials")),
                    _credentials_file,
                    "cpv stores only this path, never the keys",
                ),
                SetupQuestion("profile", "Profile in that file", "default", _profile),
                SetupQuestion(
                    "bucket", "S3 bucket (it must exist; objects go under {team}/{model}/)", None, lambda value, _: _validate_bucket(value)
                ),
                SetupQuestion(
                    "endpoint_url",
                    "Endpoint URL (empty for AWS itself)",
                    "",
                    lambda value, _: _validate_endpoint(value or None) or "",
                ),
                SetupQuestion("region", "Region", DEFAULT_REGION, matching(_REGION_RE, "region", "e.g. us-east-1")),
            ),
            apply=_apply,
            current=_current,
            provider="aws",
        )
    ]
