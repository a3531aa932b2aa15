"""Issue #32's tensor layout, measured against the whole-file layout and boto3 in one run
on SeaweedFS (started here), with a synthetic model made here: ``--size-mib`` (default
1024) of float32 tensors, 120 layers of equal size plus one 40 MiB embedding.

    .venv/bin/python bench/tensors.py                 # 1 GiB, as the issue asks
    .venv/bin/python bench/tensors.py --size-mib 128  # a quick look

Rows:
- 10 consecutive checkpoints, 80% of the bytes frozen and 20% changed completely each
  time: bytes stored against the distinct bytes; each new checkpoint's upload against the
  whole-file layout's upload of the same file (3 of them: its storage is 10x by design).
- a fine-tune changing one contiguous 5% block of rows in every tensor: the second
  version's stored bytes against a whole file.
- the reassembled download of the whole model against boto3's download of the file, and
  cpv's peak RSS.
- `download --tensors` of the 40 MiB embedding: bytes fetched against the tensor plus the
  header, time against the whole download (both cpv processes); and `open_tensors` of it
  timed inside a Python process against boto3's whole download.
- chunking and hashing throughput on one core beside MD5's.
Prints a table and writes bench/results/tensors.json; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import BUCKET, CPV, Bench, fresh_clone_downloads, machine, run_measured, timed  # noqa: E402

LAYERS = 120
EMBED = "embed.weight"


def layer_shape(size_mib: int) -> tuple[int, int]:
    per_layer = (size_mib - 40) * 2**20 // LAYERS
    return per_layer // 4096, 1024


def random_array(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(rng.bytes(int(np.prod(shape)) * 4), dtype=np.float32).reshape(shape).copy()


def frozen_model(size_mib: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tensors = {EMBED: random_array(rng, (10240, 1024))}
    for i in range(LAYERS):
        tensors[f"layers.{i:03}.weight"] = random_array(rng, layer_shape(size_mib))
        tensors[f"layers.{i:03}.bias"] = random_array(rng, (1024,))
    return tensors


def checkpoint(base: dict[str, np.ndarray], step: int) -> dict[str, np.ndarray]:
    """The last fifth of the layers trained (new bytes) at ``step``; the rest frozen."""
    rng = np.random.default_rng(1000 + step)
    out = dict(base)
    for i in range(LAYERS * 4 // 5, LAYERS):
        out[f"layers.{i:03}.weight"] = random_array(rng, base[f"layers.{i:03}.weight"].shape)
    return out


def fine_tune(base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One contiguous 5% block of rows of every tensor changed (new token rows, one head)."""
    rng = np.random.default_rng(7)
    out = {}
    for name, array in base.items():
        changed = array.copy()
        rows = max(1, changed.shape[0] // 20)
        start = changed.shape[0] // 3
        changed[start : start + rows] = random_array(rng, (rows, *changed.shape[1:]))
        out[name] = changed
    return out


def stored_bytes(client, model: str) -> int:
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"bench/{model}/"):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def upload(b: Bench, ws: Path, tensors: dict[str, np.ndarray]) -> tuple[float, int]:
    save_file(tensors, str(ws / "model.bin"))
    elapsed, rss = run_measured([*CPV, "model", "upload"], b.env, cwd=ws)
    b.cpv("model", "tag", cwd=ws)
    return elapsed, rss


