"""The benchmark suite runs end to end at tiny sizes (no timing is asserted:
numbers belong in docs/benchmarks.md, not in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quick_run_produces_every_scenario(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    names = set(data["scenarios"])
    for prefix in ("start-up: cpv --help", "upload", "download", "re-upload", "list", "tag + push over sshd"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    for scenario in data["scenarios"].values():
        assert scenario["cpv_median_s"] > 0 and scenario["baseline_median_s"] > 0 and scenario["ratio"] > 0


@pytest.mark.slow
def test_the_tensor_layout_bench_runs_every_row(tmp_path):
    out = tmp_path / "tensors.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "tensors.py"),
            "--size-mib",
            "48",
            "--reps",
            "1",
            "--workdir",
            str(tmp_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 8 and not [name for name, row in rows.items() if "error" in row], rows
    assert all(row["cpv_median_s"] > 0 and row["baseline_median_s"] > 0 for row in rows.values())
