"""A real Azure Blob API on loopback: Azurite (npm ``azurite``, installed by
``.ci/run``), its blob service only, data on disk.

Usable from tests (``tests/conftest.py`` fixtures) and from ``bench/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .seaweedfs import free_port

#: Azurite's documented development account (public, the same for every Azurite)
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_binary() -> str:
    """``azurite-blob`` from PATH (``npm install -g azurite``)."""
    found = shutil.which("azurite-blob")
    if not found:
        raise RuntimeError("Azurite is not installed: npm install -g azurite (.ci/run does)")
    return found


@dataclass
class Azurite:
    """A running Azurite blob service."""

    port: int
    process: subprocess.Popen
    workdir: Path

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={self.account_url};"

    def service(self):  # noqa: ANN201 - an azure.storage.blob.BlobServiceClient
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name: str) -> None:
        """Create a container, as an admin would in the portal."""
        self.service().create_container(name)

    def keys(self, container: str, prefix: str = "") -> list[str]:
        """Every blob name under ``prefix``."""
        return [blob.name for blob in self.service().get_container_client(container).list_blobs(name_starts_with=prefix)]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # node ignores SIGTERM while its servers close
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def start_azurite(workdir: Path) -> Azurite:
    """A started blob service with no containers yet."""
    port = free_port()
    log = open(workdir / "azurite.log", "ab")
    process = subprocess.Popen(
        [
            azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir / "data"),
            "--silent", "--skipApiVersionCheck", "--disableProductStyleUrl",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited: {(workdir / 'azurite.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return Azurite(port, process, workdir)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("Azurite did not start")
