"""The tensor layout's chunking: where a large file is cut, its chunk manifest, and the
one read that hashes the file and its chunks.

A ``.safetensors`` file is cut at its header's end and at every tensor's start (tiny
tensors share a chunk), and a large tensor into equal power-of-two pieces (about a
sixteenth of it, 64 KiB to 8 MiB), so an unchanged tensor, or an unchanged run of rows
of a changed one, is the same object in every version. Any other large file is cut by
content (FastCDC 2020, the ``pyfastcdc`` package's compiled chunker, 2.9 GB/s here), so bytes inserted
early do not shift every later cut.

New chunks are written one after another into *packs* of about 64 MiB (one object per
pack: a few requests instead of one per chunk, as Xet's xorbs or git's packfiles), and a
pack is an ordinary DVC object (named by its MD5, under ``files/md5/``), so every
transport stores, lists, checks and deletes packs as it does whole files. The file's
*chunk manifest* (JSON, also an object) lists its chunks in order with their SHA-256,
length and place in a pack, and the file's MD5 and size; the pointer names the manifest. The
manifest comes back from the store, so it is data: :func:`parse_manifest` checks every
field and that it describes exactly the file the pointer records, and every chunk read
back is checked against its SHA-256 before a byte of it is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from cpv_core.domain.safetensors_format import SafetensorsHeader, header_length, parse_header
from cpv_core.errors import CPVError, DVCError
from cpv_core.trust import MAX_MANIFEST_BYTES, visible

#: files smaller than this are stored whole even in the tensor layout
CHUNKED_MIN_BYTES = 8 * 1024 * 1024
#: a large tensor is cut into about this many pieces
TENSOR_PIECES = 16
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 8 * 1024 * 1024
#: FastCDC sizes for files that are not safetensors
CDC_MIN, CDC_AVG, CDC_MAX = 256 * 1024, 1024 * 1024, 4 * 1024 * 1024
FORMAT = 1
_OID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIX = "the stored manifest is damaged or not cpv's: re-upload the version from a machine that has it"


@dataclass(frozen=True)
class ChunkManifest:
    """A chunked file: its MD5 and size; the packs that hold its chunks ``(md5, size)``; and
    its chunks in order, ``(sha256, length, pack index, offset in the pack)``."""

    md5: str
    size: int
    packs: tuple[tuple[str, int], ...]
    chunks: tuple[tuple[str, int, int, int], ...]

    def to_bytes(self) -> bytes:
        doc = {
            "cpv_chunked": FORMAT,
            "md5": self.md5,
            "size": self.size,
            "packs": [list(p) for p in self.packs],
            "chunks": [list(c) for c in self.chunks],
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def offsets(self) -> list[int]:
        """Each chunk's first byte in the file (and the file's size last)."""
        out = [0]
        for chunk in self.chunks:
            out.append(out[-1] + chunk[1])
        return out

    def pack_ids(self) -> list[str]:
        return [md5 for md5, _ in self.packs]


def _bad(item: object) -> bool:
    return not isinstance(item, list) or not all(type(v) is int for v in item[1:]) or not isinstance(item[0], str)


def parse_manifest(raw: bytes, md5: str, size: int | None, where: str) -> ChunkManifest:
    """Check a chunk manifest read back (from the cache or the store) against the file the
    pointer records (``md5``, ``size``): packs and chunks named by object ids, every chunk a
    positive length inside its pack, the lengths adding up to the size. Anything else is
    one :class:`DVCError` line."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise DVCError(f"{where}: the chunk manifest is larger than {MAX_MANIFEST_BYTES} bytes", fix=_FIX)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DVCError(f"{where}: the chunk manifest is not JSON", fix=_FIX) from None
    if not isinstance(doc, dict) or set(doc) != {"cpv_chunked", "md5", "size", "packs", "chunks"} or doc["cpv_chunked"] != FORMAT:
        raise DVCError(f"{where}: not a chunk manifest of format {FORMAT}", fix=_FIX)
    if doc["md5"] != md5 or type(doc["size"]) is not int or doc["size"] < 0 or (size is not None and doc["size"] != size):
        raise DVCError(
            f"{where}: the chunk manifest describes md5 {visible(str(doc['md5']))[:40]}, {visible(str(doc['size']))[:20]} bytes, "
            f"not the {size if size is not None else 'file'} bytes of md5 {md5} its pointer records",
            fix=_FIX,
        )
    packs, chunks = doc["packs"], doc["chunks"]
    if not isinstance(packs, list) or not isinstance(chunks, list) or (not chunks and doc["size"]):
        raise DVCError(f"{where}: the chunk manifest lists no chunks", fix=_FIX)
    parsed_packs: list[tuple[str, int]] = []
    for i, item in enumerate(packs):
        if _bad(item) or len(item) != 2 or not _OID.fullmatch(item[0]) or not 0 < item[1] <= 2**40:
            raise DVCError(f"{where}: pack {i + 1} is {visible(repr(item))[:80]}, not [md5, size]", fix=_FIX)
        parsed_packs.append((item[0], item[1]))
    parsed: list[tuple[str, int, int, int]] = []
    total = 0
    for i, item in enumerate(chunks):
        if (
            _bad(item)
            or len(item) != 4
            or not _SHA256.fullmatch(item[0])
            or not 0 < item[1] <= 2**40
            or not 0 <= item[2] < len(parsed_packs)
            or not 0 <= item[3] <= parsed_packs[item[2]][1] - item[1]
        ):
            raise DVCError(
                f"{where}: chunk {i + 1} is {visible(repr(item))[:80]}, not [sha256, length, pack, offset] inside its pack", fix=_FIX
            )
        parsed.append((item[0], item[1], item[2], item[3]))
        total += item[1]
    if total != doc["size"]:
        raise DVCError(f"{where}: the chunks add up to {total} bytes, not the file's {doc['size']}", fix=_FIX)
    return ChunkManifest(md5, doc["size"], tuple(parsed_packs), tuple(parsed))