def scenario_checkpoints(b: Bench, size_mib: int) -> None:
    client, _ = b.boto3()
    base = frozen_model(size_mib)
    file_size = sum(a.nbytes for a in base.values())
    changing = sum(base[f"layers.{i:03}.weight"].nbytes for i in range(LAYERS * 4 // 5, LAYERS))
    b.cpv("init", "model", "-t", "bench", "-m", "tensors", "--layout", "tensors")
    chunked = Path(b.env["CPV_HOME"]) / "workspaces" / "bench" / "tensors"
    whole = b.workspace("bench", "whole")
    tensor_times, whole_times = [], []
    for step in range(10):
        model = checkpoint(base, step)
        elapsed, _ = upload(b, chunked, model)
        if step:
            tensor_times.append(elapsed)
        if step < 3:
            elapsed, _ = upload(b, whole, model)
            if step:
                whole_times.append(elapsed)
    distinct = file_size + 9 * changing
    stored = stored_bytes(client, "tensors")
    b.record(
        "10 checkpoints, 20% new each: stored bytes",
        [stored / 2**30],
        [distinct / 2**30],
        "<= 1.05x the distinct bytes (whole files: 10x one checkpoint)",
        whole_file_gib=round(10 * file_size / 2**30, 2),
        unit="GiB, not seconds",
    )
    b.record("upload of a new checkpoint (20% new)", tensor_times, whole_times, "<= 0.4x the whole-file layout's upload")


def scenario_fine_tune(b: Bench, size_mib: int) -> None:
    client, _ = b.boto3()
    base = frozen_model(size_mib)
    file_size = sum(a.nbytes for a in base.values())
    b.cpv("init", "model", "-t", "bench", "-m", "finetune", "--layout", "tensors")
    ws = Path(b.env["CPV_HOME"]) / "workspaces" / "bench" / "finetune"
    upload(b, ws, base)
    before = stored_bytes(client, "finetune")
    upload(b, ws, fine_tune(base))
    added = stored_bytes(client, "finetune") - before
    b.record(
        "fine-tune, 5% rows of every tensor: stored",
        [added / 2**30],
        [file_size / 2**30],
        "<= 0.2x a whole file",
        unit="GiB, not seconds",
    )


def scenario_download(b: Bench, size_mib: int) -> None:
    client, config = b.boto3()
    base = frozen_model(size_mib)
    b.cpv("init", "model", "-t", "bench", "-m", "dl", "--layout", "tensors")
    ws = Path(b.env["CPV_HOME"]) / "workspaces" / "bench" / "dl"
    upload(b, ws, base)
    key = "baseline/whole-model"
    client.upload_file(str(ws / "model.bin"), BUCKET, key, Config=config)
    cpv_times, base_times, rss = fresh_clone_downloads(b, "dl", lambda out: client.download_file(BUCKET, key, str(out), Config=config))
    b.record(
        "reassembled download (fresh clone)",
        cpv_times,
        base_times,
        "<= 1.2x boto3's download; RSS <= 250 MB",
        peak_rss_mb=round(max(rss) / 2**20),
    )
    member = b.workdir / "lazy-member"
    b.cpv("init", "model", "-t", "bench", "-m", "dl", "--repo-path", str(member))
    lazy_times, fetched = [], 0
    for i in range(b.reps):
        out = b.workdir / f"lazy-{i}"
        start = time.perf_counter()
        got = json.loads(b.cpv("model", "download", "v0.1", "--tensors", EMBED, "-o", str(out), "--json", cwd=member))
        lazy_times.append(time.perf_counter() - start)
        fetched = got["bytes_fetched"]
        shutil.rmtree(out)
    script = (
        "import sys, time, cpv_core\n"
        "start = time.perf_counter()\n"
        f"with cpv_core.open_tensors('bench', 'dl', 'v0.1', repo_path=sys.argv[1]) as t:\n"
        f"    t[{EMBED!r}]\n"
        "print(time.perf_counter() - start)\n"
    )
    api_times = []
    for _ in range(b.reps):
        done = subprocess.run([sys.executable, "-c", script, str(member)], env=b.env, capture_output=True, text=True, check=True)
        api_times.append(float(done.stdout.strip().splitlines()[-1]))
    b.record("open_tensors: one 40 MiB tensor (in process)", api_times, base_times, "<= 0.1x boto3's whole download (in process)")
    wanted = base[EMBED].nbytes
    b.record(
        "download --tensors of a 40 MiB tensor",
        lazy_times,
        cpv_times,
        "<= 0.1x the whole download; bytes <= 1.05x tensor + header",
        bytes_ratio=round(fetched / wanted, 4),
    )


def scenario_throughput(b: Bench, size_mib: int) -> None:
    from cpv_plugins.dvc.chunking import chunk_file

    base = frozen_model(min(size_mib, 512))
    path = b.workdir / "throughput.safetensors"
    save_file(base, str(path))
    data = path.read_bytes()
    mib = len(data) / 2**20
    md5 = [timed(lambda: hashlib.md5(data).hexdigest()) for _ in range(b.reps)]
    cut = [timed(lambda: chunk_file(io.BytesIO(data), len(data), lambda oid, piece: None, lambda n: None)) for _ in range(b.reps)]
    b.record(
        "chunk + hash (tensors) vs MD5 alone",
        cut,
        md5,
        "report: MB/s per core",
        chunk_mib_s=round(mib / min(cut)),
        md5_mib_s=round(mib / min(md5)),
    )
    from pyfastcdc import FastCDC

    cdc = [timed(lambda: sum(1 for _ in FastCDC(2**20, min_size=2**18, max_size=2**22).cut_buf(data))) for _ in range(b.reps)]
    b.record("FastCDC cut (other files) vs MD5 alone", cdc, md5, ">= 0.5 GB/s per core", cdc_mib_s=round(mib / min(cdc)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="model size in MiB (default 1024)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the repeatable steps")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files and the server go (default: the temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tensors.json", help="where the results go")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cpv-tensors-", dir=args.workdir))
    b = Bench(workdir, args.reps)
    b.env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's cpv runs from compiled modules
    try:
        b.scenario("throughput", scenario_throughput, args.size_mib)
        b.scenario("checkpoints", scenario_checkpoints, args.size_mib)
        b.scenario("fine-tune", scenario_fine_tune, args.size_mib)
        b.scenario("download", scenario_download, args.size_mib)
    finally:
        b.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "date": time.strftime("%Y-%m-%d"), "results": b.results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
