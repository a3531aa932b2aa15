"""cpv benchmark suite: each scenario against a baseline measured in the same
run, on the same server, with the same bytes.

    .venv/bin/python bench/run.py                 # full suite (about 15 minutes, ~12 GB of temp disk)
    .venv/bin/python bench/run.py --quick         # tiny sizes, one repetition (the CI smoke run)
    .venv/bin/python bench/run.py --only upload,list

Starts its own SeaweedFS and sshd on 127.0.0.1 (tests/servers/), prints per
scenario the median of cpv and of the baseline and their ratio, and writes
everything to bench/results/latest.json. No scenario asserts anything: the
numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers.seaweedfs import start_seaweedfs  # noqa: E402
from tests.servers.sshd import start_sshd  # noqa: E402

PY = sys.executable
# the `cpv` a user runs: the installed console script. `python -m cpv_core.cli` would run
# cli.py twice (as __main__, then imported by the plugins that add commands), ~10 ms more
_SCRIPT = Path(PY).parent / "cpv"
CPV = [PY, str(_SCRIPT)] if _SCRIPT.is_file() else [PY, "-m", "cpv_core.cli"]
ACCESS, SECRET, BUCKET = "AKIABENCH00000000001", "bench-secret-value-123", "vmo-model-checkpoints"
GiB = 1024**3


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------


def tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int]:
    """Wall time and peak RSS (process tree, sampled every 20 ms) of one command."""
    settle_disk()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {err.decode()[-2000:]}")
    return elapsed, peak


def settle_disk() -> None:
    """Write back every dirty page before a measurement: a gigabyte written by the step
    before (a test file, the previous run's output, the server's volume) is otherwise
    flushed during the next measurement and throttles it (measured: the same download
    took 1.5 s or 3.1 s depending on it)."""
    os.sync()


def timed(fn: Callable[[], object]) -> float:
    settle_disk()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def write_random(path: Path, size: int) -> None:
    chunk = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            n = min(len(chunk), size - written)
            f.write(chunk[:n])
            written += n
        f.seek(0)
        f.write(os.urandom(64))  # a new content hash every time


# --------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path, reps: int) -> None:
        self.workdir = workdir
        self.reps = reps
        self.s3 = None
        self.home = workdir / "home"
        (self.home / ".aws").mkdir(parents=True)
        creds = self.home / ".aws" / "credentials"
        creds.write_text(f"[bench]\naws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}\n")
        self.env = dict(
            os.environ,
            HOME=str(self.home),
            CPV_HOME=str(workdir / "cpv-home"),
            DVC_NO_ANALYTICS="1",
            GIT_CONFIG_GLOBAL=str(self.home / ".gitconfig"),
            AWS_SHARED_CREDENTIALS_FILE=str(creds),
            AWS_CONFIG_FILE=str(self.home / ".aws" / "config"),
        )
        (self.home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n")
        self.servers = 0
        self.results: dict[str, dict] = {}
        self.fresh_server()

    def fresh_server(self) -> None:
        """A new, empty SeaweedFS for the next scenario: a small `weed mini`
        runs out of writable volumes after tens of GB, and every scenario
        should measure the same kind of server."""
        if self.s3 is not None:
            self.s3.stop()
            shutil.rmtree(self.s3.workdir, ignore_errors=True)
        self.servers += 1
        self.s3 = start_seaweedfs(self.workdir / f"seaweedfs-{self.servers}", access_key=ACCESS, secret_key=SECRET, bucket=BUCKET)
        self.cpv(
            "aws-config",
            "--credential-path",
            self.env["AWS_SHARED_CREDENTIALS_FILE"],
            "--profile",
            "bench",
            "--bucket",
            BUCKET,
            "--endpoint-url",
            self.s3.endpoint,
        )

    def cpv(self, *args: str, cwd: Path | None = None) -> str:
        out = subprocess.run([*CPV, *args], env=self.env, cwd=cwd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"cpv {' '.join(args)}: {out.stderr}")
        return out.stdout

    def boto3(self):
        import boto3
        from boto3.s3.transfer import TransferConfig

        client = boto3.client(
            "s3", endpoint_url=self.s3.endpoint, aws_access_key_id=ACCESS, aws_secret_access_key=SECRET, region_name="us-east-1"
        )
        return client, TransferConfig()

    def workspace(self, team: str, model: str) -> Path:
        self.cpv("init", "model", "-t", team, "-m", model)
        return Path(self.env["CPV_HOME"]) / "workspaces" / team / model

    def record(self, name: str, cpv_times: list[float], base_times: list[float] | None, target: str, **extra) -> None:
        cpv_med = statistics.median(cpv_times)
        base_med = statistics.median(base_times) if base_times else None
        ratio = cpv_med / base_med if base_med else None
        self.results[name] = {
            "cpv_s": cpv_times,
            "baseline_s": base_times,
            "cpv_median_s": cpv_med,
            "baseline_median_s": base_med,
            "ratio": ratio,
            "target": target,
            **extra,
        }
        ratio_text = f"{ratio:6.2f}" if ratio is not None else "     -"
        base_text = f"{base_med:8.3f}s" if base_med is not None else "        -"
        print(
            f"{name:38} cpv {cpv_med:8.3f}s  baseline {base_text}  ratio {ratio_text}  target {target}"
            + "".join(f"  {k}={v}" for k, v in extra.items() if not isinstance(v, (list, dict))),
            flush=True,
        )

    def stop(self) -> None:
        if self.s3 is not None:
            self.s3.stop()

    def scenario(self, name: str, fn: Callable[..., None], *args: object) -> None:
        """Run one scenario on a fresh server; a failure is recorded, not fatal."""
        try:
            self.fresh_server()
            fn(self, *args)
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            print(f"{name:38} FAILED: {exc}", flush=True)
            self.results[name] = {"error": str(exc)[-2000:]}


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------


def slug(label: str) -> str:
    return label.replace(" ", "").replace(".", "_")


def scenario_upload(b: Bench, size: int, label: str) -> None:
    ws = b.workspace("bench", f"upload-{slug(label)}")
    client, config = b.boto3()
    cpv_times, base_times, rss = [], [], []
    for i in range(b.reps):
        write_random(ws / "model.bin", size)
        base_times.append(
            timed(lambda i=i: client.upload_file(str(ws / "model.bin"), BUCKET, f"baseline/{slug(label)}-{i}", Config=config))
        )
        elapsed, peak = run_measured([*CPV, "model", "upload", "-m", f"run {i}"], b.env, cwd=ws)
        cpv_times.append(elapsed)
        rss.append(peak)
    b.record(f"upload {label}", cpv_times, base_times, "<= 1.15", peak_rss_mb=round(max(rss) / 2**20))


def scenario_local_upload(b: Bench, size: int, label: str) -> None:
    """`cpv model upload` on the embedded local default (no S3, no SSH) against `cp` of the
    same file to the same disk: what versioning costs over copying the bytes once."""
    env = dict(b.env, CPV_HOME=str(b.workdir / "cpv-home-local"))
    subprocess.run([*CPV, "init", "model", "-t", "bench", "-m", "local"], env=env, check=True, capture_output=True)
    ws = Path(env["CPV_HOME"]) / "workspaces" / "bench" / "local"
    cpv_times, base_times, rss = [], [], []
    for i in range(b.reps):
        write_random(ws / "model.bin", size)
        copy = b.workdir / "cp-model.bin"
        for side in ("cpv", "cp") if i % 2 else ("cp", "cpv"):
            if side == "cp":
                base_times.append(run_measured(["cp", str(ws / "model.bin"), str(copy)], env)[0])
                copy.unlink()
            else:
                elapsed, peak = run_measured([*CPV, "model", "upload", "-m", f"run {i}"], env, cwd=ws)
                cpv_times.append(elapsed)
                rss.append(peak)
    b.record(f"upload {label}, local default, vs cp", cpv_times, base_times, "<= 1.5", peak_rss_mb=round(max(rss) / 2**20))


def scenario_s3_strategies(b: Bench, size: int, label: str) -> None:
    """How to get a content-addressed object onto S3 fastest, measured side by side
    on the same bytes (boto3 only, no cpv start-up): (a) `upload_file` alone, the
    baseline; (b) hash from the page cache, then `upload_file` (no cache copy);
    (c) hash while copying into a cache file, then `upload_file` of the cache copy
    (what cpv does today); (d) stream to a staging key while hashing (one read),
    then a server-side copy to the content key and a delete of the staging key."""
    import hashlib

    from boto3.s3.transfer import TransferConfig

    client, config = b.boto3()
    src = b.workdir / "strategies.bin"
    cache = b.workdir / "strategies.cache"
    chunk = 8 * 1024 * 1024

    def md5_of(path: Path, copy_to: Path | None = None) -> str:
        digest = hashlib.md5()
        with open(path, "rb") as reader, open(copy_to, "wb") if copy_to else open(os.devnull, "wb") as writer:
            while block := reader.read(chunk):
                digest.update(block)
                if copy_to:
                    writer.write(block)
        return digest.hexdigest()

    class HashingReader:
        """A non-seekable reader (boto3 then reads it in order, in one thread) that hashes what it hands out."""

        def __init__(self, path: Path) -> None:
            self.handle = open(path, "rb")
            self.digest = hashlib.md5()

        def read(self, n: int = -1) -> bytes:
            block = self.handle.read(n)
            self.digest.update(block)
            return block

    def hash_then_upload() -> None:
        oid = md5_of(src)
        client.upload_file(str(src), BUCKET, f"files/md5/{oid[:2]}/{oid[2:]}", Config=config)

    def cache_then_upload() -> None:
        oid = md5_of(src, cache)
        client.upload_file(str(cache), BUCKET, f"files/md5/{oid[:2]}/{oid[2:]}-c", Config=config)

    def stage_then_copy() -> None:
        reader = HashingReader(src)
        staging = f"staging/{os.getpid()}-{time.monotonic_ns()}"
        client.upload_fileobj(reader, BUCKET, staging, Config=config)
        reader.handle.close()
        oid = reader.digest.hexdigest()
        client.copy({"Bucket": BUCKET, "Key": staging}, BUCKET, f"files/md5/{oid[:2]}/{oid[2:]}-s", Config=TransferConfig())
        client.delete_object(Bucket=BUCKET, Key=staging)

    times: dict[str, list[float]] = {"a": [], "b": [], "c": [], "d": []}
    for i in range(b.reps):
        write_random(src, size)
        md5_of(src)  # the file is in the page cache for every strategy, as right after training wrote it
        times["a"].append(timed(lambda i=i: client.upload_file(str(src), BUCKET, f"baseline/strategies-{i}", Config=config)))
        times["b"].append(timed(hash_then_upload))
        times["c"].append(timed(cache_then_upload))
        times["d"].append(timed(stage_then_copy))
        cache.unlink(missing_ok=True)
    base = times["a"]
    b.record(f"s3 {label}: hash, then upload_file", times["b"], base, "(measure)")
    b.record(f"s3 {label}: hash+cache copy, then upload", times["c"], base, "(measure)")
    b.record(f"s3 {label}: stage while hashing, copy", times["d"], base, "(measure)")
    src.unlink(missing_ok=True)


def fresh_clone_downloads(b: Bench, model: str, baseline: Callable[[Path], None]) -> tuple[list[float], list[float], list[int]]:
    """``b.reps`` times: `cpv model download v0.1` of ``model`` into a fresh clone, and
    ``baseline(out)`` fetching the same bytes to a new path; times and cpv's peak RSS.
    Each side starts with the other's output deleted and written back, and they take
    turns going first: what one leaves behind otherwise slows the other (measured 2x)."""
    cpv_times, base_times, rss = [], [], []
    for i in range(b.reps):
        other = b.workdir / f"member-{model}-{i}"
        b.cpv("init", "model", "-t", "bench", "-m", model, "--repo-path", str(other))
        out, base_out = b.workdir / f"dl-{model}-{i}", b.workdir / f"base-dl-{model}-{i}"
        for side in ("cpv", "baseline") if i % 2 else ("baseline", "cpv"):
            if side == "baseline":
                base_times.append(timed(lambda base_out=base_out: baseline(base_out)))
                if base_out.is_dir():
                    shutil.rmtree(base_out)
                else:
                    base_out.unlink()
            else:
                elapsed, peak = run_measured([*CPV, "model", "download", "v0.1", "-o", str(out)], b.env, cwd=other)
                cpv_times.append(elapsed)
                rss.append(peak)
                shutil.rmtree(out)
        shutil.rmtree(other)
    return cpv_times, base_times, rss


def scenario_download(b: Bench, size: int, label: str) -> None:
    ws = b.workspace("bench", f"download-{slug(label)}")
    write_random(ws / "model.bin", size)
    b.cpv("model", "upload", cwd=ws)
    b.cpv("model", "tag", cwd=ws)
    client, config = b.boto3()
    key = f"baseline/dl-{slug(label)}"
    client.upload_file(str(ws / "model.bin"), BUCKET, key, Config=config)
    cpv_times, base_times, rss = fresh_clone_downloads(
        b, f"download-{slug(label)}", lambda out: client.download_file(BUCKET, key, str(out), Config=config)
    )
    b.record(f"download {label} (fresh cache, verified)", cpv_times, base_times, "<= 1.2", peak_rss_mb=round(max(rss) / 2**20))


def scenario_shards(b: Bench, size: int, label: str, nshards: int = 4) -> None:
    """`cpv model download` of a directory model (Hugging Face style: ``nshards`` safetensors
    shards of ``size / nshards`` bytes and a config.json) into a fresh clone, against boto3
    `download_file` of the same shards, two at a time (as `huggingface_hub` fetches them);
    then `cpv model upload` after every shard changed, against boto3 `upload_file` of all
    the shards at once."""
    ws = b.workspace("bench", f"shards-{slug(label)}")
    model = ws / "hf-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bench"}')
    names = [f"model-{i + 1:05d}-of-{nshards:05d}.safetensors" for i in range(nshards)]
    client, config = b.boto3()
    for name in names:
        write_random(model / name, size // nshards)
        client.upload_file(str(model / name), BUCKET, f"baseline/shards-{slug(label)}/{name}", Config=config)
    b.cpv("model", "upload", "hf-model", cwd=ws)
    b.cpv("model", "tag", cwd=ws)
    keys = [f"baseline/shards-{slug(label)}/{name}" for name in names]

    def baseline(out: Path) -> None:
        out.mkdir()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda k: client.download_file(BUCKET, k, str(out / k.rsplit("/", 1)[1]), Config=config), keys))

    cpv_times, base_times, rss = fresh_clone_downloads(b, f"shards-{slug(label)}", baseline)
    b.record(
        f"download {label} in {nshards} shards (fresh cache, verified)",
        cpv_times,
        base_times,
        "<= 1.2",
        peak_rss_mb=round(max(rss) / 2**20),
    )
    cpv_times, base_times, rss = [], [], []
    for i in range(b.reps):
        for name in names:  # every shard changed, as after a training run
            write_random(model / name, size // nshards)
        keys = [f"baseline/shards-up-{slug(label)}-{i}/{name}" for name in names]

        def upload_all(keys: list[str] = keys) -> None:
            with ThreadPoolExecutor(max_workers=nshards) as pool:
                list(pool.map(lambda k: client.upload_file(str(model / k.rsplit("/", 1)[1]), BUCKET, k, Config=config), keys))

        for side in ("cpv", "baseline") if i % 2 else ("baseline", "cpv"):
            if side == "baseline":
                base_times.append(timed(upload_all))
            else:
                elapsed, peak = run_measured([*CPV, "model", "upload", "hf-model", "-m", f"run {i}"], b.env, cwd=ws)
                cpv_times.append(elapsed)
                rss.append(peak)
    b.record(f"upload {label} in {nshards} shards", cpv_times, base_times, "<= 1.15", peak_rss_mb=round(max(rss) / 2**20))


def scenario_verify_cost(b: Bench, size: int, label: str) -> None:
    """What checking the bytes adds to a download, in one process, the server on the same
    cores: cpv's parallel part check (ranged GETs, each part's SHA-256 as it streams)
    against boto3's `download_file` of the same object, which checks nothing. The two
    take turns going first; each writes a new file, deleted before the other starts."""
    from cpv_plugins.dvc.part_digests import md5_with_parts
    from cpv_plugins.transports.s3 import download_verifying_parts

    client, config = b.boto3()
    src = b.workdir / "verify.bin"
    write_random(src, size)
    with open(src, "rb") as reader:
        md5, parts = md5_with_parts(reader, size, min_part_size=min(64 * 2**20, size // 4))
    assert parts is not None
    client.upload_file(str(src), BUCKET, "baseline/verify", Config=config)
    src.unlink()
    out = b.workdir / "verify.out"
    checked, plain = [], []
    for i in range(b.reps):
        for side in ("checked", "plain") if i % 2 else ("plain", "checked"):
            if side == "checked":
                checked.append(timed(lambda: download_verifying_parts(client, BUCKET, "baseline/verify", out, lambda n: None, parts, md5)))
            else:
                plain.append(timed(lambda: client.download_file(BUCKET, "baseline/verify", str(out), Config=config)))
            out.unlink()
    b.record(f"download {label}: verified vs not", checked, plain, "<= 1.1 (verification adds <= 10 %)")


def scenario_data_reupload(b: Bench, nfiles: int) -> None:
    ws = b.workspace("bench", "data")
    data = ws / "data"
    for i in range(nfiles):
        f = data / ("train", "validation", "test")[i % 3] / f"f{i:05}.bin"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(os.urandom(1024))
    b.cpv("data", "upload", cwd=ws)
    # the same tree handled by plain DVC in a sibling repo with the same remote kind
    plain = b.workdir / "plain-dvc"
    shutil.copytree(ws, plain, ignore=shutil.ignore_patterns(".cpv"))
    dvc = [PY, "-m", "dvc"]
    cpv_times, base_times = [], []
    for _ in range(b.reps):
        (data / "train" / "f00000.bin").write_bytes(os.urandom(1024))
        elapsed, _ = run_measured([*CPV, "data", "upload"], b.env, cwd=ws)
        cpv_times.append(elapsed)
        (plain / "data" / "train" / "f00000.bin").write_bytes(os.urandom(1024))
        start = time.perf_counter()
        subprocess.run([*dvc, "add", "-q", "data"], cwd=plain, env=b.env, check=True)
        subprocess.run([*dvc, "push", "-q"], cwd=plain, env=b.env, check=True)
        base_times.append(time.perf_counter() - start)
    b.record(f"re-upload 1 of {nfiles} files", cpv_times, base_times, "<= 1.0 s and <= 0.5")


def scenario_many_files(b: Bench, nfiles: int) -> None:
    """A data directory of ``nfiles`` 1 KiB files on S3: the first upload against a boto3
    thread pool uploading the same files, then re-uploads after changing one file."""
    ws = b.workspace("bench", f"many-{nfiles}")
    data = ws / "data"
    files = []
    for i in range(nfiles):
        f = data / f"d{i % 100:02}" / f"f{i:05}.bin"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(os.urandom(1024))
        files.append(f)
    client, config = b.boto3()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda f: client.upload_file(str(f), BUCKET, f"baseline/many/{f.relative_to(data)}", Config=config), files))
    base = time.perf_counter() - start
    first, _ = run_measured([*CPV, "data", "upload"], b.env, cwd=ws)
    b.record(f"first upload of {nfiles} files", [first], [base], "<= 1.3 (boto3 thread pool, 8 threads)")
    times, one_file = [], []
    changed = data / "d00" / "f00000.bin"
    for i in range(b.reps):
        changed.write_bytes(os.urandom(1024))
        times.append(run_measured([*CPV, "data", "upload"], b.env, cwd=ws)[0])
        # the baseline is the change itself on the wire: boto3 uploading just that file
        one_file.append(timed(lambda i=i: client.upload_file(str(changed), BUCKET, f"baseline/one-{i}", Config=config)))
    b.record(f"re-upload 1 of {nfiles} files", times, one_file, "<= 2.0 s (baseline: boto3 upload of the changed file)")


def uploaded_workspace(b: Bench, model: str) -> tuple[Path, Any, str]:
    """A workspace with one upload, cpv's tag-message encoder and the workspace's HEAD:
    what a fast-import batch of versions (annotated tags with cpv metadata) is written with."""
    ws = b.workspace("bench", model)
    (ws / "model.bin").write_bytes(b"x")
    b.cpv("model", "upload", "--metrics", '{"loss": 1.0}', cwd=ws)
    sys.path.insert(0, str(ROOT))
    from cpv_plugins.git.backend import encode_message

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws, capture_output=True, text=True, check=True).stdout.strip()
    return ws, encode_message, head


def publish_tags(b: Bench, ws: Path, batch: str) -> None:
    """Create the tags of a fast-import ``batch`` directly with git, then publish them in one push."""
    subprocess.run(["git", "fast-import", "--quiet"], cwd=ws, input=batch.encode(), check=True)
    subprocess.run(["git", "push", "-q", "origin", "--tags"], cwd=ws, check=True, env=b.env)


def workspace_with_versions(b: Bench, model: str, nversions: int) -> Path:
    """A workspace whose remote holds ``nversions`` model versions with metrics and a path, as cpv's tags record them."""
    ws, encode_message, head = uploaded_workspace(b, model)
    batch = "".join(
        f"tag model/v0.{i}\nfrom {head}\ntagger Bench <b@example.com> {1700000000 + i} +0000\n"
        f"data <<EOT\n{encode_message(f'run {i}', {'path': 'model.bin', 'metrics': {'loss': 1 / i, 'acc': i / nversions}, 'size': 1, 'digest': 'md5:x'})}EOT\n\n"
        for i in range(1, nversions + 1)
    )
    publish_tags(b, ws, batch)
    return ws