def _piece(nbytes: int) -> int:
    """The piece size of a tensor of ``nbytes``: a power of two near a sixteenth of it, so a
    tensor that grows a little (rows added) keeps its cuts."""
    target = max(MIN_CHUNK, min(MAX_CHUNK, nbytes // TENSOR_PIECES))
    return 1 << (target.bit_length() - 1)


def tensor_cuts(header: SafetensorsHeader) -> list[int]:
    """Chunk boundaries (the end of each chunk) of a safetensors file with ``header``."""
    cuts = [header.data_start]
    for t in header.tensors:
        if t.nbytes >= MIN_CHUNK or t.start - cuts[-1] >= MIN_CHUNK:
            if t.start != cuts[-1]:
                cuts.append(t.start)  # close the chunk of the tiny tensors before it
        if t.nbytes >= MIN_CHUNK:
            piece = _piece(t.nbytes)
            cuts.extend(range(t.start + piece, t.end, piece))
            cuts.append(t.end)
    if cuts[-1] != header.file_size:
        cuts.append(header.file_size)
    return [c for i, c in enumerate(cuts) if c > (cuts[i - 1] if i else 0)]


def safetensors_header_of(reader: BinaryIO, size: int) -> SafetensorsHeader | None:
    """The header of the user's file open in ``reader`` if it is a valid safetensors file
    (else None: it is cut by content); the reader is left at the start."""
    try:
        prefix = reader.read(8)
        length = header_length(prefix, "file")
        if 8 + length > size:
            return None
        header = parse_header(prefix + reader.read(length), size, "file")
    except CPVError:
        header = None
    reader.seek(0)
    return header


class ChunkIndexer:
    """SHA-256 of each chunk between ``cuts`` of bytes fed in order (the whole-file layout's
    index of a safetensors file: its tensors can then be read from the whole object verified)."""

    def __init__(self, cuts: list[int]) -> None:
        self.cuts = cuts
        self._next = 0
        self._at = 0
        self._start = 0
        self._digest = hashlib.sha256()
        self.chunks: list[tuple[str, int]] = []

    def update(self, block: memoryview) -> None:
        pos = 0
        while pos < len(block) and self._next < len(self.cuts):
            take = min(len(block) - pos, self.cuts[self._next] - self._at)
            self._digest.update(block[pos : pos + take])
            pos += take
            self._at += take
            if self._at == self.cuts[self._next]:
                self.chunks.append((self._digest.hexdigest(), self._at - self._start))
                self._digest = hashlib.sha256()
                self._start = self._at
                self._next += 1

    def manifest(self, md5: str, size: int) -> ChunkManifest | None:
        """The index as a chunk manifest whose one pack is the whole object; None unless the
        bytes fed were exactly the file the cuts were made for."""
        if self._next != len(self.cuts) or self._at != size:
            return None
        offsets = [0]
        for _, length in self.chunks[:-1]:
            offsets.append(offsets[-1] + length)
        return ChunkManifest(md5, size, ((md5, size),), tuple((d, n, 0, o) for (d, n), o in zip(self.chunks, offsets, strict=True)))


def _read_exact(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise DVCError(f"the file changed while it was read (got {len(data)} of {n} bytes)", fix="upload again once it is written")
    return data


def _cut_chunks(reader: BinaryIO, cuts: list[int]) -> Iterator[bytes]:
    at = 0
    for end in cuts:
        yield _read_exact(reader, end - at)
        at = end


def _cdc_chunks(reader: BinaryIO) -> Iterator[bytes]:
    from pyfastcdc import FastCDC

    for piece in FastCDC(CDC_AVG, min_size=CDC_MIN, max_size=CDC_MAX).cut_stream(reader):
        yield bytes(piece.data)  # its view is reused for the next piece


def chunk_file(
    reader: BinaryIO, size: int, store: Callable[[str, bytes], None], on_bytes: Callable[[int], object]
) -> tuple[str, list[tuple[str, int]]]:
    """Read the file open in ``reader`` once: its MD5 (on another thread, as hashlib lets
    go of the interpreter lock), its chunks cut and hashed here (SHA-256: with the CPU's SHA
    instructions it keeps pace with the other core's MD5), each handed to ``store(sha256,
    bytes)`` in order. The file's MD5 and its chunks ``(sha256, length)``."""
    header = safetensors_header_of(reader, size)
    pieces = _cut_chunks(reader, tensor_cuts(header)) if header is not None else _cdc_chunks(reader)
    whole = hashlib.md5()
    chunks: list[tuple[str, int]] = []
    with ThreadPoolExecutor(max_workers=1) as hasher:
        pending = None
        for piece in pieces:
            if pending is not None:
                pending.result()
            pending = hasher.submit(whole.update, piece)
            oid = hashlib.sha256(piece).hexdigest()
            store(oid, piece)
            chunks.append((oid, len(piece)))
            on_bytes(len(piece))
        if pending is not None:
            pending.result()
    total = sum(length for _, length in chunks)
    if total != size or reader.read(1):
        raise DVCError(f"the file changed while it was read ({total} bytes, {size} expected)", fix="upload again once it is written")
    return whole.hexdigest(), chunks
