"""Hosting backend ``git`` and credential provider ``git``: each team/model's
repository on any git server (GitHub, GitLab, Gitea, Bitbucket, a plain sshd or
``git http-backend``), over SSH or HTTPS.

The URL comes from a template (:mod:`cpv_plugins.git_url`) with ``{team}``,
``{model}`` and ``{repo}``. Credentials are never stored:

* SSH: an optional key by path (else the user's agent and ``~/.ssh/config``),
  host keys checked as for Bitbucket (:mod:`cpv_plugins.ssh_command`);
* HTTPS: git's own credential helpers, or a token read at run time from the
  environment variable named in config (``--git-token env:NAME``). The token
  reaches git through a credential helper given in git's environment
  (``GIT_CONFIG_*``), so it is in no file, no URL, no command line and no log;
  a self-signed server is trusted through ``--git-ca-file`` (``GIT_SSL_CAINFO``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpv_core import hookimpl
from cpv_core.errors import ConfigError, CredentialError, RepositoryError, ValidationError
from cpv_core.plugin.bases import HostingBackendBase
from cpv_core.plugin.protocols import BackendContext, CheckResult, CredentialProviderInfo, HostingBackendInfo, SetupChoice, SetupQuestion
from cpv_core.plugin.settings import parse_flag
from cpv_plugins.endpoints import parse_env_reference, read_env_reference, tcp_reachable
from cpv_plugins.git.plumbing import ls_remote_heads
from cpv_plugins.git_url import (
    PRESETS,
    PROTOCOLS,
    Location,
    check_host,
    check_owner,
    check_template,
    create_fix,
    parse_location,
    preset_template,
    render,
    validate_token_user,
)
from cpv_plugins.ssh_command import CONNECT_TIMEOUT_S, SshIdentity, plain_path

if TYPE_CHECKING:
    import click

KEYS = ("url_template", "preset", "username", "token_env", "ssh_key_path", "known_hosts_file", "ca_file", "connection_sharing")
SETUP_OPTIONS = (
    "url_template",
    "preset",
    "owner",
    "host",
    "protocol",
    "username",
    "token",
    "ssh_key",
    "known_hosts",
    "ca_file",
    "connection_sharing",
)
DEFAULT_TOKEN_USER = "cpv"


class GitSettings:
    """The ``git`` section of the cpv config."""

    def __init__(self, section: dict[str, Any] | None) -> None:
        section = section or {}
        self.url_template = str(section.get("url_template") or "")
        self.preset = section.get("preset")
        self.username = section.get("username") or DEFAULT_TOKEN_USER
        self.token_env = section.get("token_env")
        self.ssh_key_path = Path(section["ssh_key_path"]) if section.get("ssh_key_path") else None
        self.known_hosts_file = Path(section["known_hosts_file"]) if section.get("known_hosts_file") else None
        self.ca_file = section.get("ca_file")
        self.connection_sharing = parse_flag(
            section.get("connection_sharing"), "git.connection_sharing", True, "cpv config set git.connection_sharing true or false"
        )

    def url(self, team: str, model: str) -> str:
        if not self.url_template:
            raise ConfigError("no git URL template is configured", fix="run `cpv setup --hosting git --git-url-template TEMPLATE`")
        return render(check_template(self.url_template), team, model)

    def location(self) -> Location:
        """Host, port and user every model's URL shares (only the path differs)."""
        return parse_location(self.url("team", "model"))

    def environment(self) -> dict[str, str]:
        """What git needs to authenticate, as environment variables that hold no secret."""
        env: dict[str, str] = {}
        where = self.location()
        if where.scheme == "ssh":
            identity = SshIdentity(
                self.ssh_key_path, self.known_hosts_file, where.host, where.port, where.user or "git", self.connection_sharing
            )
            env["GIT_SSH_COMMAND"] = identity.command()
        if self.token_env:
            # git runs the helper with "get"; it prints the variable's value at that moment
            helper = (
                f'!f() {{ test "$1" = get || exit 0; echo username={self.username}; printf \'password=%s\\n\' "${self.token_env}"; }}; f'
            )
            # after any GIT_CONFIG_* entries the user's shell already gives git; an empty
            # helper first, so the configured token wins over any helper in the user's files
            given = os.environ.get("GIT_CONFIG_COUNT", "0")
            first = int(given) if given.isdigit() else 0
            env[f"GIT_CONFIG_KEY_{first}"] = env[f"GIT_CONFIG_KEY_{first + 1}"] = "credential.helper"
            env[f"GIT_CONFIG_VALUE_{first}"], env[f"GIT_CONFIG_VALUE_{first + 1}"] = "", helper
            env["GIT_CONFIG_COUNT"] = str(first + 2)
        if self.ca_file:
            env["GIT_SSL_CAINFO"] = str(self.ca_file)
        return env


