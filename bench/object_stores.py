"""Benchmarks of issue #30's backends, each against a baseline measured in the same run:

* GCS (fake-gcs-server) and Azure Blob (Azurite) on loopback: `cpv model upload` and
  `cpv model download` of one file, against the vendor SDK's own upload/download of
  the same bytes (google-cloud-storage, azure-storage-blob) and against the fsspec
  library DVC uses (gcsfs, adlfs): the client-library choice in docs/architecture.md;
* `cpv model tag` (tag + publish) over HTTPS (git http-backend behind TLS) against one
  plain `git push` of a tag to the same server.

Every step runs as its own process; wall time and the process tree's peak RSS are
sampled by bench/run.py's `run_measured`. Prints ratios; writes JSON with --out.

    python bench/object_stores.py [--size-mib 1024] [--repeat 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from run import machine, run_measured, write_random  # noqa: E402

from tests.servers.azurite import start_azurite  # noqa: E402
from tests.servers.fake_gcs import start_fake_gcs  # noqa: E402
from tests.servers.git_https import start_git_https  # noqa: E402

BUCKET = "bench-bucket"
TOKEN = "benchtoken-0123456789"
CPV = [sys.executable, "-m", "cpv_core.cli"]

# one step, run in its own process: python -c SNIPPET
SDK_GCS = """
import sys; from google.cloud import storage; from google.auth.credentials import AnonymousCredentials
c = storage.Client(project='b', credentials=AnonymousCredentials(), client_options={'api_endpoint': sys.argv[1]})
blob = c.bucket(sys.argv[2]).blob(sys.argv[3], chunk_size=16 * 1024 * 1024)
blob.upload_from_filename(sys.argv[4]) if sys.argv[5] == 'up' else blob.download_to_filename(sys.argv[4], raw_download=True)
"""
FSSPEC_GCS = """
import sys, gcsfs
fs = gcsfs.GCSFileSystem(endpoint_url=sys.argv[1], token='anon')
path = sys.argv[2] + '/' + sys.argv[3]
fs.put_file(sys.argv[4], path) if sys.argv[5] == 'up' else fs.get_file(path, sys.argv[4])
"""
SDK_AZURE = """
import sys; from azure.storage.blob import BlobServiceClient
b = BlobServiceClient.from_connection_string(sys.argv[1], max_block_size=8 * 1024 * 1024, max_single_put_size=8 * 1024 * 1024).get_blob_client(sys.argv[2], sys.argv[3])
if sys.argv[5] == 'up':
    with open(sys.argv[4], 'rb') as f: b.upload_blob(f, overwrite=True, max_concurrency=4)
else:
    with open(sys.argv[4], 'wb') as f: b.download_blob(max_concurrency=4).readinto(f)
