"""Some tensors of a stored ``.safetensors`` version, without the rest: ``download
--tensors`` writes a valid safetensors file holding only the selected tensors, and
:func:`open_tensors` hands them to Python as numpy arrays, each fetched on first use.

The storage backend serves verified byte ranges (:meth:`StorageBackend.open_ranges`):
in the tensor layout only the chunks holding the header and the selected tensors are
transferred, each checked against its MD5 first. The header read back is checked against
the file's recorded size before any offset in it is used (a header that lies about
offsets, shapes or sizes is refused with one line, and nothing is placed).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from cpv_core.domain.safetensors_format import (
    SafetensorsHeader,
    TensorInfo,
    header_length,
    parse_header,
    parse_selector,
    select,
    subset_header,
)
from cpv_core.errors import CheckpointNotFoundError, ValidationError, WorkspaceDirtyError
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_leftovers, atomic_path
from cpv_core.plugin.protocols import ByteRanges

if TYPE_CHECKING:
    from cpv_core.domain.backend_values import VersionRecord
    from cpv_core.ops.target import Target

#: numpy's name of each safetensors dtype numpy holds (BF16 and the F8s come back as raw unsigned integers)
NUMPY_DTYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
    "BF16": "uint16",
    "F8_E5M2": "uint8",
    "F8_E4M3": "uint8",
}


@dataclass(frozen=True)
class TensorDownload:
    """What ``download --tensors`` wrote and what it cost."""

    path: Path
    version: str
    tensors: list[str]
    bytes_written: int
    bytes_fetched: int
    file_size: int


def read_header(ranges: ByteRanges, where: str) -> SafetensorsHeader:
    """The checked header of the stored file ``ranges`` reads."""
    prefix = ranges.read(0, min(8, ranges.size))
    length = header_length(prefix, where)
    end = 8 + length
    if end > ranges.size:
        raise ValidationError(
            f"{where}: the header claims {length} bytes but the file has {ranges.size}", fix="download the version whole and check it"
        )
    return parse_header(prefix + ranges.read(8, end), ranges.size, where)


def _version_pointer(m: Target, selector: str | None) -> tuple[VersionRecord, str, bytes]:
    """The version ``selector`` names (its content not pruned), its target and its pointer."""
    record = m.find(selector, fetch=True)
    m.require_content(record)
    pointer = m.pointer(record.ref)
    target = m.target_at(record.ref)
    if pointer is None:
        raise CheckpointNotFoundError(f"{m.spec.kind} version {record.version} records no {target}", fix="choose another version")
    return record, target, pointer


def _opened(m: Target, selector: str | None) -> tuple[VersionRecord, str, AbstractContextManager[ByteRanges]]:
    """The version ``selector`` names, its target, and (not yet entered) its byte ranges."""
    record, target, pointer = _version_pointer(m, selector)
    return record, target, m.ws.storage.open_ranges(record.ref, target, pointer)


def download_tensors(m: Target, selector: str | None, tensors: str, output_dir: Path, *, force: bool = False) -> TensorDownload:
    """Write the tensors ``tensors`` (comma-separated shell patterns) of version ``selector``
    as a safetensors file named as the version's file, in ``output_dir``, atomically."""
    patterns = parse_selector(tensors)
    record, target, opened = _opened(m, selector)
    dest = output_dir / PurePosixPath(target).name
    if dest.exists() and not force:
        raise WorkspaceDirtyError(
            f"{dest} already exists", fix=f"choose another output directory or {m.hint(cli='pass --force', python='pass force=True')}"
        )
    where = f"{target} at {record.version}"
    with opened as ranges:
        header = read_header(ranges, where)
        chosen = select(header, patterns)
        pieces = ranges.read_many([(t.start, t.end) for t in chosen])
        fetched = ranges.fetched
    head = subset_header(chosen, header.metadata)
    for leftover in atomic_leftovers(dest.parent, dest.name):
        leftover.unlink()
        m.echo(f"removed {leftover}, left by an interrupted download")
    with atomic_path(dest) as tmp, open(tmp, "wb") as handle:
        handle.write(head)
        crash_point("download.tensors-written")
        for piece in pieces:
            handle.write(piece)
    written = len(head) + sum(len(p) for p in pieces)
    m.echo(f"downloaded {len(chosen)} of {len(header.tensors)} tensors of {m.spec.kind} {record.version} to {dest}")
    return TensorDownload(dest, record.version, [t.name for t in chosen], written, fetched, ranges.size)


def list_tensors(m: Target, selector: str | None) -> tuple[str, SafetensorsHeader, int]:
    """The version, the checked header of its safetensors file, and the bytes fetched to read it."""
    record, target, opened = _opened(m, selector)
    with opened as ranges:
        return record.version, read_header(ranges, f"{target} at {record.version}"), ranges.fetched


def export_dvc(m: Target, selector: str | None, dest: Path, *, dry_run: bool = False) -> tuple[str, int]:
    """Write version ``selector``'s objects as plain DVC whole files under ``dest`` (a local
    DVC remote: ``dvc remote add --local -d export DIR && dvc pull``); the version and how many."""
    record, target, pointer = _version_pointer(m, selector)
    if dry_run:
        m.plan([f"write {m.spec.kind} {record.version} ({target}) as DVC objects under {dest}"])
        return record.version, 0
    dest.mkdir(parents=True, exist_ok=True)
    count = m.ws.storage.export_dvc(record.ref, target, pointer, dest)
    m.echo(
        f"exported {m.spec.kind} {record.version} ({count} object(s)) to {dest} in DVC's format: in a checkout of that version, dvc remote add --local -d export {dest} && dvc pull"
    )
    return record.version, count


class LazyTensors(Mapping[str, Any]):
    """Tensors of one stored safetensors version by name, each fetched (verified) and turned
    into a numpy array on first access, then kept. Close it (or use it in ``with``) to end
    the storage session."""

    def __init__(
        self, tensors: list[TensorInfo], metadata: dict[str, str] | None, ranges: ByteRanges, stack: ExitStack, version: str
    ) -> None:
        self._tensors = {t.name: t for t in tensors}
        self._ranges = ranges
        self._stack = stack
        self._loaded: dict[str, Any] = {}
        self.version = version
        self.metadata = metadata or {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            info = self._tensors[name]  # KeyError for a name the file does not hold
            self._loaded[name] = self._array(info, self._ranges.read(info.start, info.end))
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    @property
    def fetched(self) -> int:
        """Bytes transferred so far."""
        return self._ranges.fetched

    @staticmethod
    def _array(info: TensorInfo, data: bytes) -> Any:
        import numpy as np

        return np.frombuffer(data, dtype=np.dtype(NUMPY_DTYPES[info.dtype]).newbyteorder("<")).reshape(info.shape)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> LazyTensors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tensors(m: Target, selector: str | None = None, tensors: str | None = None) -> LazyTensors:
    """The tensors of version ``selector`` (default: the latest) matching ``tensors``
    (comma-separated shell patterns; default: all), fetched lazily."""
    record, target, opened = _opened(m, selector)
    stack = ExitStack()
    try:
        ranges = stack.enter_context(opened)
        header = read_header(ranges, f"{target} at {record.version}")
        chosen = select(header, parse_selector(tensors)) if tensors is not None else list(header.tensors)
    except BaseException:
        stack.close()
        raise
    return LazyTensors(chosen, header.metadata, ranges, stack, record.version)
