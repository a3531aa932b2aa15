"""Hosting backend ``bitbucket-ssh`` and credential provider ``bitbucket-ssh``.

Each team/model is one repository in a Bitbucket workspace, reached over SSH:
``ssh://{ssh_user}@{host}:{port}/{workspace}/{repo}.git``. Defaults follow
Bitbucket Cloud through its firewall-friendly endpoint: host
``altssh.bitbucket.org``, port 443, SSH user ``git``. The repository name
comes from ``repo_template`` (default ``{team}-{model}``, lower-cased, as
Bitbucket slugs are), so two teams' models of the same name never share a
repository; group them in a Bitbucket project such as ``{team}-model-checkpoints``.

cpv's git commands use the configured key explicitly through
``GIT_SSH_COMMAND`` (``-i KEY -o IdentitiesOnly=yes -o BatchMode=yes
-o StrictHostKeyChecking=accept-new``); host key changes are never accepted
silently. ``~/.ssh/config`` gets one managed block (a ``Host`` alias for
people's own git commands), rewritten in place on every setup.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import socket
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpv_core import hookimpl

if TYPE_CHECKING:
    import click
from cpv_core.domain.checks import matching
from cpv_core.domain.names import validate_name
from cpv_core.errors import ConfigError, CredentialError, RepositoryError, ValidationError
from cpv_core.paths import atomic_write_bytes, make_private_dirs
from cpv_core.plugin.bases import HostingBackendBase
from cpv_core.plugin.protocols import BackendContext, CheckResult, CredentialProviderInfo, HostingBackendInfo, SetupChoice, SetupQuestion
from cpv_core.plugin.settings import parse_flag
from cpv_plugins.git.plumbing import ls_remote_heads
from cpv_plugins.ssh_command import CONNECT_TIMEOUT_S, SshIdentity, plain_path, ssh_dir

logger = logging.getLogger("cpv.bitbucket")

DEFAULT_HOST = "altssh.bitbucket.org"
DEFAULT_PORT = 443
DEFAULT_SSH_USER = "git"
DEFAULT_ALIAS = "bitbucket-cpv"
DEFAULT_REPO_TEMPLATE = "{team}-{model}"
BLOCK_BEGIN = "# >>> cpv managed block: bitbucket (edits inside are overwritten) >>>"
BLOCK_END = "# <<< cpv managed block: bitbucket <<<"
_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_USER_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$")


#: settings stored under the same name as the set-up option that gives them
#: (``keygen_filename`` is stored as ``key_path``, ``bitbucket_user`` as ``user``)
SHARED_KEYS = ("workspace", "host", "port", "ssh_user", "alias", "repo_template", "known_hosts", "connection_sharing")


class BitbucketSettings:
    """The ``bitbucket`` section of the cpv config, with defaults."""

    def __init__(self, section: dict[str, Any] | None) -> None:
        section = section or {}
        self.key_path = Path(section["key_path"]) if section.get("key_path") else None
        self.user = section.get("user")
        self.workspace = section.get("workspace") or self.user
        self.host = section.get("host") or DEFAULT_HOST
        self.port = int(section.get("port") or DEFAULT_PORT)
        self.ssh_user = section.get("ssh_user") or DEFAULT_SSH_USER
        self.alias = section.get("alias") or DEFAULT_ALIAS
        self.repo_template = section.get("repo_template") or DEFAULT_REPO_TEMPLATE
        self.known_hosts = Path(section["known_hosts"]) if section.get("known_hosts") else None
        self.connection_sharing = parse_flag(
            section.get("connection_sharing"),
            "bitbucket.connection_sharing",
            True,
            "cpv config set bitbucket.connection_sharing true (share one SSH connection between git commands) or false",
        )

    def identity(self) -> SshIdentity:
        """The SSH identity git commands connect with."""
        return SshIdentity(self.key_path, self.known_hosts, self.host, self.port, self.ssh_user, self.connection_sharing)

    def ssh_command(self, *, share: bool = True) -> str:
        """The ``GIT_SSH_COMMAND`` value (see :meth:`SshIdentity.command`)."""
        return self.identity().command(share=share)

    def control_path(self) -> Path | None:
        """The shared connection's socket (see :meth:`SshIdentity.control_path`)."""
        return self.identity().control_path()

    def repo_slug(self, team: str, model: str) -> str:
        slug = self.repo_template.format(team=team, model=model).lower()
        return validate_name(slug, "repository name")

    def url(self, team: str, model: str) -> str:
        if not self.workspace:
            raise ConfigError(
                "no Bitbucket workspace is configured", fix="run `cpv bitbucket-config --workspace W --user U --keygen-filename F`"
            )
        return f"ssh://{self.ssh_user}@{self.host}:{self.port}/{self.workspace}/{self.repo_slug(team, model)}.git"


