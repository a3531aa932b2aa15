"""Version numbers ``v{major}.{minor}``: parse, format, order, bump. Pure, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cpv_core.errors import ValidationError

_VERSION_RE = re.compile(r"^v(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$")
#: the largest major or minor number (six digits, what the tag parser accepts)
MAX_COMPONENT = 999_999


@dataclass(frozen=True, order=True)
class Version:
    """A checkpoint version; orders numerically (v0.10 > v0.9)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``"v1.2"``; raise :class:`ValidationError` naming the value otherwise."""
        if not isinstance(text, str):
            raise ValidationError(
                f"version tag {text!r} is not a string",
                fix="pass a tag such as 'v1.0'",
            )
        match = _VERSION_RE.fullmatch(text)
        if not match:
            raise ValidationError(
                f"version tag {text!r} is not of the form v{{major}}.{{minor}}",
                fix="use e.g. 'v0.1', 'v1.0' or 'v2.13' (no leading zeros, no suffixes)",
            )
        version = cls(int(match.group(1)), int(match.group(2)))
        if version == cls(0, 0):
            raise ValidationError(
                "version tag 'v0.0' is not allowed: versions start at v0.1",
                fix="use 'v0.1' or later",
            )
        return version

    @classmethod
    def is_valid(cls, text: str) -> bool:
        """True when ``text`` parses as a version."""
        try:
            cls.parse(text)
        except ValidationError:
            return False
        return True

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}"

    @property
    def at_ceiling(self) -> bool:
        """A component is :data:`MAX_COMPONENT`: no numbering goes on from it, so cpv never
        allocates from it nor takes it for the latest (:func:`numbered_versions`)."""
        return self.major >= MAX_COMPONENT or self.minor >= MAX_COMPONENT

    def bump_minor(self) -> Version:
        """``v1.2`` -> ``v1.3``; :class:`ValidationError` past ``MAX_COMPONENT``."""
        if self.minor >= MAX_COMPONENT:
            raise ValidationError(
                f"there is no minor version after {self}: versions go up to v{self.major}.{MAX_COMPONENT}",
                fix="bump the major version instead (--major / major=True), or pass an explicit --version",
            )
        return Version(self.major, self.minor + 1)

    def bump_major(self) -> Version:
        """``v1.2`` -> ``v2.0``; :class:`ValidationError` past ``MAX_COMPONENT``."""
        if self.major >= MAX_COMPONENT:
            raise ValidationError(
                f"there is no major version after {self}: versions go up to v{MAX_COMPONENT}.x", fix="pass an explicit free --version"
            )
        return Version(self.major + 1, 0)


FIRST_VERSION = Version(0, 1)


def next_version(existing: Iterable[Version], *, major: bool = False) -> Version:
    """The version after the highest of ``existing``.

    With nothing yet: ``v0.1`` (or ``v1.0`` for a major bump).
    """
    versions = numbered_versions(existing)
    if not versions:
        return Version(1, 0) if major else FIRST_VERSION
    latest = max(versions)
    return latest.bump_major() if major else latest.bump_minor()


def numbered_versions(existing: Iterable[Version]) -> list[Version]:
    """``existing`` without the versions at the ceiling (:attr:`Version.at_ceiling`): one
    pushed ``v999999.999999`` must neither take ``latest`` nor stop every auto-tag."""
    return [v for v in existing if not v.at_ceiling]


def sort_versions(texts: Iterable[str]) -> list[str]:
    """Sort version strings numerically, dropping anything that is not a version."""
    parsed = [Version.parse(t) for t in texts if Version.is_valid(t)]
    return [str(v) for v in sorted(parsed)]
