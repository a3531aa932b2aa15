"""``metrics.log``: one JSON object per line, one record per upload.

A record: ``{"timestamp": ..., "kind": "model", "event": "upload",
"metrics": {...}, "message": ..., "digest": ..., "size": ...}``. Records are
only ever appended (a revert appends a record too), so the file is a history
that merges cleanly (git's ``union`` merge driver). The version a record
belongs to is not written into the file (the tag is created after the
commit); readers learn it from the tags, see :func:`annotate_versions`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from cpv_core.errors import ValidationError
from cpv_core.trust import visible

logger = logging.getLogger("cpv.metrics")

METRICS_FILE = "metrics.log"


MAX_METRICS_BYTES = 1024 * 1024
MAX_METRICS_DEPTH = 32
_FLOAT_MAX = sys.float_info.max


def validate_metrics(metrics: Any) -> dict[str, Any]:
    """Return ``metrics`` as a plain dict of JSON values, or raise.

    Keys must be non-empty strings; numbers must be finite and within the
    range of a float; values must be JSON values (numbers, strings,
    booleans, lists, nested objects) nested at most 32 deep; the whole
    record at most 1 MiB as JSON. The same rules apply to metrics read back
    from the repository.
    """
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ValidationError(
            f"metrics must be a mapping of name to value, got {type(metrics).__name__}",
            fix='pass e.g. {"loss": 0.25, "accuracy": 0.97}',
        )
    clean: dict[str, Any] = {}
    for key, value in metrics.items():
        _check_key(key)
        _check_value(key, value, 1)
        clean[key] = value
    try:
        size = len(json.dumps(clean, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"metrics are not JSON-serialisable: {exc}", fix="use numbers, strings, booleans or lists") from None
    if size > MAX_METRICS_BYTES:
        raise ValidationError(
            f"metrics are {size} bytes as JSON, more than the {MAX_METRICS_BYTES // 1024} KiB allowed",
            fix="record summary numbers; keep large arrays in a file uploaded with the model",
        )
    return clean


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not key.strip():
        raise ValidationError(f"metric name {visible(repr(key))} is not a non-empty string", fix="use names such as 'loss'")


def _check_value(key: str, value: Any, depth: int) -> None:
    if depth > MAX_METRICS_DEPTH:
        raise ValidationError(
            f"metric {visible(repr(key[:80]))} is nested more than {MAX_METRICS_DEPTH} levels deep", fix="flatten it (e.g. acc.top1 = 0.9)"
        )
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"metric {visible(repr(key))} is {value}, not a finite number", fix="record only finite values")
    if isinstance(value, int) and abs(value) > _FLOAT_MAX:
        raise ValidationError(
            f"metric {visible(repr(key))} is an integer of {value.bit_length()} bits, beyond a float's range",
            fix="record it as a string or a smaller number",
        )
    if isinstance(value, (int, float)):
        return
    if isinstance(value, Mapping):
        for sub_key, sub_value in value.items():
            _check_key(sub_key)
            _check_value(f"{key}.{sub_key}", sub_value, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_value(key, item, depth + 1)
    else:
        raise ValidationError(
            f"metric {visible(repr(key))} has a value of type {type(value).__name__}",
            fix="convert it to a number, string, boolean or list (e.g. float(tensor))",
        )


def parse_pairs(text: str, option: str = "--metrics") -> dict[str, Any]:
    """``loss=0.2,wer=0.04`` as ``{"loss": 0.2, "wer": 0.04}`` (the shorthand W&B and the
    Hub users type): each value is read as a JSON number, true/false/null, else kept as
    text; a key given twice, an empty key or a pair without ``=`` is a clear error."""
    pairs: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ValidationError(
                f"{option} {text!r}: {item.strip()!r} is not NAME=VALUE", fix=f"e.g. {option} loss=0.2,wer=0.04 (or a JSON object)"
            )
        if key in pairs:
            raise ValidationError(f"{option} {text!r} gives {key!r} twice", fix="give each name once")
        pairs[key] = _pair_value(raw)
    return pairs


def _pair_value(raw: str) -> Any:
    if raw in {"true", "false", "null"}:
        return json.loads(raw)
    try:
        number = float(raw)
    except ValueError:
        return raw
    if not math.isfinite(number):
        return raw  # "nan", "inf": text, as a metric value must be finite
    return int(raw) if raw.lstrip("+-").isdigit() and abs(int(raw)) < 2**53 else number


def make_record(kind: str, event: str, metrics: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A new log record stamped with the current UTC time."""
    record: dict[str, Any] = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kind": kind,
        "event": event,
        "metrics": dict(metrics),
    }
    record.update({k: v for k, v in extra.items() if v is not None})
    return record


