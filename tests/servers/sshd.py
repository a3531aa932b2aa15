"""A private OpenSSH server on loopback standing in for Bitbucket.

Its own host key, key-only authentication, and a forced command
(:mod:`git_shell`) that serves only git transport commands on
``{workspace}/{repo}.git`` under a root directory.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .seaweedfs import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class SshServer:
    """A running sshd serving bare repositories under ``root``."""

    host: str
    port: int
    user: str
    root: Path
    workdir: Path
    host_key: Path
    process: subprocess.Popen | None = None
    authorized: list[str] = field(default_factory=list)

    def authorize(self, public_key: str) -> None:
        """Allow ``public_key`` to run the git forced command."""
        wrapper = f"{sys.executable} {Path(__file__).with_name('git_shell.py')} {self.root}"
        line = f'restrict,command="{wrapper}" {public_key.strip()}'
        self.authorized.append(line)
        (self.workdir / "authorized_keys").write_text("\n".join(self.authorized) + "\n")

    def create_repo(self, workspace: str, repo: str) -> Path:
        """Create an empty bare repository, as an admin would on Bitbucket."""
        path = self.root / workspace / f"{repo}.git"
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
        return path

    def start(self) -> None:
        """Start sshd and wait until it accepts connections."""
        config = self.workdir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress {self.host}\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}\nPidFile {self.workdir / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nAllowTcpForwarding no\n"
            "X11Forwarding no\nPrintMotd no\nLogLevel ERROR\nMaxStartups 100:30:200\n"
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "sshd.log", "ab")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.workdir / 'sshd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("sshd did not start")

    def stop(self) -> None:
        """Stop sshd."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)

    def replace_host_key(self) -> None:
        """Give the server a new host key (clients must notice), then restart."""
        self.stop()
        self.host_key.unlink()
        Path(f"{self.host_key}.pub").unlink()
        keygen(self.host_key)
        self.start()


def keygen(path: Path, comment: str = "cpv-test") -> str:
    """Create an ed25519 key pair; return the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text()


def start_sshd(workdir: Path) -> SshServer:
    """A started server with no authorized keys yet."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = workdir / "ssh_host_ed25519_key"
    keygen(host_key, "host")
    server = SshServer(
        host="127.0.0.1", port=free_port(), user=getpass.getuser(), root=workdir / "repos", workdir=workdir, host_key=host_key
    )
    server.root.mkdir()
    (workdir / "authorized_keys").write_text("")
    server.start()
    return server
