"""Objects of a DVC remote on Azure Blob Storage, through the official
``azure-storage-blob`` client: the transport of ``dvc-azure``.

Keys are exactly DVC's (``{team}/{model}/files/md5/ab/cdef…``) in one
container, so it stays a plain DVC ``azure://`` remote (``dvc pull`` reads it;
tested against Azurite). An upload stages blocks in parallel and commits the
block list last, so an object appears complete or not at all; a download
streams its chunks in order, written and hashed as they arrive. Every failure
becomes one cpv error naming the value, the reason and the fix
(:func:`classify_azure_error`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from cpv_core.errors import CPVError, CredentialError, StorageError
from cpv_core.trust import MAX_MANIFEST_BYTES
from cpv_plugins.azure_settings import TRANSFER_THREADS, AzureSettings
from cpv_plugins.dvc.layout import OBJECTS_DIR, object_relpath, oid_from_relpath
from cpv_plugins.dvc.part_digests import PartDigests
from cpv_plugins.endpoints import model_prefixes, tcp_reachable
from cpv_plugins.transports.base import OnBytes, TransportBase
from cpv_plugins.transports.streams import ChunksReader, HashingWriter

#: up to this many objects are checked one properties call each; more are listed
LOOKUP_LIMIT = 32
#: blocks of one large upload sent at once
BLOCKS_IN_FLIGHT = 4


def classify_azure_error(exc: BaseException, settings: AzureSettings, action: str) -> CPVError:
    """A cpv error that names the value, the reason and the fix."""
    from azure.core import exceptions as az

    if isinstance(exc, CPVError):
        return exc
    raw = getattr(exc, "error_code", "") or ""
    code = str(getattr(raw, "value", raw))
    status = getattr(exc, "status_code", None)
    if isinstance(exc, az.ClientAuthenticationError) or code in {"AuthenticationFailed", "InvalidAuthenticationInfo"}:
        return CredentialError(
            f"Azure at {settings.where} refused the credentials ({code or 'authentication failed'})",
            fix="fix the connection string or key in the environment variable cpv names (`cpv config show`), or renew the SAS token",
        )
    if status == 403 or code.startswith("AuthorizationPermission") or code == "AuthorizationFailure":
        return CredentialError(
            f"Azure at {settings.where} refused the credentials, or they may not {action} in container {settings.container!r} ({code or 403})",
            fix="check the key in the environment variable cpv names, and grant the identity 'Storage Blob Data Contributor' on the container",
        )
    if code == "ContainerNotFound" or (isinstance(exc, az.ResourceNotFoundError) and "container" in str(exc).lower()):
        return StorageError(
            f"container {settings.container!r} does not exist on {settings.where}",
            fix="create it (`az storage container create -n NAME`; cpv never creates containers) or fix --azure-container",
        )
    if isinstance(exc, (az.ServiceRequestError, az.ServiceResponseError)):
        return StorageError(
            f"Azure endpoint {settings.where} is unreachable ({type(exc).__name__})",
            fix="check the network and the account URL / connection string",
        )
    return StorageError(
        f"Azure could not {action} at {settings.where}: {code or type(exc).__name__}", fix="run `cpv validate` for a per-check report"
    )


def preflight(settings: AzureSettings, service: Any) -> None:
    """Raise a precise cpv error unless the endpoint, credentials and container work."""
    endpoint = settings.endpoint()
    if endpoint:
        ok, detail = tcp_reachable(endpoint)
        if not ok:
            raise StorageError(
                f"Azure endpoint {settings.where} is unreachable: {detail}",
                fix="start the server / check the network, or fix the account URL / connection string",
            )
    try:
        service.get_container_client(settings.container).get_container_properties()
    except Exception as exc:  # noqa: BLE001 - the client raises many types
        raise classify_azure_error(exc, settings, "read the container") from None


def list_model_prefixes(settings: AzureSettings) -> list[tuple[str, str]]:
    """``(team, model)`` for every ``{team}/{model}/`` prefix of the container."""
    container = settings.client().get_container_client(settings.container)
    try:
        return model_prefixes(lambda prefix: _common_prefixes(container, prefix))
    except Exception as exc:  # noqa: BLE001
        raise classify_azure_error(exc, settings, "list the models in the container") from None


def _common_prefixes(container: Any, prefix: str) -> list[str]:
    from azure.storage.blob import BlobPrefix

    return [
        str(item.name)[len(prefix) :].rstrip("/") for item in container.walk_blobs(name_starts_with=prefix) if isinstance(item, BlobPrefix)
    ]


class AzureTransport(TransportBase):
    """DVC objects under ``azure://{container}/{prefix}``."""

    parallel = TRANSFER_THREADS
    parallel_small = TRANSFER_THREADS
    store_label = "Azure container"

    def __init__(self, settings: AzureSettings, prefix: str) -> None:
        self.settings = settings
        self.prefix = prefix
        self._container: Any = None

    def describe(self) -> str:
        return f"azure://{self.settings.container}/{self.prefix}"

    def _client(self) -> Any:
        if self._container is None:
            self._container = self.settings.client().get_container_client(self.settings.container)
        return self._container

    def _key(self, oid: str) -> str:
        return f"{self.prefix}/{object_relpath(oid)}"

    @contextmanager
    def session(self, action: str) -> Iterator[None]:
        try:
            preflight(self.settings, self.settings.client(retries=0))
            self._client()
            yield
        except (CPVError, FileNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - the client raises many types
            raise classify_azure_error(exc, self.settings, action) from None

    def sizes(self, oids: Sequence[str]) -> dict[str, int]:
        """One properties call per object for a few, one listing for many."""
        from azure.core.exceptions import ResourceNotFoundError

        if len(oids) > LOOKUP_LIMIT:
            wanted = set(oids)
            return {oid: size for oid, size, _ in self.inventory() if oid in wanted}
        found = {}
        for oid in oids:
            try:
                found[oid] = int(self._client().get_blob_client(self._key(oid)).get_blob_properties().size)
            except ResourceNotFoundError:
                pass
        return found

    def put(self, oid: str, src: Path, on_bytes: OnBytes) -> None:
        sent = [0]

        def progress(current: int, total: int | None) -> None:
            on_bytes(current - sent[0])
            sent[0] = current

        with open(src, "rb") as reader:
            self._client().get_blob_client(self._key(oid)).upload_blob(
                reader, length=src.stat().st_size, overwrite=True, max_concurrency=BLOCKS_IN_FLIGHT, progress_hook=progress
            )

    def _chunks(self, oid: str) -> Iterator[bytes]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self._client().get_blob_client(self._key(oid)).download_blob(max_concurrency=1)
        except ResourceNotFoundError:
            raise FileNotFoundError(self._key(oid)) from None
        return iter(downloader.chunks())

    def open_object(self, oid: str) -> BinaryIO:
        return ChunksReader(self._chunks(oid))  # type: ignore[return-value]

    def get(self, oid: str, out: Path, on_bytes: OnBytes, *, single: bool, parts: PartDigests | None = None) -> str:
        """The chunks in order, written and hashed as they arrive (the MD5 is the check)."""
        digest = hashlib.md5()
        chunks = self._chunks(oid)
        with open(out, "wb") as raw:
            writer = HashingWriter(raw, digest, on_bytes)
            for chunk in chunks:
                writer.write(chunk)
        return digest.hexdigest()

    def read(self, oid: str) -> bytes:
        data = bytearray()
        for chunk in self._chunks(oid):
            data += chunk
            if len(data) > MAX_MANIFEST_BYTES:
                break
        return bytes(data[: MAX_MANIFEST_BYTES + 1])

    def inventory(self) -> Iterator[tuple[str, int, float]]:
        for blob in self._client().list_blobs(name_starts_with=f"{self.prefix}/{OBJECTS_DIR}/"):
            oid = oid_from_relpath(str(blob.name)[len(self.prefix) + 1 :])
            if oid is not None:
                yield oid, int(blob.size), blob.last_modified.timestamp() if blob.last_modified else 0.0

    def delete(self, oid: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._client().delete_blob(self._key(oid))
        except ResourceNotFoundError:
            pass