def encode_record(record: Mapping[str, Any]) -> bytes:
    """One JSON line, newline-terminated."""
    return json.dumps(record, sort_keys=True, allow_nan=False).encode() + b"\n"


def parse_log(content: bytes | str | None) -> list[dict[str, Any]]:
    """All well-formed records; a damaged line is skipped with a warning."""
    if not content:
        return []
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    records = []
    skipped = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        record = _parse_line(line)
        if record is None:
            skipped.append(number)
        else:
            records.append(record)
    if skipped:
        shown = ", ".join(str(n) for n in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        logger.warning("metrics.log: skipped %d malformed line(s): %s", len(skipped), shown)
    return records


_COMMIT_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def clean_code_origin(value: Any) -> dict[str, Any] | None:
    """The training code's origin as a version records it (``commit``, ``branch``,
    ``dirty``), or None when it is not of that shape (it is data from the repository)."""
    if not isinstance(value, Mapping) or set(value) - {"commit", "branch", "dirty"}:
        return None
    commit, branch, dirty = value.get("commit"), value.get("branch", ""), value.get("dirty")
    if not isinstance(commit, str) or not _COMMIT_RE.fullmatch(commit) or not isinstance(dirty, bool):
        return None
    if not isinstance(branch, str) or len(branch) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in branch):
        return None
    return {"commit": commit, "branch": branch, "dirty": dirty}


def _parse_line(line: str) -> dict[str, Any] | None:
    """One well-formed record, or None: a JSON object whose ``kind``/``event``
    are strings and whose ``metrics`` pass :func:`validate_metrics`."""
    if len(line) > 2 * MAX_METRICS_BYTES:
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    if not all(isinstance(record.get(k, ""), str) for k in ("kind", "event", "message", "timestamp")):
        return None
    try:
        record["metrics"] = validate_metrics(record.get("metrics"))
    except ValidationError:
        return None
    if "params" in record:  # added by cpv 0.4; a malformed one is dropped, the record kept
        try:
            record["params"] = validate_metrics(record["params"])
        except ValidationError:
            del record["params"]
    if "code" in record and clean_code_origin(record["code"]) is None:
        del record["code"]
    return record


def latest_metrics(records: Iterable[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    """The metrics of the newest record of ``kind`` (empty if none)."""
    latest: dict[str, Any] = {}
    for record in records:
        if record.get("kind", "model") == kind:
            latest = dict(record.get("metrics") or {})
    return latest


def latest_field(records: Iterable[Mapping[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """Field ``name`` (``params``, ``code``) of the newest record of ``kind`` ({} when that
    record has none: like its metrics, it describes the upload it came with)."""
    latest: dict[str, Any] = {}
    for record in records:
        if record.get("kind", "model") == kind:
            value = record.get(name)
            latest = dict(value) if isinstance(value, Mapping) else {}
    return latest


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Side-by-side metrics with numeric deltas (``b - a``)."""
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        delta = None
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool) and not isinstance(vb, bool):
            delta = vb - va
        out[key] = {"a": va, "b": vb, "delta": delta}
    return out


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metrics as one level, keys joined with dots (``{"acc": {"top1": 0.9}}`` -> ``acc.top1``)."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_metrics(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (never a bool); else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def metric_number(metrics: Mapping[str, Any], name: str) -> float | None:
    """The numeric value of metric ``name`` (dotted for nested keys: ``acc.top1``), or None."""
    return as_number(flatten_metrics(metrics).get(name))


def format_value(value: Any) -> str:
    """A metric value as people write it: ``0.1``, ``true``, ``null``, text as is, lists as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """``loss=0.1 wer=0.042 acc.top1=0.9``: no Python reprs, nested keys flattened."""
    return " ".join(f"{key}={format_value(value)}" for key, value in flatten_metrics(metrics).items())
