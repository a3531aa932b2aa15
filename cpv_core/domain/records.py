"""What a version records besides its bytes: messages and tag metadata.

Tag metadata is written by cpv but read back from the shared repository,
where anyone with push access can create a tag: :func:`clean_metadata` keeps
the fields whose shape is right and drops the others with one warning, so one
crafted tag never breaks listing, tagging or lineage for everyone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from cpv_core.domain.metrics import clean_code_origin, validate_metrics
from cpv_core.domain.versions import Version
from cpv_core.errors import ValidationError
from cpv_core.trust import check_relpath, visible

logger = logging.getLogger("cpv.records")

MAX_MESSAGE_BYTES = 64 * 1024
#: the upload messages a version records (characters)
MAX_UPLOAD_MESSAGE = 4000
_DIGEST_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9._-]{1,200}$")
_COUNT_KEYS = ("size", "nfiles")
_DIGEST_KEYS = ("digest", "model_digest", "data_digest")
_VERSION_KEYS = ("model", "data")
_LINEAGE_VERSION_KEYS = ("model", "data", "checkpoint")


def validate_message(message: object, what: str = "message") -> str | None:
    """Return ``message`` if it can be stored as a commit or tag message.

    :raises ValidationError: for a non-string, a NUL character (git cannot
        store it) or more than 64 KiB.
    """
    if message is None:
        return None
    if not isinstance(message, str):
        raise ValidationError(f"{what} {message!r} is not a string", fix="pass text, e.g. -m 'baseline'")
    if "\x00" in message:
        raise ValidationError(f"{what} contains a NUL character, which git cannot store", fix="remove it")
    if len(message.encode("utf-8", errors="surrogatepass")) > MAX_MESSAGE_BYTES:
        raise ValidationError(
            f"{what} is longer than {MAX_MESSAGE_BYTES // 1024} KiB",
            fix="shorten it; put long notes in a file that you upload with the data",
        )
    return message


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and bool(_DIGEST_RE.fullmatch(value))


def _is_version(value: Any) -> bool:
    return isinstance(value, str) and Version.is_valid(value)


def _clean_lineage(value: Any) -> dict[str, str] | None:
    if not isinstance(value, Mapping):
        return None
    out: dict[str, str] = {}
    for key, item in value.items():
        if key in _LINEAGE_VERSION_KEYS and _is_version(item):
            out[key] = item
        elif key == "data_digest" and _is_digest(item):
            out[key] = item
        else:
            return None
    return out


def clean_metadata(metadata: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fields of a version's metadata whose shape is right.

    Known fields are checked (metrics as :func:`validate_metrics` checks
    user input, sizes as whole numbers, digests, versions, the path as a
    relative path, lineage as version names); a field that fails is dropped
    and the tag named in one warning. Unknown fields are dropped too: they
    were not written by this version of cpv and nothing reads them.
    """
    clean: dict[str, Any] = {}
    bad: list[str] = []
    for key, value in metadata.items():
        ok = True
        if key in {"metrics", "params"}:
            try:
                value = validate_metrics(value)
            except ValidationError:
                ok = False
        elif key == "code":
            value = clean_code_origin(value)
            ok = value is not None
        elif key in _COUNT_KEYS:
            ok = _is_count(value)
        elif key in _DIGEST_KEYS:
            ok = _is_digest(value)
        elif key in _VERSION_KEYS:
            ok = _is_version(value)
        elif key == "path":
            try:
                check_relpath(value, where)
            except ValidationError:
                ok = False
        elif key == "lineage":
            value = _clean_lineage(value)
            ok = value is not None
        elif key == "upload_message":
            ok = isinstance(value, str) and len(value) <= MAX_UPLOAD_MESSAGE and "\x00" not in value
        else:
            continue
        if ok:
            clean[key] = value
        else:
            bad.append(str(key))
    if bad:
        logger.warning("%s: ignoring malformed metadata field(s) %s", visible(where), visible(", ".join(sorted(bad))))
    return clean