def classify_ssh_failure(stderr: str) -> tuple[str, str, str]:
    """(check name, reason, fix) for a failed ssh/git-over-ssh command."""
    text = stderr.lower()
    if "remote host identification has changed" in text or "host key verification failed" in text:
        return (
            "bitbucket.host_key",
            "the server's host key has CHANGED since it was first trusted",
            "if the change is expected (server re-installed), remove the old key with `ssh-keygen -R '[HOST]:PORT'`; otherwise do not connect",
        )
    if "permission denied" in text:
        return (
            "bitbucket.auth",
            "the server refused the SSH key",
            "add the public key (KEY.pub) to your Bitbucket account: Personal settings > SSH keys",
        )
    if any(
        k in text
        for k in ("connection refused", "timed out", "no route to host", "could not resolve", "network is unreachable", "connection closed")
    ):
        return ("bitbucket.host", "the SSH server is unreachable", "check the network and --host/--port")
    if "does not exist" in text or "not found" in text or "does not appear to be a git repository" in text:
        return ("bitbucket.repository", "the repository does not exist", "create it on Bitbucket first")
    return ("bitbucket.auth", stderr.strip().splitlines()[-1] if stderr.strip() else "ssh failed", "run `cpv validate -v`")


class BitbucketHosting(HostingBackendBase):
    """Hosting backend ``bitbucket-ssh``."""

    name = "bitbucket-ssh"

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.settings = BitbucketSettings(ctx.config.get_config("bitbucket"))

    def remote_url(self) -> str:
        return self.settings.url(self.ctx.team, self.ctx.model)

    def _ls_remote(self) -> subprocess.CompletedProcess[str]:
        env = {**self.ctx.env, "GIT_SSH_COMMAND": self.settings.ssh_command()}
        return ls_remote_heads(self.remote_url(), env, CONNECT_TIMEOUT_S * 3)

    def ensure_remote(self) -> str:
        url = self.remote_url()
        result = self._ls_remote()
        if result.returncode == 0:
            return url
        name, reason, fix = classify_ssh_failure(result.stderr)
        s = self.settings
        slug = s.repo_slug(self.ctx.team, self.ctx.model)
        if name == "bitbucket.repository":
            raise RepositoryError(
                f"Bitbucket repository {s.workspace}/{slug} does not exist",
                fix=f"create the repository '{slug}' in workspace '{s.workspace}' (for instance in project {self.ctx.team}-model-checkpoints), then run the command again",
            )
        if name == "bitbucket.auth":
            raise CredentialError(f"{s.host}:{s.port} refused the key {s.key_path}: {reason}", fix=fix)
        raise RepositoryError(f"cannot reach {url}: {reason}", fix=fix)

    def validate(self) -> list[CheckResult]:
        result = self._ls_remote()
        if result.returncode == 0:
            return [CheckResult("bitbucket.repository", True, f"{self.remote_url()} is reachable")]
        name, reason, fix = classify_ssh_failure(result.stderr)
        return [CheckResult(name, False, f"{self.remote_url()}: {reason}", fix)]


