"""What changed inside two ``.safetensors`` files, tensor by tensor.

Uses the ``safetensors`` package's numpy API (no torch): the headers give
each tensor's dtype and shape; a tensor present in both with the same dtype
and shape is loaded one at a time (never the whole model in memory) and
compared: unchanged, or changed with the largest absolute difference and the
relative L2 change ``||b - a|| / ||a||``. Frozen layers of a fine-tune show
as unchanged. A dtype numpy cannot hold (bfloat16) is compared byte for byte.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpv_core.errors import ValidationError

SUFFIX = ".safetensors"


@dataclass
class TensorDiff:
    """``b - a`` for one safetensors file."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reshaped: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    #: the tensors equal on both sides, by name ("which layers were frozen")
    unchanged_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def available() -> bool:
    """Whether the optional ``safetensors`` and ``numpy`` packages are installed."""
    try:
        import numpy  # noqa: F401
        import safetensors  # noqa: F401
    except ImportError:
        return False
    return True


def _layout(handle: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    layout = {}
    for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
        piece = handle.get_slice(name)
        layout[name] = (str(piece.get_dtype()), tuple(piece.get_shape()))
    return layout


def diff_files(a: Path | None, b: Path | None) -> TensorDiff:
    """Compare two safetensors files (None: the file is absent on that side)."""
    from safetensors import safe_open

    result = TensorDiff()
    label = next((p.name for p in (b, a) if p is not None), "the file")
    try:
        with _open(safe_open, a) as fa, _open(safe_open, b) as fb:
            la = _layout(fa) if fa is not None else {}
            lb = _layout(fb) if fb is not None else {}
            result.added = sorted(set(lb) - set(la))
            result.removed = sorted(set(la) - set(lb))
            for name in sorted(set(la) & set(lb)):
                if la[name] != lb[name]:
                    result.reshaped.append(
                        {
                            "name": name,
                            "a": {"dtype": la[name][0], "shape": list(la[name][1])},
                            "b": {"dtype": lb[name][0], "shape": list(lb[name][1])},
                        }
                    )
                    continue
                change = _compare(fa, fb, name)
                if change is not None and change.pop("bytes_only", False) and raw_bytes(a, name) == raw_bytes(b, name):
                    change = None
                if change is None:
                    result.unchanged += 1
                    result.unchanged_names.append(name)
                else:
                    result.changed.append(change)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError, header problems are ValueErrors
        raise ValidationError(
            f"cannot read the tensors of {label}: {type(exc).__name__}: {str(exc)[:200]}",
            fix="the file-level diff above still holds; check that the file is a valid .safetensors file",
        ) from None
    return result


def _open(opener: Any, path: Path | None) -> Any:
    """``safe_open(path, "np")``, or an empty context (None) for an absent side."""
    return opener(str(path), framework="np") if path is not None else nullcontext()


def _compare(fa: Any, fb: Any, name: str) -> dict[str, Any] | None:
    """None when tensor ``name`` is equal on both sides; else how it changed."""
    import numpy as np

    try:
        x, y = fa.get_tensor(name), fb.get_tensor(name)
    except Exception:  # noqa: BLE001 - a dtype numpy has no type for (bfloat16): compared byte for byte by the caller
        return {"name": name, "max_abs": None, "rel_l2": None, "bytes_only": True}
    if np.array_equal(x, y):
        return None
    delta = y.astype(np.float64) - x.astype(np.float64)
    base = float(np.linalg.norm(x.astype(np.float64)))
    change = float(np.linalg.norm(delta))
    return {
        "name": name,
        "max_abs": float(np.max(np.abs(delta))) if delta.size else 0.0,
        "rel_l2": change / base if base > 0 else None,  # None: the tensor was all zeros before
    }


MAX_HEADER_BYTES = 100 * 1024 * 1024  # what safetensors itself accepts


def raw_bytes(path: Path | None, name: str) -> bytes:
    """The stored bytes of tensor ``name`` (for dtypes numpy cannot hold), from the
    file's own header: 8-byte little-endian length, JSON, then the data."""
    import json
    import struct

    if path is None:
        return b""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"header of {length} bytes")
        header = json.loads(handle.read(length))
        start, end = header[name]["data_offsets"]
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
            raise ValueError(f"bad offsets for {name}")
        handle.seek(8 + length + start)
        return handle.read(end - start)