def scenario_list(b: Bench, nversions: int) -> None:
    ws = workspace_with_versions(b, f"list-{nversions}", nversions)
    cpv_times, base_times = [], []
    for _ in range(b.reps):
        base_times.append(run_measured(["git", "tag", "-l"], b.env, cwd=ws)[0])
        cpv_times.append(run_measured([*CPV, "model", "list", "--json"], b.env, cwd=ws)[0])
    b.record(f"list {nversions} versions with metrics", cpv_times, base_times, "<= 5x and <= 0.5 s")


def scenario_stages(b: Bench, nversions: int, nchanges: int) -> None:
    """``cpv model stages`` (and ``--history``) on a model with many versions and stage changes."""
    ws, encode_message, head = uploaded_workspace(b, f"stages-{nversions}")
    versions = "".join(
        f"tag model/v0.{i}\nfrom {head}\ntagger Bench <b@example.com> {1700000000 + i} +0000\n"
        f"data <<EOT\n{encode_message('', {'metrics': {'loss': 1 / i}, 'size': 1, 'digest': 'md5:x'})}EOT\n\n"
        for i in range(1, nversions + 1)
    )
    stages = ("dev", "staging", "prod")
    changes = "".join(
        f"tag stage/model/{stages[i % 3]}/{i // 3 + 1}\nfrom {head}\ntagger Bench <b@example.com> {1700100000 + i} +0000\n"
        f"data <<EOT\n{encode_message(f'change {i}', {'action': 'promote', 'version': f'v0.{i % nversions + 1}'})}EOT\n\n"
        for i in range(nchanges)
    )
    publish_tags(b, ws, versions + changes)
    commands = (
        (["model", "stages", "--json"], "stages"),
        (["model", "stages", "--history", "--json"], "stages --history"),
        (["registry", "--json"], "registry (no workspace needed)"),
    )
    for args, label in commands:
        cpv_times, base_times = [], []
        for _ in range(b.reps):
            base_times.append(run_measured(["git", "for-each-ref", "refs/tags/stage/"], b.env, cwd=ws)[0])
            cpv_times.append(run_measured([*CPV, *args], b.env, cwd=ws)[0])
        b.record(f"{label}: {nversions} versions, {nchanges} stage changes", cpv_times, base_times, "<= 0.5 s")


