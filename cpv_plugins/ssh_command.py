"""The ``GIT_SSH_COMMAND`` cpv's hosting plugins give git: one explicit key, no
prompts, short time-outs, host keys checked (accepted on first use, never when
changed), and one shared connection per identity (``ControlMaster``) in a
directory only this user may enter."""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cpv_core.errors import ValidationError

logger = logging.getLogger("cpv.ssh")

CONNECT_TIMEOUT_S = 10
#: seconds a shared SSH connection stays open after its last git command
CONTROL_PERSIST_S = 60


def ssh_dir() -> Path:
    """The user's ``~/.ssh``."""
    return Path.home() / ".ssh"


def plain_path(path: Path, what: str) -> Path:
    """``path`` if it holds no control character, quote or backslash: it goes into an
    ssh command line and ``~/.ssh/config``, where those would change its meaning."""
    text = str(path)
    if any(ord(ch) < 32 or ch in '"\\' for ch in text):
        raise ValidationError(f"{what} {text!r} contains a control character, quote or backslash", fix="use a plain file path")
    return path


def control_dirs() -> list[Path]:
    """Where shared-connection sockets may go: the user's runtime directory, else ``/tmp/cpv-UID``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    dirs = [Path(runtime) / "cpv"] if runtime and Path(runtime).is_absolute() else []
    return [*dirs, Path(tempfile.gettempdir()) / f"cpv-{os.getuid()}"]


def private_dir(folder: Path) -> bool:
    """Create ``folder`` (0700) if absent; whether it is a directory, not a link, owned by
    this user and closed to everyone else (else another user could plant the socket)."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


@dataclass(frozen=True)
class SshIdentity:
    """Who connects where: the key (None: the user's agent and defaults), the
    known-hosts file (None: ``~/.ssh/known_hosts``), the server and whether git
    commands share one connection."""

    key_path: Path | None
    known_hosts: Path | None
    host: str
    port: int
    user: str
    connection_sharing: bool = True

    def command(self, *, share: bool = True) -> str:
        """The ``GIT_SSH_COMMAND`` value: the configured key and safe options only;
        ``share=False`` for a check that must make its own connection (key, host key)."""
        args = [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            # a connection whose server stopped answering is given up after 20 s, not
            # 45: a shared master that went silent (a network change) is replaced sooner
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=4",
        ]
        if self.key_path:
            args[1:1] = ["-o", "IdentitiesOnly=yes"]
            args += ["-F", "none", "-i", str(self.key_path)]
        known = self.known_hosts or (ssh_dir() / "known_hosts")
        args += ["-o", f"UserKnownHostsFile={known}"]
        control = self.control_path() if share else None
        if control is not None:
            args += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}", "-o", f"ControlPersist={CONTROL_PERSIST_S}"]
        return " ".join(shlex.quote(a) for a in args)

    def control_path(self) -> Path | None:
        """The socket of the SSH connection git commands share (``ControlMaster``), or None
        when sharing is off or no private directory gives a short enough path.

        One socket per key, host, port, user and known-hosts file: a connection is never
        reused under another identity (``%C`` would not tell two keys apart). The directory
        is the user's runtime directory, else ``/tmp/cpv-UID``, used only when it is a real
        directory owned by this user that nobody else may enter, as tmux does. A master
        that died leaves a stale socket, which ssh finds refused, removes and replaces."""
        if not self.connection_sharing:
            return None
        identity = "\0".join(str(v) for v in (self.key_path, self.known_hosts, self.host, self.port, self.user))
        name = "ssh-" + hashlib.sha256(identity.encode()).hexdigest()[:20]
        for folder in control_dirs():
            path = folder / name
            # ssh binds a temporary name 17 characters longer; a socket path holds 107 bytes
            if len(os.fsencode(path)) <= 90 and private_dir(folder):
                return path
        logger.debug("no private directory with a short enough path for SSH connection sharing; each git command connects anew")
        return None
