"""Validation of user-supplied names (team, model) before any I/O.

Names end up in directory paths, git URLs, S3 keys and ref names, so they are
checked against an allowlist, not a blocklist.
"""

from __future__ import annotations

import re

from cpv_core.errors import ValidationError

NAME_RULE = (
    "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, not containing '..', not ending in '.', '.git' or '.lock'"
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Names that mean something special to Windows file systems or to git.
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
    "head",
    "fetch_head",
    "orig_head",
}


def validate_name(value: object, what: str) -> str:
    """Return ``value`` if it is an acceptable team/model/workspace name.

    :param what: what the value is, for the message ("team name", "model name").
    :raises ValidationError: quoting the value and the rule.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{what} {value!r} is not a string", fix=f"use {NAME_RULE}")
    problem = None
    if not _NAME_RE.fullmatch(value):
        problem = "it contains a character or starts with one that is not allowed" if value else "it is empty"
        if len(value) > 64:
            problem = f"it is {len(value)} characters long"
    elif ".." in value:
        problem = "it contains '..'"
    elif value.endswith((".", ".git", ".lock")):
        problem = "it has a reserved ending"
    elif value.lower().split(".")[0] in _RESERVED:
        problem = "it is a reserved name"
    if problem:
        raise ValidationError(f"{what} {value!r} is not allowed: {problem}", fix=f"use {NAME_RULE}")
    return value


def repository_name(team: str, model: str) -> str:
    """The canonical name of a team/model's git repository: ``{team}-{model}``,
    lower-cased (as Bitbucket, GitHub and GitLab slugs are); what ``{repo}`` means
    in a hosting URL template."""
    return validate_name(f"{team}-{model}".lower(), "repository name")