LOOP = """
import json, sys, time
from pathlib import Path
size, epochs, train_s, mode, path = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
block = bytearray(64 * 1024 * 1024)
ck = None
if mode.startswith("cpv"):
    from cpv_core import Checkpointer
    ck = Checkpointer("bench", "checkpointer", tag=False)
new_files = mode.endswith("new")  # each epoch writes a new file (as the HF Trainer's checkpoint-N), else rewrites one
saves, start = [], time.perf_counter()
for epoch in range(epochs):
    time.sleep(train_s)  # the training itself
    block[0] = epoch
    target = path.with_name(f"{path.stem}-{epoch}{path.suffix}") if new_files else path
    with open(target, "wb") as out:  # torch.save(...)
        for offset in range(0, size, len(block)):
            out.write(memoryview(block)[: min(len(block), size - offset)])
    if ck is not None:
        began = time.perf_counter()
        ck.save(target, metrics={"loss": 1 / (epoch + 1)}, snapshot="link" if new_files else "copy")
        saves.append(time.perf_counter() - began)
if ck is not None:
    ck.close()
print(json.dumps({"total": time.perf_counter() - start, "saves": saves}))
"""


def scenario_checkpointer(b: Bench, size: int, epochs: int, train_s: float, label: str) -> None:
    """A training loop saving a checkpoint each epoch: with the Checkpointer, and without cpv plus one upload."""
    ws = b.workspace("bench", "checkpointer")
    ckpt = b.workdir / "run" / "ckpt.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    cpv_totals, base_totals, saves = [], [], []
    for _ in range(b.reps):

        def loop(mode: str) -> dict:
            argv = [PY, "-c", LOOP, str(size), str(epochs), str(train_s), mode, str(ckpt)]
            return json.loads(subprocess.run(argv, env=b.env, capture_output=True, text=True, check=True).stdout)

        plain = loop("plain")
        upload, _ = run_measured([*CPV, "model", "upload", str(ckpt)], b.env, cwd=ws)
        base_totals.append(plain["total"] + upload)
        run = loop("cpv")
        cpv_totals.append(run["total"])
        saves.extend(run["saves"])
    b.record(
        f"checkpointer: {epochs} epochs saving {label} (loop + close)", cpv_totals, base_totals, "<= 1.1 (loop without cpv + one upload)"
    )
    copies = [timed(lambda: shutil.copyfile(ckpt, ckpt.with_suffix(".copy"))) for _ in range(b.reps)]
    b.record(f"checkpointer: one save() of {label} (median)", saves, copies, "<= 0.2 s (baseline: a plain copy of the file)")
    # a writer that puts each checkpoint in a new file, saved with snapshot="link"
    cpv_totals, base_totals, saves = [], [], []

    def remove_epoch_files() -> None:  # a writer of new files never rewrites one: each loop starts without them
        for old in ckpt.parent.glob(f"{ckpt.stem}-*{ckpt.suffix}"):
            old.unlink()

    for _ in range(b.reps):
        plain = loop("plain-new")
        upload, _ = run_measured([*CPV, "model", "upload", str(ckpt.with_name(f"{ckpt.stem}-{epochs - 1}{ckpt.suffix}"))], b.env, cwd=ws)
        base_totals.append(plain["total"] + upload)
        remove_epoch_files()
        run = loop("cpv-new")
        cpv_totals.append(run["total"])
        saves.extend(run["saves"])
        remove_epoch_files()
    b.record(f"checkpointer, new file per epoch, snapshot=link: {epochs} epochs", cpv_totals, base_totals, "<= 1.1")
    b.record(f"checkpointer, snapshot=link: one save() of {label}", saves, copies, "<= 0.2 s (baseline: a plain copy of the file)")


