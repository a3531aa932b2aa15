"""The records lifecycle-event listeners get: plain data, never a workspace or a
backend (a listener reports, it does not act on the model). Delivery is
:mod:`cpv_core.plugin.events`; building them from a workspace is
:mod:`cpv_core.workspace.announce`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PublishedVersion:
    """A version that is now on the remote (``cpv_version_published``).

    :param kind: ``"model"``, ``"data"`` or ``"checkpoint"`` (a combined version).
    :param source_uri: where the stored bytes are (``s3://bucket/…/files/md5/ab/…``,
        ``file:///…``); empty for a combined version, which names other versions.
    :param remote: the git remote the version was pushed to.
    """

    team: str
    model: str
    kind: str
    version: str
    commit: str
    author: str
    date: str
    message: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    digest: str = ""
    size: int = 0
    path: str = ""
    source_uri: str = ""
    remote: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class StageChange:
    """A stage that now has another holder (``cpv_stage_changed``).

    :param version: the version promoted to ``stage``; None when the stage was emptied.
    :param previous: the version that held ``stage`` before, if any.
    :param forced: the stage rules the change overrode (``--force``).
    """

    team: str
    model: str
    kind: str
    stage: str
    version: str | None
    previous: str | None
    author: str
    date: str
    message: str
    forced: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class UploadFinished:
    """An upload whose commit is on the remote (``cpv_upload_finished``); not yet a version.

    :param changed: False when the content was already stored and nothing was committed.
    :param seconds: how long the upload took, start to push.
    """

    team: str
    model: str
    kind: str
    path: str
    commit: str | None
    digest: str
    size: int
    nfiles: int
    metrics: Mapping[str, Any]
    changed: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return asdict(self)
