"""Objects of a DVC remote on Google Cloud Storage, through the official
``google-cloud-storage`` client: the transport of ``dvc-gs``.

Keys are exactly DVC's (``{team}/{model}/files/md5/ab/cdef…``), so the bucket
stays a plain DVC ``gs://`` remote (``dvc pull`` reads it; tested against
fake-gcs-server). An upload is one resumable session of bounded chunks that
the server makes visible only when complete; a download is one streamed GET,
written and hashed as it arrives. The server's own MD5 of each object answers
:meth:`GcsTransport.md5`. Every call has short timeouts, and every failure
becomes one cpv error naming the value, the reason and the fix
(:func:`classify_gcs_error`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from cpv_core.errors import CPVError, CredentialError, StorageError
from cpv_core.trust import MAX_MANIFEST_BYTES
from cpv_plugins.dvc.layout import OBJECTS_DIR, object_relpath, oid_from_relpath
from cpv_plugins.dvc.part_digests import PartDigests
from cpv_plugins.endpoints import model_prefixes, tcp_reachable
from cpv_plugins.gcs_settings import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, TRANSFER_THREADS, UPLOAD_CHUNK, GcsSettings
from cpv_plugins.transports.base import OnBytes, TransportBase
from cpv_plugins.transports.streams import CountingReader, HashingWriter

TIMEOUT = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)
#: up to this many objects are checked one metadata GET each; more are listed
LOOKUP_LIMIT = 32


def classify_gcs_error(exc: BaseException, settings: GcsSettings, action: str) -> CPVError:
    """A cpv error that names the value, the reason and the fix."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, CPVError):
        return exc
    if isinstance(exc, (api.Unauthorized, auth.RefreshError, auth.DefaultCredentialsError)):
        return CredentialError(
            f"GCS at {settings.where} refused the credentials{' of ' + settings.credentials_path if settings.credentials_path else ''} ({type(exc).__name__})",
            fix="fix or renew the credentials file (`cpv setup --storage gcs --gcs-credentials PATH`), or `gcloud auth application-default login`",
        )
    if isinstance(exc, api.Forbidden):
        return CredentialError(
            f"the credentials may not {action} in bucket {settings.bucket!r} at {settings.where} (403)",
            fix="grant the account Storage Object Admin on the bucket, or use another --gcs-credentials / --gcs-bucket",
        )
    if isinstance(exc, api.NotFound):
        return StorageError(
            f"bucket {settings.bucket!r} does not exist on {settings.where}",
            fix="create it (`gcloud storage buckets create gs://BUCKET`; cpv never creates buckets) or fix --gcs-bucket",
        )
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(k in text for k in ("connection", "timed out", "timeout", "name or service not known", "transporterror")):
        return StorageError(
            f"GCS endpoint {settings.where} is unreachable ({type(exc).__name__})", fix="check the network and --gcs-endpoint"
        )
    return StorageError(
        f"GCS could not {action} at {settings.where}: {type(exc).__name__}", fix="run `cpv validate` for a per-check report"
    )


def preflight(settings: GcsSettings, client: Any) -> None:
    """Raise a precise cpv error unless the endpoint, credentials and bucket work."""
    if settings.endpoint_url:
        ok, detail = tcp_reachable(settings.endpoint_url)
        if not ok:
            raise StorageError(
                f"GCS endpoint {settings.where} is unreachable: {detail}", fix="start the server / check the network, or fix --gcs-endpoint"
            )
    try:
        client.get_bucket(settings.bucket, timeout=TIMEOUT, retry=None)
    except Exception as exc:  # noqa: BLE001 - the client raises many types
        raise classify_gcs_error(exc, settings, "read the bucket") from None


def list_model_prefixes(settings: GcsSettings) -> list[tuple[str, str]]:
    """``(team, model)`` for every ``{team}/{model}/`` prefix of the bucket."""
    client = settings.client()
    try:
        return model_prefixes(lambda prefix: _common_prefixes(client, settings.bucket, prefix))
    except Exception as exc:  # noqa: BLE001
        raise classify_gcs_error(exc, settings, "list the models in the bucket") from None


def _common_prefixes(client: Any, bucket: str, prefix: str) -> list[str]:
    blobs = client.list_blobs(bucket, prefix=prefix, delimiter="/", timeout=TIMEOUT)
    for _ in blobs:  # the prefixes are known once the pages are read
        pass
    return [str(p)[len(prefix) :].rstrip("/") for p in sorted(blobs.prefixes)]


