"""Objects of a DVC remote on S3, through boto3 only: the transport of ``dvc-s3``.

Uploads and downloads use boto3's transfer manager (bounded memory, parallel
parts); one large object is fetched with parallel ranged GETs hashed as the
parts arrive. Keys are exactly DVC's (``{team}/{model}/files/md5/ab/cdef…``),
so the bucket stays a plain DVC remote (`dvc pull` works on it; tested).
Every call has short timeouts; every failure becomes one cpv error naming the
value, the reason and the fix (:func:`classify_s3_error`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cpv_core.errors import AWSError, CPVError, CredentialError, DVCError
from cpv_core.faults import crash_point
from cpv_core.paths import md5_stream
from cpv_core.trust import MAX_MANIFEST_BYTES, visible
from cpv_plugins.dvc.layout import OBJECTS_DIR, object_relpath, oid_from_relpath
from cpv_plugins.dvc.part_digests import LengthMismatchError, PartDigests, PartMismatchError
from cpv_plugins.endpoints import model_prefixes, tcp_reachable
from cpv_plugins.s3_settings import SMALL_OBJECT_THREADS, TRANSFER_THREADS, S3Settings
from cpv_plugins.transports.base import OnBytes

TRANSFER_CHUNK = 32 * 1024 * 1024
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}
#: up to this many objects are checked one HEAD each; more are listed in pages
HEAD_LIMIT = 32

logger = logging.getLogger("cpv.storage")


# --------------------------------------------------------------------------
# parallel download that hashes as it goes
# --------------------------------------------------------------------------

PART_SIZE = 8 * 1024 * 1024
PARTS_IN_MEMORY = 12  # bounds the buffers to ~96 MiB whatever the object size
#: objects up to this size are fetched with one GET (boto3's own multipart threshold)
SMALL_OBJECT_BYTES = 8 * 1024 * 1024
#: parts of one verified download fetched at once (see download_verifying_parts)
PARTS_IN_FLIGHT = 3
STREAM_CHUNK = 256 * 1024  # a verified part is read from its stream in pieces of this size (measured: 4 MiB reads cost 2x the CPU)


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
            crash_point("download.part-written")
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


def download_verifying_parts(client: Any, bucket: str, key: str, out: Path, on_bytes: Any, parts: PartDigests, expected: str) -> str:
    """Fetch ``key`` into ``out`` with one ranged GET per recorded part, in parallel, each
    written at its offset, while another thread computes the whole file's MD5 in order as
    the parts complete. Returns that MD5 for the caller to compare with ``expected`` (the
    pointer's).

    The parts list comes from a pointer, so it speeds the download up and names what is
    damaged, but never replaces the MD5: the stored object must be exactly as long as the
    list covers (a list for a prefix would place a truncated file), and only when the MD5
    is not ``expected`` are the parts checked against their SHA-256, to name the first
    damaged one (:class:`PartMismatchError`). Checking every part as well as the MD5 on
    every download cost two cores' worth of hashing for nothing (measured: 0.77x -> 1.98x
    boto3 on 1 GiB in 4 shards). The caller discards ``out`` on any error."""
    import hashlib
    import os
    import threading

    stored = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    if stored != parts.size:
        raise LengthMismatchError(parts.size, stored)
    ranges = parts.ranges()
    failed = threading.Event()
    done = [threading.Event() for _ in ranges]
    whole = hashlib.md5()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def fetch(index: int) -> None:
        if failed.is_set():
            return
        start, end = ranges[index]
        body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
        offset = start
        try:
            for chunk in iter(lambda: body.read(STREAM_CHUNK), b""):
                if offset + len(chunk) > end + 1:
                    raise PartMismatchError(index, len(ranges), start, end, "is longer than recorded")
                os.pwrite(fd, chunk, offset)
                offset += len(chunk)
                on_bytes(len(chunk))
        finally:
            body.close()
        if offset != end + 1:
            raise PartMismatchError(index, len(ranges), start, end, f"is {offset - start} bytes, not {end - start + 1}")
        done[index].set()
        crash_point("download.part-written")

    # a few parts at a time, in file order: they complete in about that order, so the MD5
    # follows the download instead of starting once every part has arrived
    pool = ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, PARTS_IN_FLIGHT))
    hasher = ThreadPoolExecutor(max_workers=1)
    try:
        in_order = hasher.submit(md5_in_order, out, ranges, done, failed, whole)
        for future in [pool.submit(fetch, index) for index in range(len(ranges))]:
            future.result()
        in_order.result()
    except BaseException:
        failed.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        hasher.shutdown(wait=True)
        os.close(fd)
    md5 = whole.hexdigest()
    if md5 != expected:
        name_damaged_part(out, parts)
    return md5


def md5_in_order(path: Path, ranges: list[tuple[int, int]], done: list[Any], failed: Any, whole: Any) -> None:
    """Feed ``whole`` (an MD5) the parts of ``path`` in file order, each as soon as its
    ``done`` event is set (they are in the page cache: this reads no disk); stop when
    ``failed`` is set."""
    with open(path, "rb") as reader:
        for index, (start, end) in enumerate(ranges):
            while not done[index].wait(0.2):
                if failed.is_set():
                    return
            reader.seek(start)
            left = end - start + 1
            while left:
                chunk = reader.read(min(STREAM_CHUNK, left))
                if not chunk:
                    raise PartMismatchError(index, len(ranges), start, end, "was not written")
                whole.update(chunk)
                left -= len(chunk)


def name_damaged_part(path: Path, parts: PartDigests) -> None:
    """Raise :class:`PartMismatchError` for the first part of ``path`` whose SHA-256 is not
    the recorded one (after an MD5 mismatch: which part the store damaged). Returns when
    every part matches: the list was made for other bytes, and the MD5 says so."""
    import hashlib

    ranges = parts.ranges()
    with open(path, "rb") as reader:
        for index, (start, end) in enumerate(ranges):
            reader.seek(start)
            digest, left = hashlib.sha256(), end - start + 1
            while left:
                chunk = reader.read(min(STREAM_CHUNK, left))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            if digest.hexdigest() != parts.digests[index]:
                raise PartMismatchError(index, len(ranges), start, end)


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
    """TCP reachability of the endpoint (AWS's own for the region when none is set)."""
    return tcp_reachable(settings.endpoint_url or f"https://s3.{settings.region}.amazonaws.com")


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
# the transport
# --------------------------------------------------------------------------


def is_missing(exc: BaseException) -> bool:
    """Whether a boto3 error says the object does not exist."""
    return _error_code(exc) in _MISSING_CODES


def list_model_prefixes(settings: S3Settings) -> list[tuple[str, str]]:
    """``(team, model)`` for every ``{team}/{model}/`` prefix of the bucket."""
    client = settings.client(retries=3)
    try:
        return model_prefixes(lambda prefix: _common_prefixes(client, settings.bucket, prefix))
    except Exception as exc:  # noqa: BLE001 - botocore raises many types
        raise classify_s3_error(exc, settings, "list the models in the bucket") from None


def _common_prefixes(client: Any, bucket: str, prefix: str) -> list[str]:
    names: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names.extend(str(p["Prefix"])[len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
    return names


class S3Transport:
    """DVC objects under ``s3://{bucket}/{prefix}``, moved with boto3."""

    parallel = TRANSFER_THREADS
    parallel_small = SMALL_OBJECT_THREADS

    def __init__(self, settings: S3Settings, prefix: str) -> None:
        self.settings = settings
        self.prefix = prefix
        self._s3: Any = None
        self._ready: Future[None] | None = None

    def describe(self) -> str:
        return f"s3://{self.settings.bucket}/{self.prefix}"

    def prepare(self) -> None:
        """Check the store and make the client in a background thread, so boto3's import and
        the pre-flight round trips overlap the hashing an upload does first; the next
        :meth:`session` waits for that check (and raises its error) instead of making it."""
        if self._ready is not None:
            return
        ready: Future[None] = Future()

        def check() -> None:
            try:
                preflight(self.settings, self.prefix)
                self._client()
                ready.set_result(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the session, which raises it
                ready.set_exception(exc)

        self._ready = ready
        threading.Thread(target=check, name="cpv-s3-prepare", daemon=True).start()

    def check_prepared(self) -> None:
        """Raise now, as :meth:`session` would, if the background check has already failed."""
        ready = self._ready
        if ready is not None and ready.done() and ready.exception() is not None:
            with self.session("reach the store"):
                pass

    def _client(self) -> Any:
        if self._s3 is None:
            self._s3 = self.settings.client(retries=3)
        return self._s3

    def _key(self, oid: str) -> str:
        return f"{self.prefix}/{object_relpath(oid)}"

    def incomplete_uploads(self) -> list[tuple[str, str, float, int]]:
        """``(key, upload id, started, bytes stored so far)`` of every multipart upload
        under this model's prefix that was never completed nor aborted (a killed upload
        leaves one; the store bills its parts until it is aborted)."""
        client, found = self._client(), []
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=self.settings.bucket, Prefix=f"{self.prefix}/"):
            for upload in page.get("Uploads", []):
                key, upload_id = str(upload["Key"]), str(upload["UploadId"])
                stored = 0
                for parts in client.get_paginator("list_parts").paginate(Bucket=self.settings.bucket, Key=key, UploadId=upload_id):
                    stored += sum(int(part.get("Size", 0)) for part in parts.get("Parts", []))
                found.append((key, upload_id, upload["Initiated"].timestamp(), stored))
        return found

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one incomplete multipart upload (its parts are freed); a key outside this
        model's prefix (the store listed it, so it is data) is never touched."""
        if not key.startswith(f"{self.prefix}/"):
            logger.warning("not aborting the upload of %s: it is not under %s/", visible(key), self.prefix)
            return
        self._client().abort_multipart_upload(Bucket=self.settings.bucket, Key=key, UploadId=upload_id)

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_chunksize=TRANSFER_CHUNK, max_concurrency=TRANSFER_THREADS)

    @contextmanager
    def session(self, action: str) -> Iterator[None]:
        ready, self._ready = self._ready, None
        if ready is None:
            preflight(self.settings, self.prefix)
        try:
            if ready is not None:
                ready.result()
            yield
        except (CPVError, FileNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - botocore raises many types
            raise classify_s3_error(exc, self.settings, action) from None

    def sizes(self, oids: Sequence[str]) -> dict[str, int]:
        """One HEAD per object for a few, one paginated listing for many."""
        found: dict[str, int] = {}
        if len(oids) <= HEAD_LIMIT:
            for oid in oids:
                try:
                    found[oid] = int(self._client().head_object(Bucket=self.settings.bucket, Key=self._key(oid))["ContentLength"])
                except Exception as exc:  # noqa: BLE001
                    if not is_missing(exc):
                        raise
            return found
        wanted = {self._key(oid): oid for oid in oids}
        for key, size, _ in self._listing():
            if key in wanted:
                found[wanted[key]] = size
        return found

    def _listing(self) -> Iterator[tuple[str, int, float]]:
        pages = (
            self._client().get_paginator("list_objects_v2").paginate(Bucket=self.settings.bucket, Prefix=f"{self.prefix}/{OBJECTS_DIR}/")
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield str(obj["Key"]), int(obj["Size"]), obj["LastModified"].timestamp()

    def put(self, oid: str, src: Path, on_bytes: OnBytes) -> None:
        # the object appears on S3 only when complete: an interrupted upload leaves nothing partial
        size = src.stat().st_size
        if size <= SMALL_OBJECT_BYTES:
            # one PUT: the transfer manager costs milliseconds of CPU per file, which is most
            # of the time for a directory of many small files
            with open(src, "rb") as body:
                self._client().put_object(Bucket=self.settings.bucket, Key=self._key(oid), Body=body)
            on_bytes(size)
            return
        self._client().upload_file(str(src), self.settings.bucket, self._key(oid), Config=self._transfer_config(), Callback=on_bytes)

    def get(self, oid: str, out: Path, on_bytes: OnBytes, *, single: bool, parts: PartDigests | None = None) -> str:
        try:
            if parts is not None:  # every part checked as it arrives, in parallel; the MD5 in order beside
                return download_verifying_parts(self._client(), self.settings.bucket, self._key(oid), out, on_bytes, parts, oid)
            if single:  # one large object: hash while the parts arrive
                return download_hashing(self._client(), self.settings.bucket, self._key(oid), out, on_bytes)
            # one file of many: one GET, written and hashed as it streams (boto3's transfer
            # manager costs milliseconds of CPU per file, and the file would be read again
            # to hash it); a large one is fetched in parallel parts instead
            response = self._client().get_object(Bucket=self.settings.bucket, Key=self._key(oid))
            if int(response["ContentLength"]) > SMALL_OBJECT_BYTES:
                response["Body"].close()
                return download_hashing(self._client(), self.settings.bucket, self._key(oid), out, on_bytes)
            with response["Body"] as body, open(out, "wb") as writer:
                return md5_stream(body, writer, on_bytes)
        except Exception as exc:  # noqa: BLE001
            if is_missing(exc):
                raise FileNotFoundError(self._key(oid)) from None
            raise

    def _body(self, oid: str) -> Any:
        try:
            return self._client().get_object(Bucket=self.settings.bucket, Key=self._key(oid))["Body"]
        except Exception as exc:  # noqa: BLE001
            if is_missing(exc):
                raise FileNotFoundError(self._key(oid)) from None
            raise

    def read(self, oid: str) -> bytes:
        return bytes(self._body(oid).read(MAX_MANIFEST_BYTES + 1))

    def read_range(self, oid: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        try:
            response = self._client().get_object(Bucket=self.settings.bucket, Key=self._key(oid), Range=f"bytes={start}-{end - 1}")
        except Exception as exc:  # noqa: BLE001
            if is_missing(exc):
                raise FileNotFoundError(self._key(oid)) from None
            raise
        with response["Body"] as body:
            return bytes(body.read())  # the range bounds it; one read of the whole body costs half the CPU of sized reads

    def md5(self, oid: str) -> str | None:
        try:
            return md5_stream(self._body(oid))
        except FileNotFoundError:
            return None

    def inventory(self) -> Iterator[tuple[str, int, float]]:
        for key, size, modified in self._listing():
            oid = oid_from_relpath(key[len(self.prefix) + 1 :])
            if oid is not None:
                yield oid, size, modified

    def delete(self, oid: str) -> None:
        self._client().delete_object(Bucket=self.settings.bucket, Key=self._key(oid))