def classify_git_failure(stderr: str, settings: GitSettings) -> tuple[str, str, str]:
    """(check name, reason, fix) for a failed ``git ls-remote``."""
    text = stderr.lower()
    if "remote host identification has changed" in text or "host key verification failed" in text:
        return (
            "git.host_key",
            "the server's SSH host key has CHANGED since it was first trusted",
            "if the change is expected (server re-installed), remove the old key with `ssh-keygen -R '[HOST]:PORT'`; otherwise do not connect",
        )
    if "certificate" in text or ("ssl" in text and "verify" in text):
        return (
            "git.tls",
            "the server's TLS certificate is not trusted",
            "give its CA: `cpv setup --hosting git --git-ca-file PATH` (or export GIT_SSL_CAINFO)",
        )
    if any(k in text for k in ("permission denied", "publickey")):
        return (
            "git.auth",
            "the server refused the SSH key",
            "add the public key to your account on the git host (Settings > SSH keys), or give --git-ssh-key",
        )
    if any(
        k in text for k in ("authentication failed", "could not read username", "could not read password", "401", "403", "access denied")
    ):
        how = (
            f"check the token in ${settings.token_env} (scope: read/write repository)"
            if settings.token_env
            else "give a token: --git-token env:NAME, or set up a git credential helper"
        )
        return ("git.auth", "the server refused the credentials", how)
    if any(
        k in text
        for k in (
            "connection refused",
            "timed out",
            "no route to host",
            "could not resolve",
            "network is unreachable",
            "failed to connect",
            "connection closed",
        )
    ):
        return ("git.host", "the git server is unreachable", "check the network and the host and port in the URL template")
    if any(k in text for k in ("not found", "does not exist", "does not appear to be a git repository", "404")):
        return ("git.repository", "the repository does not exist", "")
    return ("git.auth", stderr.strip().splitlines()[-1] if stderr.strip() else "git ls-remote failed", "run `cpv validate -v`")


class GitHosting(HostingBackendBase):
    """Hosting backend ``git``: any git server, by URL template."""

    name = "git"

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.settings = GitSettings(ctx.config.get_config("git"))

    def remote_url(self) -> str:
        return self.settings.url(self.ctx.team, self.ctx.model)

    def _ls_remote(self) -> subprocess.CompletedProcess[str]:
        if self.settings.token_env:
            read_env_reference(self.settings.token_env, "git token")  # unset: say so, not "authentication failed"
        return ls_remote_heads(self.remote_url(), self.ctx.env, CONNECT_TIMEOUT_S * 3)

    def _failure(self, stderr: str) -> tuple[str, str, str]:
        name, reason, fix = classify_git_failure(stderr, self.settings)
        if name == "git.repository":
            fix = create_fix(self.remote_url(), self.settings.preset, self.ctx.team, self.ctx.model)
        return name, reason, fix

    def ensure_remote(self) -> str:
        url = self.remote_url()
        result = self._ls_remote()
        if result.returncode == 0:
            return url
        name, reason, fix = self._failure(result.stderr)
        if name == "git.repository":
            raise RepositoryError(f"git repository {url} does not exist", fix=fix)
        if name in {"git.auth", "git.tls", "git.host_key"}:
            raise CredentialError(f"{url}: {reason}", fix=fix)
        raise RepositoryError(f"cannot reach {url}: {reason}", fix=fix)

    def validate(self) -> list[CheckResult]:
        try:
            result = self._ls_remote()
        except CredentialError as exc:
            return [CheckResult("git.auth", False, exc.message, exc.fix)]
        if result.returncode == 0:
            return [CheckResult("git.repository", True, f"{self.remote_url()} exists and accepted the credentials")]
        name, reason, fix = self._failure(result.stderr)
        return [CheckResult(name, False, f"{self.remote_url()}: {reason}", fix)]


def _path_value(value: str | None, what: str, *, must_exist: bool = True) -> str | None:
    if not value:
        return None
    path = plain_path(Path(value).expanduser().resolve(), what)
    if must_exist and not path.is_file():
        raise ValidationError(f"{what} {path} does not exist", fix=f"give the path of an existing {what}")
    return str(path)