def hex_md5(b64: str | None) -> str | None:
    """The hex form of the base64 MD5 a store reports (None when it reports none)."""
    return base64.b64decode(b64).hex() if b64 else None


class GcsTransport(TransportBase):
    """DVC objects under ``gs://{bucket}/{prefix}``."""

    parallel = TRANSFER_THREADS
    parallel_small = TRANSFER_THREADS
    store_label = "GCS bucket"

    def __init__(self, settings: GcsSettings, prefix: str) -> None:
        self.settings = settings
        self.prefix = prefix
        self._client: Any = None

    def describe(self) -> str:
        return f"gs://{self.settings.bucket}/{self.prefix}"

    def _storage(self) -> Any:
        """The client, made on first use and kept for this transport's calls."""
        if self._client is None:
            self._client = self.settings.client()
        return self._client

    def _bucket(self) -> Any:
        return self._storage().bucket(self.settings.bucket)

    def _key(self, oid: str) -> str:
        return f"{self.prefix}/{object_relpath(oid)}"

    @contextmanager
    def session(self, action: str) -> Iterator[None]:
        try:
            preflight(self.settings, self._storage())
            yield
        except (CPVError, FileNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - the client raises many types
            raise classify_gcs_error(exc, self.settings, action) from None

    def _blob_or_none(self, oid: str) -> Any:
        return self._bucket().get_blob(self._key(oid), timeout=TIMEOUT)

    def sizes(self, oids: Sequence[str]) -> dict[str, int]:
        """One metadata GET per object for a few, one listing for many."""
        if len(oids) <= LOOKUP_LIMIT:
            found = {}
            for oid in oids:
                blob = self._blob_or_none(oid)
                if blob is not None:
                    found[oid] = int(blob.size)
            return found
        wanted = set(oids)
        return {oid: size for oid, size, _ in self.inventory() if oid in wanted}

    def put(self, oid: str, src: Path, on_bytes: OnBytes) -> None:
        blob = self._bucket().blob(self._key(oid), chunk_size=UPLOAD_CHUNK)
        size = src.stat().st_size
        with open(src, "rb") as raw:
            blob.upload_from_file(CountingReader(raw, on_bytes), size=size, timeout=TIMEOUT, checksum=None)

    def open_object(self, oid: str) -> BinaryIO:
        blob = self._blob_or_none(oid)
        if blob is None:
            raise FileNotFoundError(self._key(oid))
        return blob.open("rb", raw_download=True, timeout=TIMEOUT)  # type: ignore[no-any-return]

    def get(self, oid: str, out: Path, on_bytes: OnBytes, *, single: bool, parts: PartDigests | None = None) -> str:
        """One streamed GET, hashed as it is written (the MD5 is the check)."""
        from google.api_core.exceptions import NotFound

        digest = hashlib.md5()
        try:
            with open(out, "wb") as writer:
                self._bucket().blob(self._key(oid)).download_to_file(
                    HashingWriter(writer, digest, on_bytes), raw_download=True, checksum=None, timeout=TIMEOUT
                )
        except NotFound:
            raise FileNotFoundError(self._key(oid)) from None
        return digest.hexdigest()

    def read(self, oid: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            data = self._bucket().blob(self._key(oid)).download_as_bytes(raw_download=True, checksum=None, timeout=TIMEOUT)
        except NotFound:
            raise FileNotFoundError(self._key(oid)) from None
        return bytes(data[: MAX_MANIFEST_BYTES + 1])

    def md5(self, oid: str) -> str | None:
        """The MD5 the server computed when the object was written (read back for a
        composed object, which has none)."""
        blob = self._blob_or_none(oid)
        if blob is None:
            return None
        return hex_md5(blob.md5_hash) or super().md5(oid)

    def inventory(self) -> Iterator[tuple[str, int, float]]:
        start = f"{self.prefix}/{OBJECTS_DIR}/"
        for blob in self._storage().list_blobs(self.settings.bucket, prefix=start, timeout=TIMEOUT):
            oid = oid_from_relpath(str(blob.name)[len(self.prefix) + 1 :])
            if oid is not None:
                yield oid, int(blob.size), blob.updated.timestamp() if blob.updated else 0.0

    def delete(self, oid: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self._bucket().blob(self._key(oid)).delete(timeout=TIMEOUT)
        except NotFound:
            pass
