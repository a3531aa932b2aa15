"""Git remote URL templates: what ``cpv setup --hosting git --git-url-template``
accepts, how a team/model's URL is made from it, the presets the wizard fills
it from, and each host's fix line for a missing repository.

A template may hold ``{team}``, ``{model}`` and ``{repo}`` (the canonical
repository name, :func:`cpv_core.domain.names.repository_name`) and nothing
else: no attribute access, no format specs. The URL it makes is SSH
(``ssh://user@host:port/path`` or scp-like ``user@host:path``) or HTTPS, and
never carries a password or token (those come from credential helpers or
``env:NAME``).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from urllib.parse import urlparse

from cpv_core.domain.names import repository_name, validate_name
from cpv_core.errors import ValidationError

PLACEHOLDERS = ("team", "model", "repo")
_SCP_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)$")
_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,4}$")
TEMPLATE_FIX = "use e.g. git@github.com:ORG/{repo}.git, ssh://git@gitlab.example.com:2222/group/{team}-{model}.git or https://gitea.example.com/org/{repo}.git"


@dataclass(frozen=True)
class Location:
    """Where a git URL points: ``scheme`` is ``ssh`` or ``https`` (``http`` only for loopback)."""

    scheme: str
    host: str
    port: int
    user: str | None
    path: str


def parse_location(url: str) -> Location:
    """The parts of an SSH (URL or scp-like) or HTTPS git URL."""
    if "://" in url:
        parsed = urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme not in {"ssh", "https", "http"} or not parsed.hostname:
            raise ValidationError(f"git URL {url!r} is not an ssh:// or https:// URL with a host", fix=TEMPLATE_FIX)
        if scheme == "http" and parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise ValidationError(f"git URL {url!r} is plain http, which would send credentials in the clear", fix="use https:// (or ssh)")
        if parsed.password or (scheme != "ssh" and parsed.username):
            raise ValidationError(
                "the git URL carries a user or password (not shown: it may be a token)",
                fix="drop it from the URL: give the user with --git-username and the token as --git-token env:NAME",
            )
        default_port = {"ssh": 22, "https": 443, "http": 80}[scheme]
        try:
            port = parsed.port or default_port
        except ValueError:
            raise ValidationError(f"git URL {url!r} has an invalid port", fix=TEMPLATE_FIX) from None
        return Location(scheme if scheme != "http" else "https", parsed.hostname, port, parsed.username, parsed.path)
    match = _SCP_RE.fullmatch(url)
    if not match:
        raise ValidationError(f"git URL {url!r} is neither an ssh://, https:// nor an scp-like user@host:path URL", fix=TEMPLATE_FIX)
    return Location("ssh", match["host"], 22, match["user"], match["path"])


def check_template(template: object) -> str:
    """``template`` if it makes a usable git URL for any valid team and model."""
    if not isinstance(template, str) or not template.strip():
        raise ValidationError("the git URL template is empty", fix=TEMPLATE_FIX)
    if any(ord(ch) < 33 or ch in "\\\"'`$;|&<>" for ch in template):
        raise ValidationError(f"git URL template {template!r} contains a space, quote, control or shell character", fix=TEMPLATE_FIX)
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValidationError(f"git URL template {template!r} is not a valid template: {exc}", fix=TEMPLATE_FIX) from None
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS or spec or conversion:
            raise ValidationError(
                f"git URL template {template!r} uses {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}",
                fix="use only {team}, {model} and {repo}",
            )
    if not fields:
        raise ValidationError(
            f"git URL template {template!r} names no repository per model", fix="put {repo} (or {team} and {model}) in it"
        )
    location = parse_location(render(template, "team", "model"))
    if "::" in template or any(part.startswith("-") for part in (location.path, location.host, location.user or "")):
        raise ValidationError(f"git URL template {template!r} makes a URL git would read as an option", fix=TEMPLATE_FIX)
    return template


def render(template: str, team: str, model: str) -> str:
    """The URL of ``team``/``model``'s repository (both already valid names)."""
    return template.format(team=team, model=model, repo=repository_name(team, model))


@dataclass(frozen=True)
class Preset:
    """A git host the wizard knows: how its URLs look and how a missing repository is made."""

    name: str
    label: str
    host: str | None
    ssh: str
    https: str
    token_user: str
    create: str