class GitCredentials:
    """Credential provider ``git``: the URL template and, by reference, how to authenticate."""

    name = "git"

    def is_configured(self, config: Any) -> bool:
        return bool(config.get_config("git"))

    def setup(self, config: Any, **options: Any) -> dict[str, Any]:
        unknown = set(options) - set(SETUP_OPTIONS)
        if unknown:
            raise ConfigError(f"unknown git hosting option(s): {', '.join(sorted(unknown))}", fix=f"use {', '.join(SETUP_OPTIONS)}")
        preset = options.get("preset") or None
        if preset == "custom":
            preset = None
        template = options.get("url_template")
        if not template:
            if not preset or not options.get("owner"):
                raise ValidationError(
                    "a git URL template (or a preset and an owner) is required",
                    fix="pass --git-url-template TEMPLATE, or --git-preset github --git-owner ORG",
                )
            template = preset_template(preset, options.get("protocol") or "ssh", options["owner"], options.get("host"))
        entries: dict[str, Any] = {"url_template": check_template(template)}
        if preset:
            if preset not in PRESETS:
                raise ValidationError(f"git host preset {preset!r} is unknown", fix=f"use one of {', '.join(PRESETS)} or custom")
            entries["preset"] = preset
        username = options.get("username") or (PRESETS[preset].token_user if preset else None)
        if username:
            entries["username"] = validate_token_user(username)
        if options.get("token"):
            entries["token_env"] = parse_env_reference(options["token"], "git token")
        for option, key, what in (
            ("ssh_key", "ssh_key_path", "SSH key"),
            ("known_hosts", "known_hosts_file", "known_hosts file"),
            ("ca_file", "ca_file", "CA certificate file"),
        ):
            value = _path_value(options.get(option), what, must_exist=option != "known_hosts")
            if value:
                entries[key] = value
        if options.get("connection_sharing") is not None:
            entries["connection_sharing"] = options["connection_sharing"]
        GitSettings(entries).location()  # the whole URL parses
        return entries

    def validate(self, config: Any) -> list[CheckResult]:
        s = GitSettings(config.get_config("git"))
        try:
            where = s.location()
        except (ConfigError, ValidationError) as exc:
            return [CheckResult("git.url", False, exc.message, exc.fix)]
        scheme = "https" if where.scheme == "https" else "http"
        ok, detail = tcp_reachable(f"{scheme}://{where.host}:{where.port}")
        checks = [CheckResult("git.host", ok, detail, None if ok else "check the network and the host and port in the URL template")]
        if ok and s.ssh_key_path and not s.ssh_key_path.exists():
            checks.append(
                CheckResult("git.key", False, f"SSH key {s.ssh_key_path} is missing", "create it with ssh-keygen, or fix --git-ssh-key")
            )
        return checks

    def environment(self, config: Any) -> dict[str, str]:
        try:
            return GitSettings(config.get_config("git")).environment()
        except (ConfigError, ValidationError):
            return {}  # `cpv validate` says what is wrong with the template


@hookimpl
def cpv_hosting_backends() -> list[HostingBackendInfo]:
    """Any git server by URL template."""
    return [HostingBackendInfo("git", GitHosting, "a repository per team/model on any git server (SSH or HTTPS), by URL template")]


@hookimpl
def cpv_credential_providers() -> list[CredentialProviderInfo]:
    """The URL template; SSH key, token variable and CA file by reference."""
    return [
        CredentialProviderInfo(
            "git",
            GitCredentials(),
            "any git server: URL template, SSH key path or token env:NAME",
            section="git",
            keys=KEYS,
            selects={"hosting": "git"},
        )
    ]


# --------------------------------------------------------------------------
# cpv setup, cpv git-config
# --------------------------------------------------------------------------


def _preset(value: str, answers: Mapping[str, str]) -> str:
    if value != "custom" and value not in PRESETS:
        raise ValidationError(f"git host preset {value!r} is unknown", fix=f"use one of {', '.join(PRESETS)} or custom")
    return value


def _owner(value: str, answers: Mapping[str, str]) -> str:
    if answers.get("preset", "custom") == "custom":
        return value
    return check_owner(value)


def _default_template(answers: Mapping[str, str]) -> str:
    preset = answers.get("preset", "custom")
    if preset == "custom" or not answers.get("owner"):
        return ""
    return preset_template(preset, answers.get("protocol") or "ssh", answers["owner"], answers.get("host") or None)


def _template(value: str, answers: Mapping[str, str]) -> str:
    return check_template(value)


def _env_or_empty(value: str, answers: Mapping[str, str]) -> str:
    return f"env:{parse_env_reference(value, 'git token')}" if value else ""


def _apply(config: Any, answers: Mapping[str, str]) -> list[str]:
    from cpv_core.plugin.credentials import setup_provider

    options = {key: value for key, value in answers.items() if value and key not in {"owner", "host", "protocol"}}
    entries = setup_provider(config, "git", options)
    if entries.get("token_env"):
        how = f"token from ${entries['token_env']}"
    elif entries.get("ssh_key_path"):
        how = f"SSH key {entries['ssh_key_path']}"
    else:
        how = "git's own credentials"
    return [f"hosting: {entries['url_template']} ({how})"]