def scenario_startup(b: Bench, nversions: int) -> None:
    """Start-up over ``python -c pass``: `cpv --help`, and `cpv model list` of a model with
    ``nversions`` versions (its remote a bare repository on this machine)."""
    # pip compiles bytecode when it installs cpv; this machine sets PYTHONDONTWRITEBYTECODE=1,
    # which would make every run compile cpv's modules again (about 50 ms)
    subprocess.run(
        [PY, "-m", "compileall", "-q", str(ROOT / "cpv_core"), str(ROOT / "cpv_plugins")],
        check=True,
        env=dict(b.env, PYTHONDONTWRITEBYTECODE=""),
    )
    reps = max(5, b.reps)
    base = [run_measured([PY, "-c", "pass"], b.env)[0] for _ in range(reps)]
    times = [run_measured([*CPV, "--help"], b.env)[0] for _ in range(reps)]
    b.record(
        "start-up: cpv --help", times, base, "<= python + 0.10 s", overhead_s=round(statistics.median(times) - statistics.median(base), 3)
    )
    ws = workspace_with_versions(b, "startup", nversions)
    times = [run_measured([*CPV, "model", "list"], b.env, cwd=ws)[0] for _ in range(reps)]
    b.record(
        f"start-up: cpv model list, {nversions} versions",
        times,
        base,
        "<= python + 0.25 s",
        overhead_s=round(statistics.median(times) - statistics.median(base), 3),
    )


