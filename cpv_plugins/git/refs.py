"""What cpv reads and writes in git refs, as pure functions: tag names and
messages (``cpv-metadata:``), raw tag/commit objects, ``for-each-ref`` and
``cat-file --batch`` output, push porcelain and why a ref was rejected, stage records."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from cpv_core.domain.versions import Version
from cpv_core.plugin.protocols import RejectReason, StageEvent
from cpv_core.trust import visible

logger = logging.getLogger("cpv.git")

logger = logging.getLogger("cpv.git")


BRANCH = "main"


METADATA_PREFIX = "cpv-metadata: "
#: git commands that never change a ref (a read scope's listing survives them)
READ_ONLY_COMMANDS = frozenset(
    {"for-each-ref", "rev-parse", "cat-file", "config", "status", "merge-base", "diff", "log", "ls-files", "ls-remote", "rev-list", "show"}
)


TAG_RE = re.compile(r"^(?P<kind>[a-z][a-z0-9_-]{0,31})/(?P<version>v\d+\.\d+)$")


# One header line per ref (names and hashes only: git forbids spaces and
# control characters in ref names), then the raw object, framed by its size.
# No user text can break this framing, so no message can forge a record.
REF_FORMAT = "%(objectname) %(objecttype) %(raw:size) p%(*objectname) %(refname)%0a%(raw)"


IDENT_RE = re.compile(r"^(?P<name>.*?) <(?P<email>[^<>]*)> (?P<ts>-?\d{1,15}) (?P<tz>[+-]\d{4})$")


#: a stage change: ``stage/{kind}/{stage}/{n}``, an annotated tag on the version's commit
STAGE_RE = re.compile(r"^refs/tags/stage/(?P<kind>[a-z][a-z0-9_-]{0,31})/(?P<stage>[a-z][a-z0-9_-]{0,31})/(?P<n>[1-9][0-9]{0,5})$")


MAX_FORCED_RULES = 20


#: a version whose content gc removed: ``pruned/{kind}/{version}``
PRUNED_RE = re.compile(r"^refs/tags/pruned/(?P<kind>[a-z][a-z0-9_-]{0,31})/(?P<version>v\d+\.\d+)$")


# A server-side race on a ref; in an atomic push the refs that did not fail
# themselves are reported "atomic transaction failed" / "atomic push failed".
RACE_MARKERS = (
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
    "failed to lock",
    "atomic transaction failed",
    "atomic push failed",
)


ATOMIC_FOLLOWERS = ("atomic transaction failed", "atomic push failed")


#: the version of each kind published last (``refs/cpv/lease/model`` names its tag
#: object): moved under a lease by every publish, so a publish made from a stale view
#: of the versions is refused by the server, and a tag needs no fetch first
LATEST_PREFIX = "refs/cpv/lease/"


#: this workspace's view of the remote's ``refs/cpv/lease/*`` as of the last fetch or publish
SEEN_PREFIX = "refs/cpv/lease-seen/"


#: one ref per ``cpv gc`` run: ``refs/cpv/gc/running/{start}-{nonce}`` while it runs,
#: ``refs/cpv/gc/done/{start}-{nonce}`` once it has deleted (see :mod:`cpv_core.workspace.gc_fence`)
GC_PREFIX = "refs/cpv/gc/"


GC_RUN_RE = re.compile(r"^refs/cpv/gc/(?P<state>running|done)/(?P<run>(?P<start>[0-9]{1,12})-[0-9a-f]{8})$")


def encode_message(message: str, metadata: Mapping[str, Any]) -> str:
    """Tag message: the user's text, a blank line, then the metadata line (always the last line)."""
    text = (message or "").strip()
    line = METADATA_PREFIX + json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"{text}\n\n{line}\n" if text else f"{line}\n"


def decode_message(contents: str, where: str = "tag") -> tuple[str, dict[str, Any]]:
    """Inverse of :func:`encode_message`; tolerates tags made by plain git.

    Only the last line is metadata: a user's message that contains a line
    starting with ``cpv-metadata:`` stays part of the message and can never
    replace the metadata cpv wrote after it. A trailing PGP signature is dropped.
    """
    text = contents
    signature = text.rfind("\n-----BEGIN PGP SIGNATURE-----")
    if signature >= 0 and text.rstrip().endswith("-----END PGP SIGNATURE-----"):
        text = text[:signature]  # a signed tag: the signature follows the message
    lines = text.rstrip("\n").split("\n")
    metadata: dict[str, Any] = {}
    if lines and lines[-1].startswith(METADATA_PREFIX):
        raw = lines.pop()[len(METADATA_PREFIX) :]
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            metadata = parsed
        else:
            logger.warning("%s: unreadable cpv metadata was ignored", visible(where))
    return "\n".join(lines).strip(), metadata


