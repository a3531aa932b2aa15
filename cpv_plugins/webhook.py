"""Listener plugin ``webhook``: posts each new version and stage change to a
Slack- or Teams-compatible incoming webhook.

Off until configured: ``cpv config set notify.webhook https://hooks.slack.com/…``
(or ``env:NAME`` to read the URL from the environment variable ``NAME``, e.g. a
CI secret). The body is JSON with a ``text`` line, which both Slack and Teams
show, and the structured event under ``cpv``. A webhook URL carries its own
token, so it is declared secret: masked by ``cpv config show``, and errors name
only its host.

Uses the standard library only (``urllib``): the default install stays lean.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cpv_core import hookimpl
from cpv_core.domain.metrics import format_metrics
from cpv_core.plugin.protocols import SettingInfo
from cpv_core.trust import visible

if TYPE_CHECKING:  # cpv_core.plugin.events is imported when an event comes, not at start-up
    from cpv_core.plugin.events import PublishedVersion, StageChange

logger = logging.getLogger("cpv.webhook")

URL_KEY = "notify.webhook"
ENV_PREFIX = "env:"


@hookimpl
def cpv_settings() -> list[SettingInfo]:
    return [
        SettingInfo(
            URL_KEY,
            "Slack/Teams-compatible webhook URL (or env:NAME) told of new versions and stage changes",
            secret=True,
            check=check_url,
        )
    ]


def check_url(value: str) -> None:
    """Refuse, without repeating it, a value that cannot be a webhook URL: white space or
    control characters anywhere (a pasted URL with a line break would put its secret
    path in an error), or anything but an http(s) URL with a host (or ``env:NAME``)."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{URL_KEY} contains white space or control characters; a URL has none (was it pasted with a line break?)")
    if value.startswith(ENV_PREFIX):
        return
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{URL_KEY} is not an http(s) URL with a host")


def webhook_url(config: Any) -> str | None:
    """The configured URL (resolving ``env:NAME``), None when the notifier is off.
    Anything but an http(s) URL is refused with an error naming the key, not the value."""
    raw = config.get_config(URL_KEY)
    if not raw:
        return None
    value = str(raw)
    if value.startswith(ENV_PREFIX):
        value = os.environ.get(value[len(ENV_PREFIX) :], "")
        if not value:
            raise ValueError(
                f"{URL_KEY} names the environment variable {raw[len(ENV_PREFIX) :]!r}, which is not set: "
                f"export it, or `cpv config set {URL_KEY} https://…`"
            )
    try:
        check_url(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; set it with `cpv config set {URL_KEY} https://…`") from None
    return value


def no_redirects() -> Any:
    """A urllib opener that follows no redirect: a webhook that answers 3xx is reported,
    never followed (the body would go to whatever host it names)."""
    import urllib.request

    class Refuse(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # urllib then raises HTTPError with the 3xx code

    return urllib.request.build_opener(Refuse)


def post(url: str, payload: dict[str, Any], timeout: float) -> None:
    """POST ``payload`` as JSON; raise an error naming the host only (the URL is a secret)."""
    import urllib.error
    import urllib.request  # here, not at the top: it pulls in http.client and ssl, which `cpv --help` never needs

    host = urlsplit(url).hostname
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json", "User-Agent": "cpv"}, method="POST"
    )
    try:
        with no_redirects().open(request, timeout=timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        moved = " (a redirect: cpv follows none; set the URL it names)" if 300 <= exc.code < 400 else ""
        raise RuntimeError(
            f"the webhook at {host} answered HTTP {exc.code}{moved}: check that it is still active, or replace {URL_KEY}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        shown = reason if isinstance(reason, (str, OSError)) and url not in str(reason) else type(reason).__name__
        raise RuntimeError(f"the webhook at {host} could not be reached ({shown}): check the network, or {URL_KEY}") from None
    except Exception as exc:  # http.client.InvalidURL and kin carry the URL (its secret path): name the type only
        raise RuntimeError(f"the webhook at {host} could not be posted to ({type(exc).__name__}): check {URL_KEY}") from None


def version_message(record: PublishedVersion) -> dict[str, Any]:
    """The body for a new version: a ``text`` line and the event under ``cpv``."""
    metrics = format_metrics(dict(record.metrics)) if record.metrics else "no metrics"
    text = f"{record.team}/{record.model}: {record.kind} {record.version} published by {record.author or 'someone'} ({metrics})"
    if record.message:
        text += f": {record.message}"
    return {"text": literal(text), "mrkdwn": False, "cpv": {"event": "version_published", **record.to_dict()}}


def stage_message(change: StageChange) -> dict[str, Any]:
    """The body for a stage change."""
    who = change.author or "someone"
    if change.version is None:
        text = f"{change.team}/{change.model}: {change.kind} stage {change.stage} emptied by {who}"
    else:
        text = f"{change.team}/{change.model}: {change.kind} {change.version} promoted to {change.stage} by {who}"
        if change.previous and change.previous != change.version:
            text += f" (was {change.previous})"
    if change.forced:
        text += f"; rules overridden: {'; '.join(change.forced)}"
    if change.message:
        text += f": {change.message}"
    return {"text": literal(text), "mrkdwn": False, "cpv": {"event": "stage_changed", **change.to_dict()}}


def literal(text: str) -> str:
    """``text`` as Slack and Teams show it, never as markup: control characters escaped,
    and ``&``, ``<``, ``>`` as entities, so a teammate's ``<!channel>`` or
    ``<https://x|label>`` is shown as typed instead of pinging everyone or hiding a link."""
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _send(config: Any, payload: dict[str, Any]) -> None:
    from cpv_core.plugin.events import listener_timeout

    url = webhook_url(config)
    if url is not None:
        post(url, payload, listener_timeout(config))


@hookimpl
def cpv_version_published(record: PublishedVersion, config: Any) -> None:
    _send(config, version_message(record))


@hookimpl
def cpv_stage_changed(change: StageChange, config: Any) -> None:
    _send(config, stage_message(change))