def scenario_tag_over_ssh(b: Bench) -> None:
    sshd = start_sshd(b.workdir / "sshd")
    try:
        env = dict(b.env, CPV_HOME=str(b.workdir / "cpv-home-ssh"))
        subprocess.run(
            [
                *CPV,
                "aws-config",
                "--credential-path",
                env["AWS_SHARED_CREDENTIALS_FILE"],
                "--profile",
                "bench",
                "--bucket",
                BUCKET,
                "--endpoint-url",
                b.s3.endpoint,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *CPV,
                "bitbucket-config",
                "-k",
                str(b.workdir / "bench_key"),
                "-w",
                "bench",
                "--host",
                sshd.host,
                "--port",
                str(sshd.port),
                "--ssh-user",
                sshd.user,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        sshd.authorize((b.workdir / "bench_key.pub").read_text())
        sshd.create_repo("bench", "bench-tag")
        subprocess.run([*CPV, "init", "model", "-t", "bench", "-m", "tag"], env=env, check=True, capture_output=True)
        ws = Path(env["CPV_HOME"]) / "workspaces" / "bench" / "tag"
        # the baseline is a plain git user's push: the same key and host checks, but no shared
        # connection (cpv keeps one open between its commands; plain ssh does not by default)
        plain_ssh = (
            "from cpv_core.plugin.config import CPVConfig; from cpv_plugins.bitbucket_ssh import BitbucketSettings; "
            "print(BitbucketSettings(CPVConfig().get_config('bitbucket')).ssh_command(share=False))"
        )
        git_env = dict(
            env, GIT_SSH_COMMAND=subprocess.run([PY, "-c", plain_ssh], env=env, capture_output=True, text=True, check=True).stdout.strip()
        )
        cpv_times, base_times = [], []
        for i in range(b.reps):
            (ws / "model.bin").write_bytes(os.urandom(1024))
            subprocess.run([*CPV, "model", "upload"], env=env, cwd=ws, check=True, capture_output=True)
            cpv_times.append(run_measured([*CPV, "model", "tag"], env, cwd=ws)[0])
            subprocess.run(["git", "tag", f"plain-{i}"], cwd=ws, check=True)
            base_times.append(run_measured(["git", "push", "-q", "origin", f"refs/tags/plain-{i}"], git_env, cwd=ws)[0])
        b.record("tag + push over sshd", cpv_times, base_times, "<= 1.3")
    finally:
        sshd.stop()


# --------------------------------------------------------------------------


def machine() -> dict[str, object]:
    import psutil

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / GiB, 1),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (smoke run)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--only",
        default="",
        help="comma list: upload,download,shards,strategies,verify,local,rss,data,list,stages,checkpointer,startup,tag,scaling",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    size = 4 * 1024 * 1024 if args.quick else GiB
    only = set(filter(None, args.only.split(","))) or {
        "upload",
        "download",
        "shards",
        "strategies",
        "verify",
        "local",
        "rss",
        "data",
        "manyfiles",
        "list",
        "stages",
        "checkpointer",
        "startup",
        "tag",
        "scaling",
    }
    workdir = Path(tempfile.mkdtemp(prefix="cpv-bench-"))
    b = Bench(workdir, reps)
    print(f"machine: {machine()}", flush=True)
    try:
        if "startup" in only:
            b.scenario("start-up", scenario_startup, 20 if args.quick else 1000)
        label = "4 MiB" if args.quick else "1 GiB"
        if "upload" in only:
            b.scenario(f"upload {label}", scenario_upload, size, label)
        if "download" in only:
            b.scenario(f"download {label}", scenario_download, size, label)
        if "shards" in only:
            b.scenario(f"shards {label}", scenario_shards, size, label)
        if "strategies" in only:
            b.scenario(f"s3 strategies {label}", scenario_s3_strategies, size, label)
        if "local" in only:
            b.scenario(f"local upload {label}", scenario_local_upload, size, label)
        if "verify" in only:
            b.scenario(f"verify cost {label}", scenario_verify_cost, size, label)
        if "rss" in only and not args.quick:
            b.scenario("upload 2 GiB", scenario_upload, 2 * GiB, "2 GiB")
            b.scenario("download 2 GiB", scenario_download, 2 * GiB, "2 GiB")
        if "data" in only:
            b.scenario("re-upload", scenario_data_reupload, 50 if args.quick else 2000)
        if "manyfiles" in only:
            b.scenario("many files", scenario_many_files, 60 if args.quick else 20000)
        if "list" in only:
            for n in (20,) if args.quick else (100, 1000, 5000):
                b.scenario(f"list {n}", scenario_list, n)
        if "checkpointer" in only:
            if args.quick:
                b.scenario("checkpointer", scenario_checkpointer, 8 * 1024 * 1024, 2, 0.1, "8 MiB")
            else:
                b.scenario("checkpointer", scenario_checkpointer, GiB, 5, 2.0, "1 GiB")
        if "stages" in only:
            b.scenario("stages", scenario_stages, 20 if args.quick else 1000, 10 if args.quick else 200)
        if "tag" in only:
            b.scenario("tag + push over sshd", scenario_tag_over_ssh)
        if "scaling" in only and not args.quick:
            for gib in (0.25, 4):
                b.scenario(f"upload {gib} GiB", scenario_upload, int(gib * GiB), f"{gib} GiB")
    finally:
        b.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "quick": args.quick, "reps": reps, "scenarios": b.results}, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
