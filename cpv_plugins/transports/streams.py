"""File-object wrappers the SDK-based transports hand to their clients: progress
is counted, and what is written is hashed, as the bytes pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from cpv_plugins.transports.base import OnBytes


class CountingReader:
    """A binary reader that reports every read's length to ``on_bytes``."""

    def __init__(self, raw: BinaryIO, on_bytes: OnBytes) -> None:
        self.raw, self.on_bytes = raw, on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self.on_bytes(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


class HashingWriter:
    """A binary writer that feeds ``digest`` and ``on_bytes`` with what passes through."""

    def __init__(self, raw: BinaryIO, digest: Any, on_bytes: OnBytes) -> None:
        self.raw, self.digest, self.on_bytes = raw, digest, on_bytes

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.on_bytes(len(data))
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class ChunksReader:
    """A binary reader over an iterator of byte chunks (a streamed download)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.pending = chunks, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.pending) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.pending += chunk
        if size < 0:
            data, self.pending = self.pending, b""
        else:
            data, self.pending = self.pending[:size], self.pending[size:]
        return data

    def close(self) -> None:
        self.pending = b""

    def __enter__(self) -> ChunksReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
