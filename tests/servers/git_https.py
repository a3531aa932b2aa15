"""A real git smart-HTTP server on loopback: git's own ``git http-backend`` (CGI)
behind a TLS server with a self-signed certificate and a token check, as a
GitHub / GitLab / Gitea stand-in.

Every request needs HTTP Basic authentication whose password is the token
(any user name, as GitHub's ``x-access-token`` or GitLab's ``oauth2``); the
authenticated user is handed to ``http-backend`` as ``REMOTE_USER``, which is
what lets it accept pushes. Chunked request bodies (git sends large pushes
that way) are decoded before they reach the CGI.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .seaweedfs import free_port


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl)."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class GitHttpsServer:
    """A running smart-HTTP git server serving bare repositories under ``root``."""

    port: int
    root: Path
    cert: Path
    token: str
    server: ThreadingHTTPServer
    requests: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def create_repo(self, path: str) -> Path:
        """An empty bare repository at ``path`` (``org/name.git``), as a host's 'New repository'."""
        repo = self.root / path
        repo.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
        return repo

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(state: dict) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection; the body ends when the connection does

        def log_message(self, *args: object) -> None:
            pass

        def _authorized(self) -> str | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return None
            return user if password == state["token"] and user else None

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass
                        return bytes(data)
                    data += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _serve(self) -> None:
            state["requests"].append(f"{self.command} {self.path}")
            user = self._authorized()
            if user is None:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="cpv-test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            body = self._body()
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(state["root"]),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": user,
                "REMOTE_ADDR": "127.0.0.1",
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            }
            result = subprocess.run([shutil.which("git") or "git", "http-backend"], input=body, env=env, capture_output=True)
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

    return Handler


def start_git_https(workdir: Path, token: str) -> GitHttpsServer:
    """A started server whose every request must carry ``token``."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "repos"
    root.mkdir(exist_ok=True)
    cert, key = make_certificate(workdir)
    state = {"root": root, "token": token, "requests": []}
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(state))
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="git-https", daemon=True).start()
    return GitHttpsServer(port, root, cert, token, server, state["requests"])