PRESETS = {
    p.name: p
    for p in (
        Preset(
            "github", "GitHub", "github.com", "git@{host}:{owner}/{repo}.git", "https://{host}/{owner}/{repo}.git", "x-access-token",
            "create it: `gh repo create {owner}/{name} --private` (or https://{host}/new), then run the command again",
        ),
        Preset(
            "gitlab", "GitLab", "gitlab.com", "git@{host}:{owner}/{repo}.git", "https://{host}/{owner}/{repo}.git", "oauth2",
            "create it: `glab repo create {owner}/{name} --private` (or New project on https://{host}), then run the command again",
        ),
        Preset(
            "gitea", "Gitea / Forgejo", None, "git@{host}:{owner}/{repo}.git", "https://{host}/{owner}/{repo}.git", "cpv",
            "create it: New Repository on https://{host} under {owner} (or `tea repo create --name {name} --owner {owner}`), then run the command again",
        ),
        Preset(
            "bitbucket-cloud", "Bitbucket Cloud", "bitbucket.org", "git@{host}:{owner}/{repo}.git", "https://{host}/{owner}/{repo}.git",
            "x-token-auth", "create the repository {name} in workspace {owner} on https://{host}, then run the command again",
        ),
        Preset(
            "bitbucket-dc", "Bitbucket Data Center", None, "ssh://git@{host}:7999/{owner}/{repo}.git", "https://{host}/scm/{owner}/{repo}.git",
            "cpv", "create the repository {name} in project {owner} on https://{host}, then run the command again",
        ),
    )
}  # fmt: skip
PROTOCOLS = ("ssh", "https")


def check_owner(owner: str) -> str:
    """An organisation, group (``group/subgroup``), workspace or project key."""
    if not _OWNER_RE.fullmatch(owner) or ".." in owner:
        raise ValidationError(f"owner {owner!r} is not an organisation, group or workspace name", fix="e.g. my-org or group/subgroup")
    return owner


def check_host(host: str) -> str:
    """A host name, with ``:PORT`` for a server on another port."""
    name, _, port = host.partition(":")
    if not _HOST_RE.fullmatch(name) or (port and not (port.isdigit() and 1 <= int(port) <= 65535)):
        raise ValidationError(
            f"host {host!r} is not a host name (with an optional :PORT)", fix="e.g. gitlab.example.com or gitea.example.com:3000"
        )
    return host


def preset_template(preset: str, protocol: str, owner: str, host: str | None) -> str:
    """The URL template ``preset`` makes for ``owner`` on ``host`` (its own host by default)."""
    known = PRESETS.get(preset)
    if known is None:
        raise ValidationError(f"git host preset {preset!r} is unknown", fix=f"use one of {', '.join(PRESETS)} (or give --git-url-template)")
    if protocol not in PROTOCOLS:
        raise ValidationError(f"protocol {protocol!r} is not ssh or https", fix="use ssh or https")
    where = check_host(host or known.host or "")
    shape = known.ssh if protocol == "ssh" else known.https
    if protocol == "ssh" and ":" in where:  # an explicit port needs the ssh:// form
        shape = "ssh://git@{host}/{owner}/{repo}.git"
    return check_template(shape.replace("{host}", where).replace("{owner}", check_owner(owner)))


def preset_for(url: str, named: str | None) -> Preset | None:
    """The preset a URL belongs to: the one configured, else one known by its host."""
    if named in PRESETS:
        return PRESETS[named]
    host = parse_location(url).host.lower()
    for preset in PRESETS.values():
        if preset.host and host == preset.host:
            return preset
    return None


def create_fix(url: str, named: str | None, team: str, model: str) -> str:
    """How to create the missing repository ``url`` on its host."""
    location = parse_location(url)
    parts = location.path.strip("/").removesuffix(".git").rsplit("/", 1)
    owner, name = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
    preset = preset_for(url, named)
    if preset is None:
        return f"create the repository {location.path} on {location.host} (an empty bare repository: `git init --bare`), then run the command again"
    owner = owner.removeprefix("scm/")
    return preset.create.format(owner=owner or "OWNER", name=name or repository_name(team, model), host=location.host)


def validate_token_user(user: str) -> str:
    """The user name sent with a token over HTTPS."""
    return validate_name(user, "git user name")
