"""Values every network store's settings share: an endpoint URL without
credentials, its TCP reachability, and a secret named by reference
(``env:NAME``), never by value."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlparse

from cpv_core.errors import CredentialError, ValidationError

#: seconds to wait for a TCP connection before an endpoint counts as unreachable
CONNECT_TIMEOUT_S = 3
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def validate_endpoint(url: str | None, example: str) -> str | None:
    """``url`` without a trailing slash if it is an http(s) URL with a host and no
    user or password in it; None stays None."""
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname or parsed.username or parsed.password:
        raise ValidationError(f"endpoint URL {url!r} is not an http(s) URL without credentials", fix=f"pass e.g. {example}")
    return url.rstrip("/")


def tcp_reachable(url: str) -> tuple[bool, str]:
    """Whether the host and port of ``url`` accept a TCP connection within
    :data:`CONNECT_TIMEOUT_S`, and a line saying so."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return True, f"{parsed.hostname}:{port} accepts connections"
    except OSError as exc:
        return False, f"{parsed.hostname}:{port} is unreachable ({exc.strerror or type(exc).__name__})"


def parse_env_reference(value: str, what: str) -> str:
    """The variable name of ``env:NAME`` (or of a bare ``NAME``): how a secret is
    configured. A value that is not a variable name is refused without being echoed,
    as it may be the secret itself."""
    name = value[4:] if value.startswith("env:") else value
    if not _ENV_NAME_RE.fullmatch(name):
        raise ValidationError(
            f"the {what} must name an environment variable as env:NAME (the value given is not shown: it may be a secret)",
            fix=f"put the {what} in an environment variable and pass env:NAME, e.g. env:CPV_{what.upper().replace(' ', '_')}",
        )
    return name


def read_env_reference(name: str, what: str) -> str:
    """The value of environment variable ``name``, which holds the ``what``."""
    value = os.environ.get(name)
    if not value:
        raise CredentialError(
            f"the {what} is read from environment variable {name}, which is not set",
            fix=f"export {name}=... in this shell (cpv never stores the value)",
        )
    return value


def model_prefixes(children: Callable[[str], Iterable[str]]) -> list[tuple[str, str]]:
    """``(team, model)`` for every ``{team}/{model}/`` prefix of a bucket, given
    ``children(prefix)``: the names one level below ``prefix`` (a delimiter listing).
    The names are the store's data: the caller's plugin manager checks them."""
    return [(team, model) for team in children("") for model in children(f"{team}/")]