class BitbucketCredentials:
    """Credential provider ``bitbucket-ssh``: an SSH key and a managed ~/.ssh/config block."""

    name = "bitbucket-ssh"

    def is_configured(self, config: Any) -> bool:
        return bool(config.get_config("bitbucket"))

    # -- setup -------------------------------------------------------------
    def setup(self, config: Any, **options: Any) -> dict[str, Any]:
        allowed = {"keygen_filename", "bitbucket_user", *SHARED_KEYS}
        unknown = set(options) - allowed
        if unknown:
            raise ConfigError(f"unknown Bitbucket option(s): {', '.join(sorted(unknown))}", fix=f"use {', '.join(sorted(allowed))}")
        user = options.get("bitbucket_user")
        if user is not None:
            validate_name(user, "Bitbucket user")
        workspace = options.get("workspace") or user
        if not workspace:
            raise ValidationError("a Bitbucket workspace (or user) is required", fix="pass --workspace W or --user U")
        validate_name(workspace, "Bitbucket workspace")
        host = options.get("host") or DEFAULT_HOST
        if not _HOST_RE.fullmatch(host):
            raise ValidationError(f"host {host!r} is not a valid host name", fix="e.g. altssh.bitbucket.org")
        port = options.get("port") or DEFAULT_PORT
        try:
            port = int(port)
        except (TypeError, ValueError):
            port = -1
        if not 1 <= port <= 65535:
            raise ValidationError(
                f"port {options.get('port')!r} is not a TCP port", fix="use 1-65535 (Bitbucket Cloud: 443 on altssh.bitbucket.org, or 22)"
            )
        ssh_user = options.get("ssh_user") or DEFAULT_SSH_USER
        if not _USER_RE.fullmatch(ssh_user):
            raise ValidationError(f"SSH user {ssh_user!r} is not valid", fix="Bitbucket's SSH user is 'git'")
        alias = options.get("alias") or DEFAULT_ALIAS
        if not _HOST_RE.fullmatch(alias):
            raise ValidationError(f"alias {alias!r} is not valid", fix="use letters, digits, '.' and '-'")
        template = options.get("repo_template") or DEFAULT_REPO_TEMPLATE
        try:
            validate_name(template.format(team="team", model="model").lower(), "repository name template result")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValidationError(f"repo_template {template!r} is not usable: {exc}", fix="use e.g. '{team}-{model}'") from None
        filename = options.get("keygen_filename") or "id_ed25519_bitbucket"
        key_path = Path(filename).expanduser()
        if not key_path.is_absolute() and len(key_path.parts) == 1:
            key_path = ssh_dir() / key_path
        key_path = plain_path(key_path.resolve(), "key file")
        known_hosts = options.get("known_hosts")
        if known_hosts:
            known_hosts = str(plain_path(Path(known_hosts).expanduser().resolve(), "known_hosts file"))

        public = self._ensure_key(key_path, user or workspace)
        entries: dict[str, Any] = {
            "key_path": str(key_path),
            "workspace": workspace,
            "host": host,
            "port": port,
            "ssh_user": ssh_user,
            "alias": alias,
            "repo_template": template,
        }
        if user:
            entries["user"] = user
        if known_hosts:
            entries["known_hosts"] = known_hosts
        if options.get("connection_sharing") is not None:
            entries["connection_sharing"] = options["connection_sharing"]
        write_ssh_config_block(BitbucketSettings(entries))
        logger.info("add this public key to Bitbucket (Personal settings > SSH keys):\n%s", public.strip())
        entries["public_key_path"] = f"{key_path}.pub"
        return entries

    @staticmethod
    def _ensure_key(key_path: Path, comment: str) -> str:
        pub = Path(f"{key_path}.pub")
        if key_path.exists():
            if not pub.exists():
                raise CredentialError(
                    f"{key_path} exists but {pub} does not", fix=f"recreate it with `ssh-keygen -y -f {key_path} > {pub}`"
                )
            return pub.read_text()
        make_private_dirs(key_path.parent)  # only directories cpv creates get 0700; a shared one is left alone
        result = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"cpv {comment}", "-f", str(key_path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise CredentialError(
                f"ssh-keygen could not create {key_path}: {result.stderr.strip()}",
                fix="check that the directory is writable and OpenSSH is installed",
            )
        os.chmod(key_path, 0o600)
        return pub.read_text()

    # -- validate ---------------------------------------------------------------
    def validate(self, config: Any) -> list[CheckResult]:
        s = BitbucketSettings(config.get_config("bitbucket"))
        checks: list[CheckResult] = []
        if not s.key_path or not s.key_path.exists():
            return [
                CheckResult(
                    "bitbucket.key",
                    False,
                    f"SSH key {s.key_path} is missing",
                    "run `cpv bitbucket-config --keygen-filename F` to create it",
                )
            ]
        mode = stat.S_IMODE(s.key_path.stat().st_mode)
        if mode & 0o077:
            return [
                CheckResult(
                    "bitbucket.key", False, f"SSH key {s.key_path} is readable by others (mode {mode:o})", f"chmod 600 {s.key_path}"
                )
            ]
        checks.append(CheckResult("bitbucket.key", True, f"SSH key {s.key_path} exists with mode {mode:o}"))
        try:
            with socket.create_connection((s.host, s.port), timeout=CONNECT_TIMEOUT_S):
                pass
            checks.append(CheckResult("bitbucket.host", True, f"{s.host}:{s.port} accepts connections"))
        except OSError as exc:
            checks.append(
                CheckResult(
                    "bitbucket.host",
                    False,
                    f"{s.host}:{s.port} is unreachable ({exc.strerror or type(exc).__name__})",
                    "check the network and --host/--port",
                )
            )
            return checks
        # its own connection: a shared one would answer for a key or host key it no longer checks
        cmd = shlex.split(s.ssh_command(share=False)) + ["-p", str(s.port), f"{s.ssh_user}@{s.host}", "-T"]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=CONNECT_TIMEOUT_S * 2, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            checks.append(
                CheckResult(
                    "bitbucket.auth",
                    False,
                    f"{s.host}:{s.port} did not answer the SSH handshake in time",
                    "check --host/--port: is it an SSH server?",
                )
            )
            return checks
        if result.returncode == 255:  # ssh's own failure; any other code came from the server after login
            name, reason, fix = classify_ssh_failure(result.stderr)
            checks.append(CheckResult(name, False, f"{s.ssh_user}@{s.host}:{s.port}: {reason}", fix.replace("KEY", str(s.key_path))))
        else:
            checks.append(CheckResult("bitbucket.auth", True, f"{s.host}:{s.port} accepted the key for {s.ssh_user}"))
        return checks

    def environment(self, config: Any) -> dict[str, str]:
        return {"GIT_SSH_COMMAND": BitbucketSettings(config.get_config("bitbucket")).ssh_command()}


def write_ssh_config_block(s: BitbucketSettings) -> Path:
    """Write (or replace) cpv's managed block in ``~/.ssh/config``; other content is untouched.

    A ``~/.ssh/config`` that is a symbolic link stays one (its target is
    written, atomically). A begin marker without its end marker, or markers
    out of order, is reported and the file left exactly as it was.
    """
    folder = ssh_dir()
    if not folder.exists():
        make_private_dirs(folder)
    path = folder / "config"
    target = path.resolve() if path.is_symlink() else path
    block = "\n".join(
        [
            BLOCK_BEGIN,
            f"Host {s.alias}",
            f"  HostName {s.host}",
            f"  Port {s.port}",
            f"  User {s.ssh_user}",
            f'  IdentityFile "{s.key_path}"',
            "  IdentitiesOnly yes",
            BLOCK_END,
        ]
    )
    existing = target.read_text() if target.exists() else ""
    lines = existing.splitlines()
    begins, ends = lines.count(BLOCK_BEGIN), lines.count(BLOCK_END)
    if begins or ends:
        if begins != 1 or ends != 1 or lines.index(BLOCK_BEGIN) > lines.index(BLOCK_END):
            raise ConfigError(
                f"{path} has an incomplete or repeated cpv block ({begins} begin and {ends} end marker(s)); it was not changed",
                fix=f"remove the lines between and including '{BLOCK_BEGIN}' and '{BLOCK_END}' (or the stray marker), then run the command again",
            )
        start, end = lines.index(BLOCK_BEGIN), lines.index(BLOCK_END)
        text = "\n".join(lines[:start] + block.splitlines() + lines[end + 1 :]) + "\n"
    else:
        text = existing + ("" if not existing or existing.endswith("\n") else "\n") + ("\n" if existing.strip() else "") + block + "\n"
    atomic_write_bytes(target, text.encode(), mode=None if target.exists() else 0o600)
    return path


@hookimpl
def cpv_hosting_backends() -> list[HostingBackendInfo]:
    """Bitbucket (or any SSH git server) hosting."""
    return [HostingBackendInfo("bitbucket-ssh", BitbucketHosting, "a Bitbucket repository per team/model over SSH")]


@hookimpl
def cpv_credential_providers() -> list[CredentialProviderInfo]:
    """SSH key + ~/.ssh/config managed block."""
    return [
        CredentialProviderInfo(
            "bitbucket-ssh",
            BitbucketCredentials(),
            "SSH key for Bitbucket (path only)",
            section="bitbucket",
            keys=("key_path", "user", *SHARED_KEYS),
            selects={"hosting": "bitbucket-ssh"},
        )
    ]


@hookimpl
def cpv_register_commands(cli: click.Group) -> None:
    """``cpv bitbucket-config`` and ``cpv config bitbucket``: SSH key, ~/.ssh/config block, workspace."""
    import click

    from cpv_core.cli.api import Ctx, add_setup_commands, dry_run_option

    options = [
        click.option(
            "--keygen-filename",
            "-k",
            default="id_ed25519_bitbucket",
            show_default=True,
            help="SSH key: a file name under ~/.ssh or a path; generated (ed25519) if missing.",
        ),
        click.option("--user", "-u", help="Your Bitbucket account name."),
        click.option("--workspace", "-w", help="Bitbucket workspace holding the repositories (default: --user)."),
        click.option("--host", help=f"SSH host (default {DEFAULT_HOST})."),
        click.option("--port", type=int, help=f"SSH port (default {DEFAULT_PORT})."),
        click.option("--ssh-user", help=f"SSH login user (default {DEFAULT_SSH_USER})."),
        click.option("--repo-template", help=f"Repository name per team/model (default {DEFAULT_REPO_TEMPLATE})."),
        dry_run_option,
    ]

    def configure(
        ctx: Ctx,
        keygen_filename: str,
        user: str | None,
        workspace: str | None,
        host: str | None,
        port: int | None,
        ssh_user: str | None,
        repo_template: str | None,
        dry_run: bool = False,
    ) -> None:
        from cpv_core.plugin.config import CPVConfig

        options = {
            k: v
            for k, v in dict(workspace=workspace, host=host, port=port, ssh_user=ssh_user, repo_template=repo_template).items()
            if v is not None
        }
        if dry_run:
            ctx.echo(
                f"[dry-run] would create the SSH key {keygen_filename} if missing, write the cpv block in ~/.ssh/config "
                f"and store in {CPVConfig().config_path}: bitbucket = user {user}"
                + "".join(f", {key} {value}" for key, value in options.items())
            )
            return
        entries = CPVConfig().setup_bitbucket_ssh(keygen_filename=keygen_filename, bitbucket_user=user, **options)
        ctx.echo(f"Bitbucket configured: {entries['ssh_user']}@{entries['host']}:{entries['port']}, workspace {entries['workspace']}")
        ctx.echo(
            f"add this public key to Bitbucket (Personal settings > SSH keys):\n{Path(entries['public_key_path']).read_text().strip()}"
        )

    add_setup_commands(cli, "bitbucket", options, configure, "Configure Bitbucket over SSH (key, ~/.ssh/config block, workspace).")


# --------------------------------------------------------------------------
# cpv setup
# --------------------------------------------------------------------------


def _port(value: str, answers: Mapping[str, str]) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValidationError(f"port {value!r} is not a TCP port", fix="use 1-65535 (Bitbucket Cloud: 443 on altssh.bitbucket.org, or 22)")
    return value


def _setup_apply(config: Any, answers: Mapping[str, str]) -> list[str]:
    entries = config.setup_bitbucket_ssh(
        keygen_filename=answers["key"],
        bitbucket_user=answers["user"],
        workspace=answers["workspace"],
        host=answers["host"],
        port=int(answers["port"]),
        ssh_user=answers["ssh_user"],
    )
    public = Path(entries["public_key_path"]).read_text().strip()
    return [
        f"hosting: Bitbucket workspace {entries['workspace']} over {entries['ssh_user']}@{entries['host']}:{entries['port']}",
        f"SSH key {entries['key_path']}; its public half:",
        public,
    ]


def _setup_current(config: Any) -> dict[str, str]:
    section = config.get_config("bitbucket") or {}
    current = {key: str(section[key]) for key in ("user", "workspace", "host", "port", "ssh_user") if section.get(key)}
    if section.get("key_path"):
        current["key"] = str(section["key_path"])
    return current


@hookimpl
def cpv_setup_choices() -> list[SetupChoice]:
    """``cpv setup``: Bitbucket (Cloud, or Data Center on its own host and port) over SSH."""
    return [
        SetupChoice(
            "hosting",
            "bitbucket",
            "bitbucket-ssh",
            "Bitbucket over SSH (Cloud, or Data Center on your own host and port)",
            questions=(
                SetupQuestion("user", "Bitbucket user", None, lambda value, _: validate_name(value, "Bitbucket user")),
                SetupQuestion(
                    "workspace",
                    "Workspace (or project) holding the repositories",
                    lambda answers: answers.get("user", ""),
                    lambda value, _: validate_name(value, "Bitbucket workspace"),
                ),
                SetupQuestion(
                    "key",
                    "SSH key (a name under ~/.ssh or a path; created if missing, reused if present)",
                    "id_ed25519_bitbucket",
                ),
                SetupQuestion(
                    "host",
                    "SSH host",
                    DEFAULT_HOST,
                    matching(_HOST_RE, "host", "e.g. altssh.bitbucket.org, or your Data Center's host"),
                    "Bitbucket Cloud: altssh.bitbucket.org port 443 passes most firewalls; Data Center: your server",
                ),
                SetupQuestion("port", "SSH port", str(DEFAULT_PORT), _port),
                SetupQuestion(
                    "ssh_user", "SSH login user", DEFAULT_SSH_USER, matching(_USER_RE, "SSH user", "Bitbucket's SSH user is 'git'")
                ),
            ),
            apply=_setup_apply,
            current=_setup_current,
            provider="bitbucket-ssh",
            after="Add the public key above to Bitbucket (Personal settings > SSH keys; Data Center: Manage account > SSH keys)",
        )
    ]
