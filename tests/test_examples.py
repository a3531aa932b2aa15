"""The seed scenarios in examples/ run as scripts and do what they print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True, env=dict(os.environ), timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_basic_model_versioning():
    out = run_example("basic_model_versioning.py")
    assert "versions: ['v0.1', 'v0.2', 'v0.3']" in out
    assert "downloaded v0.1" in out and "reverted workspace to v0.1" in out


def test_multi_team_management():
    out = run_example("multi_team_management.py")
    assert "AI-Convo/whisper: v0.1" in out
    assert "AI-Vision/whisper: v0.1, v0.2" in out  # same model name, separate team, colleague's version visible
    assert "AI-Vision/yolo: v0.1" in out


def test_experiment_tracking():
    out = run_example("experiment_tracking.py")
    assert "best: v0.2 wer=0.072" in out
    assert "wer v0.1 -> v0.2: -0.019" in out
    assert "models trained on data v0.1: v0.1, v0.2, v0.3" in out


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_every_example_script_is_tested(script):
    assert script in Path(__file__).read_text().replace("test_every_example", "")


def test_training_loop():
    out = run_example("training_loop.py")
    assert "epoch 5: loss=0.1667 saved" in out
    uploaded, superseded = (int(n) for n in re.search(r"uploaded (\d+) checkpoint\(s\) \((\d+) replaced", out).groups())
    assert uploaded + superseded == 6 and uploaded >= 2  # the first and the newest always go
    tagged = re.search(r"tagged (.*)", out).group(1).split(", ")
    assert f"best: {tagged[-1]} loss=0.1667" in out  # the last epoch improved: its version is the best
