"""Per-part digests of a large object, so a download can verify its parts in parallel.

MD5, DVC's content address, is one sequential pass: on two cores it cannot keep
up with a download. So the upload also records a SHA-256 of every fixed-size
part of a large file (computed in the same read, on another thread), in the
pointer's ``meta`` (which DVC keeps and ignores). A download then fetches the
parts in parallel while another thread computes the whole MD5 in file order; the
stored object must be exactly as long as the parts cover, and after an MD5 mismatch
the parts' SHA-256 name the damaged part.

The digests come from the repository, as the MD5 does. They are data: they
speed the check up (a damaged part is named as it arrives) but never replace
the MD5, so a list made for a prefix or for other bytes cannot vouch for them;
a malformed or inconsistent list is ignored (the download checks the MD5 alone),
never trusted partly. Bytes verified this way are written only to the download's target,
never into a content-addressed cache under the MD5.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from cpv_core.paths import md5_stream

#: the pointer's ``meta`` key that holds the digests
META_KEY = "cpv_parts"
#: a directory pointer's ``meta`` key: ``{entry md5: {"size": N, <META_KEY's value>}}``
ENTRY_META_KEY = "cpv_entry_parts"
#: at most this many digests over a directory's entries (largest files first), so the
#: pointer stays well below its size limit; other entries are checked by their MD5
ENTRY_DIGEST_BUDGET = 512
ALGORITHM = "sha256"
#: objects up to this size have no part digests: their MD5 alone is quick enough
MIN_PART_SIZE = 64 * 1024 * 1024
#: the part size doubles until the list has at most this many entries (a 70 GB file: 140 parts of 512 MiB)
MAX_PARTS = 256
_READ_CHUNK = 1024 * 1024  # in the CPU's cache while both hashes read it
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class PartDigests:
    """SHA-256 of each ``part_size`` slice of an object of ``size`` bytes (the last one may be shorter)."""

    size: int
    part_size: int
    digests: tuple[str, ...]

    def to_meta(self) -> dict[str, Any]:
        """The value stored under :data:`META_KEY` in the pointer's ``meta``."""
        return {"algorithm": ALGORITHM, "part_size": self.part_size, "digests": list(self.digests)}

    def ranges(self) -> list[tuple[int, int]]:
        """``(start, end_inclusive)`` of every part."""
        return [(start, min(self.size, start + self.part_size) - 1) for start in range(0, self.size, self.part_size)]


class PartMismatchError(Exception):
    """A downloaded part whose bytes do not have the digest its version records."""

    def __init__(self, index: int, count: int, start: int, end: int, reason: str = "does not match its recorded SHA-256") -> None:
        super().__init__(f"part {index + 1} of {count} (bytes {start}-{end}) {reason}")
        self.index = index


class LengthMismatchError(PartMismatchError):
    """The stored object is not as long as its recorded parts cover (a list for a prefix of it)."""

    def __init__(self, recorded: int, stored: int) -> None:
        Exception.__init__(self, f"its pointer records {recorded} bytes but the stored object has {stored}")
        self.index = -1