"""
FSSPEC_AZURE = """
import sys, adlfs
fs = adlfs.AzureBlobFileSystem(connection_string=sys.argv[1])
path = sys.argv[2] + '/' + sys.argv[3]
fs.put_file(sys.argv[4], path) if sys.argv[5] == 'up' else fs.get_file(path, sys.argv[4])
"""


def median_run(cmds: list[list[str]], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int]:
    times, peaks = [], []
    for cmd in cmds:
        t, rss = run_measured(cmd, env, cwd)
        times.append(t)
        peaks.append(rss)
    return statistics.median(times), max(peaks)


def store_rows(name: str, env: dict[str, str], endpoint: str, container: str, src: Path, work: Path, repeat: int) -> list[dict]:
    """Upload and download of ``src`` by cpv, the SDK and the fsspec library."""
    sdk, fss = (SDK_GCS, FSSPEC_GCS) if name == "gcs" else (SDK_AZURE, FSSPEC_AZURE)
    rows = []
    for direction in ("up", "down"):
        results = {}
        for label, snippet in (("sdk", sdk), ("fsspec", fss)):
            cmds = []
            for i in range(repeat):
                key = f"baseline/{label}-{i}"
                if direction == "down":
                    subprocess.run([sys.executable, "-c", snippet, endpoint, container, key, str(src), "up"], env=env, check=True)
                cmds.append(
                    [
                        sys.executable,
                        "-c",
                        snippet,
                        endpoint,
                        container,
                        key,
                        str(src if direction == "up" else work / f"{label}-{i}.out"),
                        direction,
                    ]
                )
            results[label] = median_run(cmds, env)
        cmds = []
        for i in range(repeat):
            model = f"m{direction}{i}"
            subprocess.run([*CPV, "init", "model", "-t", "bench", "-m", model], env=env, check=True, capture_output=True)
            ws = Path(env["CPV_HOME"]) / "workspaces" / "bench" / model
            if direction == "up":
                os.link(src, ws / "model.bin") if not (ws / "model.bin").exists() else None
                cmds.append([*CPV, "model", "upload", "-t", "bench", "--model-name", model, "-q"])
            else:
                os.link(src, ws / "model.bin")
                subprocess.run([*CPV, "model", "upload", "-t", "bench", "--model-name", model, "-q"], env=env, check=True)
                subprocess.run([*CPV, "model", "tag", "-t", "bench", "--model-name", model, "-q"], env=env, check=True)
                cmds.append([*CPV, "model", "download", "-t", "bench", "--model-name", model, "v0.1", "-o", str(work / f"cpv-{i}"), "-q"])
        results["cpv"] = median_run(cmds, env)
        row = {"store": name, "step": "upload" if direction == "up" else "download", "bytes": src.stat().st_size}
        for label, (t, rss) in results.items():
            row[f"{label}_s"], row[f"{label}_rss_mb"] = round(t, 3), round(rss / 2**20)
        row["cpv_vs_sdk"] = round(results["cpv"][0] / results["sdk"][0], 2)
        row["fsspec_vs_sdk"] = round(results["fsspec"][0] / results["sdk"][0], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def tag_row(env: dict[str, str], work: Path, repeat: int) -> dict:
    """`cpv model tag` over HTTPS against one plain `git push` of a tag to the same server."""
    server = start_git_https(work / "git-https", TOKEN)
    env = {**env, "CPV_BENCH_TOKEN": TOKEN}
    subprocess.run(
        [*CPV, "setup", "--non-interactive", "--storage", "local", "--hosting", "git", "--git-url-template", f"{server.base_url}/b/{{repo}}.git",
         "--git-token", "env:CPV_BENCH_TOKEN", "--git-ca-file", str(server.cert)], env=env, check=True, capture_output=True,
    )  # fmt: skip
    tags, pushes = [], []
    for i in range(repeat):
        model = f"t{i}"
        server.create_repo(f"b/bench-{model}.git")
        subprocess.run([*CPV, "init", "model", "-t", "bench", "-m", model], env=env, check=True, capture_output=True)
        ws = Path(env["CPV_HOME"]) / "workspaces" / "bench" / model
        (ws / "model.bin").write_bytes(os.urandom(4096))
        subprocess.run([*CPV, "model", "upload", "-t", "bench", "--model-name", model, "-q"], env=env, check=True)
        tags.append([*CPV, "model", "tag", "-t", "bench", "--model-name", model, "-q"])
        git_env = {**env, "GIT_SSL_CAINFO": str(server.cert), "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.helper",
                   "GIT_CONFIG_VALUE_0": f"!f() {{ echo username=b; echo password={TOKEN}; }}; f"}  # fmt: skip
        pushes.append((["git", "-C", str(ws), "push", "-q", f"{server.base_url}/b/bench-{model}.git", f"plain-{i}"], git_env))
    tag_t, tag_rss = median_run(tags, env)
    for i, (cmd, _) in enumerate(pushes):  # after cpv's own fetches, which prune tags the server lacks
        subprocess.run(["git", "-C", cmd[2], "tag", f"plain-{i}"], check=True)
    push_t = statistics.median(run_measured(cmd, e)[0] for cmd, e in pushes)
    server.stop()
    row = {"step": "tag over HTTPS", "cpv_s": round(tag_t, 3), "cpv_rss_mb": round(tag_rss / 2**20), "git_push_s": round(push_t, 3)}
    row["cpv_vs_git_push"] = round(tag_t / push_t, 2)
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cpv-bench-stores-") as tmp:
        work = Path(tmp)
        src = work / "model.bin"
        write_random(src, args.size_mib * 2**20)
        base = {**os.environ, "HOME": str(work / "home"), "GIT_CONFIG_NOSYSTEM": "1", "DVC_NO_ANALYTICS": "1",
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}  # fmt: skip
        (work / "home").mkdir()
        gitconfig = work / "home" / ".gitconfig"
        gitconfig.write_text("[user]\n\tname = bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n")
        base["GIT_CONFIG_GLOBAL"] = str(gitconfig)

        (work / "gcs").mkdir()
        gcs = start_fake_gcs(work / "gcs")
        gcs.create_bucket(BUCKET)
        env = {**base, "CPV_HOME": str(work / "cpv-gcs")}
        subprocess.run(
            [*CPV, "setup", "--non-interactive", "--storage", "gcs", "--gcs-bucket", BUCKET, "--gcs-endpoint", gcs.endpoint],
            env=env,
            check=True,
            capture_output=True,
        )
        rows += store_rows("gcs", env, gcs.endpoint, BUCKET, src, work, args.repeat)
        gcs.stop()

        (work / "azure").mkdir()
        azure = start_azurite(work / "azure")
        azure.create_container(BUCKET)
        env = {**base, "CPV_HOME": str(work / "cpv-azure"), "CPV_BENCH_AZURE": azure.connection_string}
        subprocess.run(
            [
                *CPV,
                "setup",
                "--non-interactive",
                "--storage",
                "azure",
                "--azure-container",
                BUCKET,
                "--azure-connection-string",
                "env:CPV_BENCH_AZURE",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        rows += store_rows("azure", env, azure.connection_string, BUCKET, src, work, args.repeat)
        azure.stop()

        rows.append(tag_row({**base, "CPV_HOME": str(work / "cpv-https")}, work, args.repeat))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "size_mib": args.size_mib, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