def parse_ident(line: str) -> tuple[str, str]:
    """``(name, ISO-8601 date)`` of a ``tagger``/``committer`` header value."""
    match = IDENT_RE.fullmatch(line)
    if not match:
        return "", ""
    tz = match.group("tz")
    offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])) * (-1 if tz[0] == "-" else 1)
    try:
        when = datetime.fromtimestamp(int(match.group("ts")), timezone(offset)).isoformat()
    except (OverflowError, OSError, ValueError):
        when = ""
    return match.group("name"), when


def parse_object(raw: bytes) -> tuple[dict[str, str], str]:
    """Headers and message of a raw git tag or commit object."""
    text = raw.decode("utf-8", errors="replace")
    head, _, message = text.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        key, _, value = line.partition(" ")
        headers.setdefault(key, value)
    return headers, message


def iter_ref_objects(out: bytes) -> Iterator[tuple[str, str, str, str, bytes]]:
    """``(ref, type, object, peeled, raw)`` from ``for-each-ref --format=REF_FORMAT`` output."""
    pos = 0
    while pos < len(out):
        end = out.find(b"\n", pos)
        if end < 0:
            return
        fields = out[pos:end].decode("ascii", errors="replace").split(" ", 4)
        if len(fields) != 5 or not fields[2].isdigit():
            return
        obj, otype, size, peeled, ref = fields
        start = end + 1
        raw = out[start : start + int(size)]
        pos = start + int(size) + 1  # the object, then the format's trailing newline
        yield ref, otype, obj, peeled[1:], raw


def parse_push_porcelain(output: str) -> list[tuple[str, str, str]]:
    """``(flag, ref, summary)`` for every ref line of ``git push --porcelain``."""
    rows = []
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            rows.append((parts[0], parts[1].split(":")[-1], parts[2]))
    return rows


def classify_rejection(summary: str) -> RejectReason | str:
    """The :class:`PushRejected` reason for git's summary of a rejected ref (the
    summary itself when it names no known reason: it becomes the error's words)."""
    if "already exists" in summary:
        return RejectReason.EXISTS
    if "stale info" in summary:
        return RejectReason.STALE  # the lease: someone published a version since this view was fetched
    if any(marker in summary for marker in RACE_MARKERS):
        return RejectReason.RACE  # another push held the ref at that moment (a true server-side race)
    if "non-fast-forward" in summary or "fetch first" in summary:
        return RejectReason.NON_FAST_FORWARD
    return summary


def stage_event_from(kind: str, stage: str, number: int, ref: str, metadata: Mapping[str, Any]) -> StageEvent | None:
    """A :class:`StageEvent` from a stage tag's metadata (written by anyone with push
    access, so checked: a known action, a well-formed version, a short list of rule
    texts); None when it is not what cpv writes."""
    action, version, forced = metadata.get("action"), metadata.get("version"), metadata.get("forced", [])
    if action == "promote":
        if not isinstance(version, str) or not Version.is_valid(version):
            return None
    elif action == "demote":
        version = None
    else:
        return None
    if not isinstance(forced, list) or len(forced) > MAX_FORCED_RULES or not all(isinstance(f, str) and len(f) <= 200 for f in forced):
        return None
    return StageEvent(kind=kind, stage=stage, number=number, version=version, ref=ref, forced=tuple(forced))


def parse_cat_file_batch(raw: bytes, count: int) -> list[bytes | None]:
    """The ``count`` answers of ``git cat-file --batch``: a blob's bytes, None for a
    missing, ambiguous or non-blob object."""
    out: list[bytes | None] = []
    pos = 0
    for _ in range(count):
        end = raw.index(b"\n", pos)
        header = raw[pos:end].split()
        pos = end + 1
        if len(header) != 3 or not header[2].isdigit():  # "<spec> missing" / "ambiguous"
            out.append(None)
            continue
        size = int(header[2])
        data = raw[pos : pos + size]
        pos += size + 1  # the object, then a newline
        out.append(data if header[1] == b"blob" else None)
    return out