def _current(config: Any) -> dict[str, str]:
    section = config.get_config("git") or {}
    current = {"url_template": str(section["url_template"])} if section.get("url_template") else {}
    for key, answer in (("preset", "preset"), ("username", "username"), ("ssh_key_path", "ssh_key"), ("ca_file", "ca_file")):
        if section.get(key):
            current[answer] = str(section[key])
    if section.get("token_env"):
        current["token"] = f"env:{section['token_env']}"
    return current


@hookimpl
def cpv_setup_choices() -> list[SetupChoice]:
    """``cpv setup --hosting git --git-url-template TEMPLATE`` (or a preset: GitHub, GitLab, Gitea, Bitbucket)."""
    names = ", ".join([*PRESETS, "custom"])
    return [
        SetupChoice(
            "hosting",
            "git",
            "git",
            "any git server over SSH or HTTPS: GitHub, GitLab, Gitea, Bitbucket Cloud / Data Center, or your own",
            questions=(
                SetupQuestion("preset", f"Git host ({names})", "custom", _preset, "a preset fills the URL template for you"),
                SetupQuestion("owner", "Organisation / group / workspace holding the repositories (presets only)", "", _owner),
                SetupQuestion(
                    "host", "Server host[:port] (presets; empty for the preset's own)", "", lambda v, _: check_host(v) if v else ""
                ),
                SetupQuestion("protocol", "Protocol (ssh or https)", "ssh", lambda v, _: v if v in PROTOCOLS else _bad_protocol(v)),
                SetupQuestion("url_template", "Repository URL template ({team}, {model}, {repo})", _default_template, _template),
                SetupQuestion(
                    "username",
                    "User name sent with an HTTPS token",
                    lambda answers: PRESETS[answers["preset"]].token_user if answers.get("preset") in PRESETS else DEFAULT_TOKEN_USER,
                    lambda v, _: validate_token_user(v),
                ),
                SetupQuestion(
                    "token",
                    "HTTPS token as env:NAME (empty: git's own credential helpers)",
                    "",
                    _env_or_empty,
                    "cpv stores only the variable's name",
                ),
                SetupQuestion(
                    "ssh_key", "SSH key file (empty: your ssh agent and ~/.ssh/config)", "", lambda v, _: _path_value(v, "SSH key") or ""
                ),
                SetupQuestion(
                    "ca_file",
                    "CA certificate for a self-signed HTTPS server (empty: the system's)",
                    "",
                    lambda v, _: _path_value(v, "CA certificate file") or "",
                ),
            ),
            apply=_apply,
            current=_current,
            provider="git",
        )
    ]


def _bad_protocol(value: str) -> str:
    raise ValidationError(f"protocol {value!r} is not ssh or https", fix="use ssh or https")


@hookimpl
def cpv_register_commands(cli: click.Group) -> None:
    """``cpv git-config`` and ``cpv config git``."""
    import click

    from cpv_core.cli.api import Ctx, add_setup_commands, dry_run_option

    options = [
        click.option("--url-template", help="Repository URL with {team}, {model}, {repo}."),
        click.option("--preset", type=click.Choice([*PRESETS, "custom"]), help="Fill the template for a known host."),
        click.option("--owner", help="Organisation / group / workspace (with --preset)."),
        click.option("--host", help="Server host (with --preset, for a self-hosted server)."),
        click.option("--protocol", type=click.Choice(PROTOCOLS), default="ssh", show_default=True),
        click.option("--username", help="User name sent with an HTTPS token."),
        click.option("--token", help="env:NAME of the variable holding an HTTPS token."),
        click.option("--ssh-key", type=click.Path(dir_okay=False), help="SSH private key (default: your agent and ~/.ssh/config)."),
        click.option("--known-hosts", type=click.Path(dir_okay=False), help="known_hosts file (default ~/.ssh/known_hosts)."),
        click.option("--ca-file", type=click.Path(dir_okay=False), help="CA certificate of a self-signed HTTPS server."),
        dry_run_option,
    ]

    def configure(ctx: Ctx, dry_run: bool = False, **values: Any) -> None:
        from cpv_core.plugin.config import CPVConfig
        from cpv_core.plugin.credentials import setup_provider

        config = CPVConfig()
        given = {key: value for key, value in values.items() if value}
        if dry_run:
            ctx.echo(f"[dry-run] would store in {config.config_path}: git = " + ", ".join(f"{k} {v}" for k, v in given.items()))
            return
        entries = setup_provider(config, "git", given)
        ctx.echo(f"git hosting configured: {entries['url_template']}; run `cpv validate` to check access")

    add_setup_commands(cli, "git", options, configure, "Configure any git server (GitHub, GitLab, Gitea ...) by URL template.")
