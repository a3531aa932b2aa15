"""The ``.safetensors`` format as values: its header parsed and checked, a selection of
tensors by name pattern, and the header of a file holding only that selection.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``)
and the tensors' bytes, offsets counted from the end of the header. The header may
come from a store or a repository (a teammate's upload), so it is data: every offset,
shape and size is checked against the others and against the file's size before any
of it picks bytes, and a header that lies is refused with one line. No I/O here.
"""

from __future__ import annotations

import fnmatch
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from cpv_core.errors import ValidationError
from cpv_core.trust import visible

SUFFIX = ".safetensors"
#: the safetensors library's own limit on the header
MAX_HEADER_BYTES = 100_000_000
#: bytes per element of every dtype the format defines whole-byte sizes for
DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "U64": 8,
}
_FIX = "the version's stored header is not a valid safetensors header: download it whole (`cpv model download`) and check it"


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: its dtype, shape, and its bytes' absolute ``[start, end)`` in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header: its tensors in file order, the metadata, where the data starts."""

    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str] | None
    data_start: int

    @property
    def file_size(self) -> int:
        return self.tensors[-1].end if self.tensors else self.data_start


def header_length(prefix: bytes, where: str) -> int:
    """The JSON header's length from a file's first 8 bytes."""
    if len(prefix) < 8:
        raise ValidationError(f"{where}: too short for a safetensors file ({len(prefix)} bytes)", fix=_FIX)
    (length,) = struct.unpack("<Q", prefix[:8])
    if length < 2 or length > MAX_HEADER_BYTES:
        raise ValidationError(f"{where}: a safetensors header of {length} bytes (at most {MAX_HEADER_BYTES})", fix=_FIX)
    return int(length)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key appears twice")
    return dict(pairs)


def _tensor(name: str, value: object, data_start: int, where: str) -> TensorInfo:
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise ValidationError(f"{where}: tensor {visible(repr(name))} is not {{dtype, shape, data_offsets}}", fix=_FIX)
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if dtype not in DTYPE_BYTES:
        raise ValidationError(f"{where}: tensor {visible(repr(name))} has dtype {visible(repr(dtype))}, not one cpv reads", fix=_FIX)
    if not isinstance(shape, list) or len(shape) > 64 or not all(type(d) is int and 0 <= d < 2**63 for d in shape):
        raise ValidationError(f"{where}: tensor {visible(repr(name))} has shape {visible(repr(shape))}", fix=_FIX)
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int and 0 <= o < 2**63 for o in offsets):
        raise ValidationError(f"{where}: tensor {visible(repr(name))} has data_offsets {visible(repr(offsets))}", fix=_FIX)
    begin, end = offsets
    expected = math.prod(shape) * DTYPE_BYTES[dtype]
    if end - begin != expected:
        raise ValidationError(
            f"{where}: tensor {visible(repr(name))} claims {end - begin} bytes but {dtype} {tuple(shape)} is {expected}", fix=_FIX
        )
    return TensorInfo(name, dtype, tuple(shape), data_start + begin, data_start + end)


def parse_header(raw: bytes, file_size: int, where: str) -> SafetensorsHeader:
    """Check ``raw`` (the 8-byte length and the JSON header) against a file of ``file_size``
    bytes: the tensors must tile the data exactly (no gap, no overlap, nothing past the end)
    as the safetensors library requires; any lie is a :class:`ValidationError`."""
    length = header_length(raw, where)
    if len(raw) != 8 + length:
        raise ValidationError(f"{where}: the header says {length} bytes but {len(raw) - 8} were read", fix=_FIX)
    try:
        doc = json.loads(raw[8:].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"{where}: the safetensors header is not JSON ({visible(str(exc))[:120]})", fix=_FIX) from None
    if not isinstance(doc, dict):
        raise ValidationError(f"{where}: the safetensors header is not a JSON object", fix=_FIX)
    metadata = doc.pop("__metadata__", None)
    if metadata is not None and (not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())):
        raise ValidationError(f"{where}: __metadata__ is not a mapping of strings", fix=_FIX)
    data_start = 8 + length
    tensors = sorted((_tensor(name, value, data_start, where) for name, value in doc.items()), key=lambda t: (t.start, t.end))
    at = data_start
    for t in tensors:
        if t.start != at:
            raise ValidationError(
                f"{where}: tensor {visible(repr(t.name))} starts at byte {t.start}, not {at} (a gap or an overlap)", fix=_FIX
            )
        at = t.end
    if at != file_size:
        raise ValidationError(f"{where}: the tensors end at byte {at} but the file has {file_size}", fix=_FIX)
    return SafetensorsHeader(tuple(tensors), metadata, data_start)


def parse_selector(text: str) -> list[str]:
    """``'encoder.*,lm_head.weight'`` as name patterns (shell-style, as ``fnmatch``)."""
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    if not patterns:
        raise ValidationError(
            f"--tensors {visible(repr(text))} names no tensor", fix="give names or patterns, e.g. --tensors 'encoder.*,lm_head.weight'"
        )
    return patterns


def select(header: SafetensorsHeader, patterns: list[str]) -> list[TensorInfo]:
    """The tensors whose name matches one of ``patterns``, in file order; a pattern that
    matches nothing is an error naming it (a typo must not give an empty file)."""
    chosen = [t for t in header.tensors if any(fnmatch.fnmatchcase(t.name, p) for p in patterns)]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(t.name, pattern) for t in header.tensors):
            raise ValidationError(
                f"--tensors pattern {visible(repr(pattern))} matches none of the {len(header.tensors)} tensors",
                fix="see the names with `cpv model tensors VERSION`; patterns are shell-style (encoder.*)",
            )
    return chosen


def subset_header(tensors: list[TensorInfo], metadata: dict[str, str] | None) -> bytes:
    """The length prefix and JSON header of a file holding ``tensors`` back to back, in
    their order, padded with spaces to 8 bytes as the safetensors library writes it."""
    doc: dict[str, Any] = {}
    if metadata:
        doc["__metadata__"] = metadata
    at = 0
    for t in tensors:
        doc[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [at, at + t.nbytes]}
        at += t.nbytes
    body = json.dumps(doc, separators=(",", ":")).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body
