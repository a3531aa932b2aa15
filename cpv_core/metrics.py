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
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from .errors import ValidationError

logger = logging.getLogger("cpv.metrics")

METRICS_FILE = "metrics.log"


def validate_metrics(metrics: Any) -> dict[str, Any]:
    """Return ``metrics`` as a plain dict of JSON values, or raise.

    Keys must be non-empty strings; numbers must be finite; values must be
    JSON-serialisable (numbers, strings, booleans, lists, nested objects).
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
        if not isinstance(key, str) or not key.strip():
            raise ValidationError(f"metric name {key!r} is not a non-empty string", fix="use names such as 'loss'")
        _check_value(key, value)
        clean[key] = value
    try:
        json.dumps(clean, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"metrics are not JSON-serialisable: {exc}", fix="use numbers, strings, booleans or lists") from None
    return clean


def _check_value(key: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"metric {key!r} is {value}, not a finite number", fix="record only finite values")
    if isinstance(value, Mapping):
        for sub_key, sub_value in value.items():
            _check_value(f"{key}.{sub_key}", sub_value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_value(key, item)
    elif value is not None and not isinstance(value, (int, float, str, bool)):
        raise ValidationError(
            f"metric {key!r} has a value of type {type(value).__name__}",
            fix="convert it to a number, string, boolean or list (e.g. float(tensor))",
        )


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
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning("metrics.log line %d is not valid JSON and was skipped", number)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def latest_metrics(records: Iterable[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    """The metrics of the newest record of ``kind`` (empty if none)."""
    latest: dict[str, Any] = {}
    for record in records:
        if record.get("kind", "model") == kind:
            latest = dict(record.get("metrics") or {})
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
