"""Storage backend ``dvc-s3`` and credential provider ``aws``.

The DVC remote of a team/model is ``s3://{bucket}/{team}/{model}``; the URL is
committed in ``.dvc/config`` (it is the same for every team member). The
endpoint, region, AWS profile and credentials-file **path** go to
``.dvc/config.local`` (ignored by git); key values are never written anywhere
by cpv: DVC and boto3 read them from the credentials file by reference.

Every S3 call goes through boto3: uploads and downloads with its transfer
manager, to exactly the keys DVC uses (the bucket stays a plain DVC remote:
`dvc pull` works on it, tested), verification and manifests through the
hooks of :class:`DvcStorage`, and fast pre-flight checks (is the endpoint
reachable, are the credentials accepted, does the bucket exist) with short
timeouts and no retry storms, so a wrong secret, a missing bucket or a
stopped server is reported in seconds with the exact fix. DVC itself is not
used for S3.
"""

from __future__ import annotations

import configparser
import logging
import re
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cpv_core import hookimpl

if TYPE_CHECKING:
    import click
from cpv_core.backends import (
    BackendContext,
    CheckResult,
    CredentialProviderInfo,
    StorageBackendInfo,
    TrackedArtifact,
    TransferStats,
)
from cpv_core.errors import AWSError, ConfigError, CPVError, CredentialError, DVCError, ValidationError
from cpv_core.paths import md5_stream
from cpv_core.progress import Progress
from cpv_core.trust import MAX_MANIFEST_BYTES, open_regular

from .dvc_storage import OBJECTS_DIR, DvcStorage, copy_hashing, object_relpath

logger = logging.getLogger("cpv.s3")

DEFAULT_BUCKET = "vmo-model-checkpoints"
DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 20
TRANSFER_CHUNK = 32 * 1024 * 1024
TRANSFER_THREADS = 8
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$|^[a-z0-9-]{2,32}$")
_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.@+=-]{1,64}$")
MAX_CREDENTIALS_BYTES = 1024 * 1024
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}


# --------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------


class S3Settings:
    """The ``aws`` section of the cpv config, with defaults."""

    def __init__(self, section: dict[str, Any] | None) -> None:
        section = section or {}
        self.credential_path = section.get("credential_path")
        self.profile = section.get("profile") or "default"
        self.bucket = section.get("bucket") or DEFAULT_BUCKET
        self.endpoint_url = section.get("endpoint_url")
        self.region = section.get("region") or DEFAULT_REGION

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def client(self, retries: int = 1) -> Any:
        """A boto3 S3 client: short timeouts; one attempt for checks, a few for transfers."""
        import boto3
        import botocore.session
        from botocore.config import Config

        core = botocore.session.Session()
        if self.credential_path:
            core.set_config_variable("credentials_file", str(self.credential_path))
        core.set_config_variable("profile", self.profile)
        session = boto3.Session(botocore_session=core)
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": retries, "mode": "standard"},
                max_pool_connections=TRANSFER_THREADS * 2,
            ),
        )


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
# parallel download that hashes as it goes
# --------------------------------------------------------------------------

PART_SIZE = 8 * 1024 * 1024
PARTS_IN_MEMORY = 12  # bounds the buffers to ~96 MiB whatever the object size