def part_size_for(size: int, min_part_size: int | None = None) -> int | None:
    """The part size recorded for an object of ``size`` bytes, or None when it gets no list."""
    part = MIN_PART_SIZE if min_part_size is None else min_part_size
    if size <= part:
        return None
    while -(-size // part) > MAX_PARTS:
        part *= 2
    return part


def from_meta(value: Any, size: int, min_part_size: int | None = None) -> PartDigests | None:
    """The part digests a pointer's ``meta`` records for an object of ``size`` bytes, or
    None when there are none or they are not exactly what cpv writes for that size
    (wrong algorithm, part size, count or spelling): the caller then checks the MD5."""
    if not isinstance(value, dict) or value.get("algorithm") != ALGORITHM:
        return None
    part_size, digests = value.get("part_size"), value.get("digests")
    if type(part_size) is not int or part_size != part_size_for(size, min_part_size):
        return None
    if not isinstance(digests, list) or len(digests) != -(-size // part_size):
        return None
    if not all(isinstance(d, str) and _HEX64.fullmatch(d) for d in digests):
        return None
    return PartDigests(size, part_size, tuple(digests))


def entry_part_size(sizes: Iterable[int]) -> int:
    """The part size for a directory's entries: :data:`MIN_PART_SIZE`, doubled until the
    entries above it need at most :data:`ENTRY_DIGEST_BUDGET` digests in all (a 70 GB
    model in 30 shards: 512 MiB parts), so every shard gets its list."""
    sizes = list(sizes)
    part = MIN_PART_SIZE
    while sum(-(-size // part) for size in sizes if size > part) > ENTRY_DIGEST_BUDGET:
        part *= 2
    return part


def _is_entry_part_size(value: Any) -> bool:
    """Whether ``value`` is a part size :func:`entry_part_size` can give."""
    if type(value) is not int or value < MIN_PART_SIZE or value % MIN_PART_SIZE:
        return False
    multiple = value // MIN_PART_SIZE
    return multiple & (multiple - 1) == 0


def entry_parts_to_meta(parts: dict[str, PartDigests]) -> dict[str, Any]:
    """A directory's entry part digests as stored under :data:`ENTRY_META_KEY`: the largest
    entries first while :data:`ENTRY_DIGEST_BUDGET` lasts, sorted by MD5."""
    kept: dict[str, PartDigests] = {}
    left = ENTRY_DIGEST_BUDGET
    for md5, digests in sorted(parts.items(), key=lambda item: -item[1].size):
        if len(digests.digests) <= left:
            kept[md5] = digests
            left -= len(digests.digests)
    return {md5: {"size": kept[md5].size, **kept[md5].to_meta()} for md5 in sorted(kept)}


def entry_parts_from_meta(value: Any) -> dict[str, PartDigests]:
    """The entry part digests a directory pointer records, keeping only well-formed ones
    (an MD5 key, a whole size, :func:`from_meta`'s checks); others are checked by MD5."""
    found: dict[str, PartDigests] = {}
    if not isinstance(value, dict):
        return found
    for md5, entry in list(value.items())[:ENTRY_DIGEST_BUDGET]:
        size = entry.get("size") if isinstance(entry, dict) else None
        if not (isinstance(md5, str) and _HEX32.fullmatch(md5)) or type(size) is not int or size < 0:
            continue
        part_size = entry.get("part_size")
        digests = from_meta(entry, size, min_part_size=part_size) if _is_entry_part_size(part_size) else None
        if digests is not None:
            found[md5] = digests
    return found


def md5_with_parts(
    reader: BinaryIO,
    size: int,
    writer: BinaryIO | None = None,
    on_bytes: Callable[[int], object] | None = None,
    min_part_size: int | None = None,
    also: Callable[[memoryview], object] | None = None,
) -> tuple[str, PartDigests | None]:
    """MD5 of everything ``reader`` yields (``size`` bytes expected) and, for a large object,
    its part digests, in one read. The SHA-256s run on a second thread (hashlib releases
    the GIL on large buffers), so they cost no time while a core is free; ``also`` (another
    digest of the same bytes, in order) runs there too."""
    part_size = part_size_for(size, min_part_size)
    if part_size is None and also is None:
        return md5_stream(reader, writer, on_bytes), None
    md5 = hashlib.md5()
    parts = _PartHasher(size, part_size) if part_size is not None else None

    def second(chunk: memoryview) -> None:
        if parts is not None:
            parts.update(chunk)
        if also is not None:
            also(chunk)

    # two buffers: the worker hashes one while the next is read into the other
    buffers = [bytearray(_READ_CHUNK), bytearray(_READ_CHUNK)]
    readinto: Callable[[bytearray], int | None] = reader.readinto  # type: ignore[attr-defined]  # files have it
    total = 0
    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = None
        for turn in itertools.count():
            buffer = buffers[turn % 2]
            n = readinto(buffer)
            if not n:
                break
            chunk = memoryview(buffer)[:n]
            md5.update(chunk)
            if writer is not None:
                writer.write(chunk)
            if pending is not None:
                pending.result()  # the other buffer is free again; order kept
            pending = worker.submit(second, chunk)
            if on_bytes is not None:
                on_bytes(n)
            total += n
        if pending is not None:
            pending.result()
    if total != size or parts is None:  # the file changed size while it was read: no list rather than a wrong one
        return md5.hexdigest(), None
    return md5.hexdigest(), parts.finish()


class _PartHasher:
    """Feeds a stream to one SHA-256 per ``part_size`` slice."""

    def __init__(self, size: int, part_size: int) -> None:
        self.size = size
        self.part_size = part_size
        self.digests: list[str] = []
        self._hash = hashlib.sha256()
        self._filled = 0

    def update(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        while view:
            take = min(len(view), self.part_size - self._filled)
            self._hash.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.part_size:
                self.digests.append(self._hash.hexdigest())
                self._hash, self._filled = hashlib.sha256(), 0

    def finish(self) -> PartDigests:
        if self._filled:
            self.digests.append(self._hash.hexdigest())
            self._hash, self._filled = hashlib.sha256(), 0
        return PartDigests(self.size, self.part_size, tuple(self.digests))
