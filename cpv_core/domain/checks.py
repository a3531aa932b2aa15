"""The result of checking a set-up (credentials, storage, hosting): one line per
check, and the report that is truthy when all passed. Re-exported by
:mod:`cpv_core.plugin.protocols`, where backends meet them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cpv_core.errors import ValidationError


@dataclass(frozen=True)
class CheckResult:
    """One line of a credential validation report.

    :param name: short identifier of the check (``"aws.bucket"``).
    :param ok: whether it passed.
    :param detail: what was checked / what went wrong (never a secret).
    :param fix: what to do when it failed.
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None


class ValidationReport:
    """The per-check result of :meth:`CPVConfig.validate_credentials`.

    Truthy when every check passed, so ``if config.validate_credentials():``
    works as in the seeds.
    """

    def __init__(self, checks: list[CheckResult]) -> None:
        self.checks = checks

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    def __bool__(self) -> bool:
        return self.ok

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.checks)

    def failed(self) -> list[CheckResult]:
        """The checks that did not pass."""
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``cpv validate --json``)."""
        return {
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in self.checks],
        }


def matching(pattern: re.Pattern[str], what: str, fix: str) -> Callable[[str, Mapping[str, str]], str]:
    """A setup question's check (:class:`cpv_core.plugin.protocols.SetupQuestion`): the answer must match ``pattern`` in full."""

    def check(value: str, answers: Mapping[str, str]) -> str:
        if not pattern.fullmatch(value):
            raise ValidationError(f"{what} {value!r} is not valid", fix=fix)
        return value

    return check