def download_hashing(client: Any, bucket: str, key: str, out: Path, on_bytes: Any) -> str:
    """Fetch ``key`` with parallel ranged GETs into ``out`` and return its MD5.

    Parts are written at their offsets as they arrive and fed to the hash in
    order, so the file is never read back (a separate verification pass cost
    as much as the download itself). A feeder thread takes a memory permit
    per part, in order, before scheduling it; the hasher returns the permit,
    so the lowest missing part always has one and nothing can deadlock.
    """
    import hashlib
    import os
    import threading

    size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    parts = max(1, -(-size // PART_SIZE))
    permits = threading.Semaphore(PARTS_IN_MEMORY)
    ready: dict[int, bytes | BaseException] = {}
    arrived = threading.Condition()
    stop = threading.Event()
    digest = hashlib.md5()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def fetch(index: int) -> None:
        start = index * PART_SIZE
        try:
            end = min(size, start + PART_SIZE) - 1
            body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"].read()
            if len(body) != end - start + 1:
                raise DVCError(
                    f"object {key} returned {len(body)} bytes for part {index}, expected {end - start + 1}",
                    fix="the stored copy may be truncated: run `cpv verify --remote`",
                )
            os.pwrite(fd, body, start)
            on_bytes(len(body))
            result: bytes | BaseException = body
        except BaseException as exc:  # noqa: BLE001 - handed to the hasher
            result = exc
        with arrived:
            ready[index] = result
            arrived.notify_all()

    def feed(pool: ThreadPoolExecutor) -> None:
        for index in range(parts):
            permits.acquire()
            if stop.is_set():
                return
            pool.submit(fetch, index)

    try:
        with ThreadPoolExecutor(max_workers=TRANSFER_THREADS) as pool:
            feeder = threading.Thread(target=feed, args=(pool,), daemon=True)
            feeder.start()
            try:
                for index in range(parts):
                    with arrived:
                        while index not in ready:
                            arrived.wait()
                        result = ready.pop(index)
                    if isinstance(result, BaseException):
                        raise result
                    digest.update(result)
                    permits.release()
            finally:
                stop.set()
                for _ in range(PARTS_IN_MEMORY + 1):
                    permits.release()
                feeder.join()
    finally:
        os.close(fd)
    return digest.hexdigest()


# --------------------------------------------------------------------------
# error mapping and pre-flight
# --------------------------------------------------------------------------


def _error_code(exc: BaseException) -> str:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            if code:
                return code
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return ""


def classify_s3_error(exc: BaseException, settings: S3Settings, action: str) -> CPVError:
    """A cpv error that names the value, the reason and the fix."""
    code = _error_code(exc)
    text = f"{type(exc).__name__}: {exc}"
    if code in _CREDENTIAL_CODES:
        return CredentialError(
            f"S3 at {settings.where} refused the credentials of AWS profile {settings.profile!r} ({code or 'access denied'})",
            fix=f"fix the key pair of [{settings.profile}] in {settings.credential_path or '~/.aws/credentials'}, or run `cpv aws-config --profile NAME`",
        )
    if code in {"AccessDenied", "403", "Forbidden"}:
        return CredentialError(
            f"AWS profile {settings.profile!r} may not {action} in bucket {settings.bucket!r} at {settings.where} ({code})",
            fix="ask for access to the bucket, or use another --profile / --bucket",
        )
    if code in {"NoSuchBucket", "404", "NotFound"}:
        return AWSError(
            f"bucket {settings.bucket!r} does not exist on {settings.where}",
            fix="create it (cpv never creates buckets silently) or fix `cpv aws-config --bucket`",
        )
    lowered = text.lower()
    if any(
        k in lowered
        for k in (
            "could not connect",
            "connect timeout",
            "connection refused",
            "endpointconnectionerror",
            "cannot connect",
            "name or service not known",
            "timed out",
        )
    ):
        return AWSError(
            f"S3 endpoint {settings.where} is unreachable ({type(exc).__name__})",
            fix="check the network and --endpoint-url in `cpv aws-config`",
        )
    if "nocredentials" in lowered or "unable to locate credentials" in lowered or "partialcredentials" in lowered:
        return CredentialError(
            f"no AWS credentials found for profile {settings.profile!r}", fix="run `cpv aws-config --credential-path FILE --profile NAME`"
        )
    return AWSError(
        f"S3 could not {action} at {settings.where}: {code or type(exc).__name__}", fix="run `cpv validate` for a per-check report"
    )


def endpoint_reachable(settings: S3Settings) -> tuple[bool, str]:
    """TCP reachability of the endpoint within CONNECT_TIMEOUT_S."""
    url = urlparse(settings.endpoint_url or f"https://s3.{settings.region}.amazonaws.com")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return True, f"{url.hostname}:{port} accepts connections"
    except OSError as exc:
        return False, f"{url.hostname}:{port} is unreachable ({exc.strerror or type(exc).__name__})"


def preflight(settings: S3Settings, prefix: str) -> None:
    """Raise a precise cpv error unless the endpoint, credentials and bucket work."""
    ok, detail = endpoint_reachable(settings)
    if not ok:
        raise AWSError(
            f"S3 endpoint {settings.where} is unreachable: {detail}",
            fix="start the server / check the network, or fix --endpoint-url in `cpv aws-config`",
        )
    try:
        settings.client().list_objects_v2(Bucket=settings.bucket, Prefix=prefix, MaxKeys=1)
    except Exception as exc:  # noqa: BLE001 - botocore raises many types
        raise classify_s3_error(exc, settings, "list objects") from None


# --------------------------------------------------------------------------
# storage backend
# --------------------------------------------------------------------------


class S3Storage(DvcStorage):
    """Storage backend ``dvc-s3``: DVC with an S3 remote."""

    name = "dvc-s3"

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.settings = S3Settings(ctx.config.get_config("aws"))
        self._s3: Any = None

    @property
    def prefix(self) -> str:
        return f"{self.ctx.team}/{self.ctx.model}"

    def remote_url(self) -> str:
        return f"s3://{self.settings.bucket}/{self.prefix}"

    def local_remote_options(self) -> dict[str, str]:
        s = self.settings
        options = {"profile": s.profile, "region": s.region, "connect_timeout": str(CONNECT_TIMEOUT_S), "read_timeout": str(READ_TIMEOUT_S)}
        if s.credential_path:
            options["credentialpath"] = str(s.credential_path)
        if s.endpoint_url:
            options["endpointurl"] = s.endpoint_url
        return options

    def map_error(self, action: str, exc: Exception) -> Exception:
        mapped = classify_s3_error(exc, self.settings, action)
        if isinstance(mapped, AWSError) and mapped.message.startswith("S3 could not"):
            return DVCError(f"DVC could not {action}: {type(exc).__name__}: {exc}", fix="run `cpv validate` for a per-check report")
        return mapped

    # -- the tuned transfer path ------------------------------------------------------
    # DVC's push/pull go through s3fs and hold large buffers (about 0.9 GB of
    # RSS for a 1 GiB push, 1.4 GB for a pull). The objects are moved here
    # with boto3's transfer manager instead (bounded memory, parallel parts),
    # to exactly the keys DVC uses, so the bucket stays a plain DVC remote
    # (`dvc pull` works on it; tested).

    def _key(self, oid: str) -> str:
        return f"{self.prefix}/{object_relpath(oid)}"

    def _existing(self, client: Any, oids: list[str]) -> set[str]:
        """Which objects the remote has: HEAD each for a few, one listing for many."""
        if len(oids) <= 32:
            found = set()
            for oid in oids:
                try:
                    client.head_object(Bucket=self.settings.bucket, Key=self._key(oid))
                    found.add(oid)
                except Exception as exc:  # noqa: BLE001
                    if _error_code(exc) not in _MISSING_CODES:
                        raise
            return found
        keys: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.settings.bucket, Prefix=f"{self.prefix}/{OBJECTS_DIR}/"):
            keys.update(obj["Key"] for obj in page.get("Contents", []))
        return {oid for oid in oids if self._key(oid) in keys}

    def push(self, paths: Sequence[str]) -> TransferStats:
        preflight(self.settings, self.prefix)
        from boto3.s3.transfer import TransferConfig

        client = self.settings.client(retries=3)
        oids = [oid for p in paths for oid in self.objects(p)]
        try:
            present = self._existing(client, oids)
            missing = [oid for oid in dict.fromkeys(oids) if oid not in present]
            config = TransferConfig(multipart_chunksize=TRANSFER_CHUNK, max_concurrency=TRANSFER_THREADS)
            total = sum(self._cached(oid).stat().st_size for oid in missing)
            with Progress(f"upload {', '.join(paths)}", total, self.ctx.progress) as progress:

                def upload(oid: str) -> None:
                    if len(oids) > 1:  # directory objects may predate this run in the cache: check before storing
                        actual = copy_hashing(self._cached(oid), None)
                        if actual != oid.removesuffix(".dir"):
                            self._evict(oid)
                            raise DVCError(
                                f"the cached copy of {oid} is damaged (md5 {actual}); it was not uploaded",
                                fix="upload again: cpv re-reads your files into the cache",
                            )
                    # the object appears on S3 only when complete: an interrupted push leaves nothing partial
                    client.upload_file(
                        str(self._cached(oid)), self.settings.bucket, self._key(oid), Config=config, Callback=progress.update
                    )

                # manifests last: a .dir object on the remote means its files are there
                files = [o for o in missing if not o.endswith(".dir")]
                with ThreadPoolExecutor(max_workers=TRANSFER_THREADS if len(files) > 1 else 1) as pool:
                    list(pool.map(upload, files))
                for oid in missing:
                    if oid.endswith(".dir"):
                        upload(oid)
            absent = set(oids) - self._existing(client, oids)
            if absent:
                raise DVCError(
                    f"{len(absent)} object(s) are not on {self.describe_remote()} after the upload "
                    f"(first: {sorted(absent)[0]}); nothing was committed",
                    fix="run the upload again; if it fails again, run `cpv verify --remote`",
                )
        except CPVError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise classify_s3_error(exc, self.settings, f"upload {', '.join(paths)}") from None
        return TransferStats(transferred=len(missing), skipped=len(oids) - len(missing))

    # -- reading objects (DvcStorage's materialize, manifest and verify use these) ----
    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = self.settings.client(retries=3)
        return self._s3

    def remote_read(self, oid: str) -> bytes:
        try:
            body = self._client().get_object(Bucket=self.settings.bucket, Key=self._key(oid))["Body"]
            return bytes(body.read(MAX_MANIFEST_BYTES + 1))
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in _MISSING_CODES:
                raise FileNotFoundError(self._key(oid)) from None
            raise

    def remote_fetch(self, oid: str, out: Path, on_bytes: Callable[[int], Any], *, single: bool) -> str:
        from boto3.s3.transfer import TransferConfig

        try:
            if single:  # one large object: hash while the parts arrive
                return download_hashing(self._client(), self.settings.bucket, self._key(oid), out, on_bytes)
            config = TransferConfig(multipart_chunksize=TRANSFER_CHUNK, max_concurrency=TRANSFER_THREADS)
            self._client().download_file(self.settings.bucket, self._key(oid), str(out), Config=config, Callback=on_bytes)
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in _MISSING_CODES:
                raise FileNotFoundError(self._key(oid)) from None
            raise
        return copy_hashing(out, None)

    def remote_md5(self, oid: str) -> str | None:
        try:
            body = self._client().get_object(Bucket=self.settings.bucket, Key=self._key(oid))["Body"]
        except Exception as exc:  # noqa: BLE001
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise
        return md5_stream(body)

    def _remote_call(self, action: str, call: Callable[[], Any]) -> Any:
        preflight(self.settings, self.prefix)
        try:
            return call()
        except CPVError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise classify_s3_error(exc, self.settings, action) from None

    def _materialize(self, rev: str, path: str, pointer: bytes, dest: Path, staging_root: Path | None) -> TrackedArtifact:
        result: TrackedArtifact = self._remote_call(
            f"download {path}", lambda: super(S3Storage, self)._materialize(rev, path, pointer, dest, staging_root)
        )
        return result

    def verify(self, rev: str, path: str, pointer: bytes, *, remote: bool) -> list[str]:
        if not remote:
            return super().verify(rev, path, pointer, remote=False)
        problems: list[str] = self._remote_call(f"read {path}", lambda: super(S3Storage, self).verify(rev, path, pointer, remote=True))
        return problems


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
        bucket = _validate_bucket(options.get("bucket") or DEFAULT_BUCKET)
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
def cpv_storage_backends() -> list[StorageBackendInfo]:
    """The DVC-on-S3 storage backend."""
    return [StorageBackendInfo("dvc-s3", S3Storage, "DVC with an S3 remote s3://{bucket}/{team}/{model}")]


@hookimpl
def cpv_credential_providers() -> list[CredentialProviderInfo]:
    """AWS credentials by reference to a credentials file and profile."""
    return [
        CredentialProviderInfo(
            "aws", AwsCredentials(), "AWS credentials file + profile (paths and names only)", section="aws", selects={"storage": "dvc-s3"}
        )
    ]


@hookimpl
def cpv_register_commands(cli: click.Group) -> None:
    """``cpv aws-config`` and ``cpv config aws``: S3 access by reference to a credentials file."""
    import click

    from cpv_core.cli import Ctx, dry_run_option

    def aws_options(func: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(
            [
                click.option(
                    "--credential-path", "-c", type=click.Path(dir_okay=False), help="AWS credentials file (default ~/.aws/credentials)."
                ),
                click.option("--profile", "-p", default="default", show_default=True, help="Profile in that file."),
                click.option("--bucket", "-b", help=f"S3 bucket (default {DEFAULT_BUCKET})."),
                click.option("--endpoint-url", help="S3-compatible endpoint (SeaweedFS, MinIO, Ceph ...)."),
                click.option("--region", help=f"Region (default {DEFAULT_REGION})."),
                dry_run_option,
            ]
        ):
            func = option(func)
        return func

    def configure(
        ctx: Ctx,
        credential_path: str | None,
        profile: str,
        bucket: str | None,
        endpoint_url: str | None,
        region: str | None,
        dry_run: bool = False,
    ) -> None:
        from cpv_core.config import CPVConfig

        if dry_run:
            ctx.echo(
                f"[dry-run] would store in {CPVConfig().config_path}: aws = credentials file "
                f"{credential_path or '~/.aws/credentials'}, profile {profile}, bucket {bucket or DEFAULT_BUCKET}, "
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

    @cli.command("aws-config")
    @aws_options
    @click.pass_obj
    def aws_config(ctx: Ctx, /, **options: Any) -> None:
        """Configure S3 access by reference to an AWS credentials file and profile."""
        configure(ctx, **options)

    config_group = cli.commands.get("config")
    if isinstance(config_group, click.Group):

        @config_group.command("aws")
        @aws_options
        @click.pass_obj
        def config_aws(ctx: Ctx, /, **options: Any) -> None:
            """Same as `cpv aws-config`."""
            configure(ctx, **options)
