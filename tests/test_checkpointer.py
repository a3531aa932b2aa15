"""The Checkpointer: non-blocking checkpoints from a training loop."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from cpv_core import Checkpointer, ModelsCheckpointsManage
from cpv_core.errors import GitError, ValidationError

from .helpers import write_model
from .test_model_forms import read_tree, write_hf_model

TEAM, MODEL = "AI-Convo", "whisper"


class Gate:
    """Holds the worker inside its upload until released (a slow network, made exact)."""

    def __init__(self, ck: Checkpointer) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = ck._upload

        def gated(snap):  # noqa: ANN001
            self.entered.set()
            assert self.release.wait(30)
            real(snap)

        ck._upload = gated  # type: ignore[method-assign]


def test_save_returns_at_once_and_the_upload_gets_the_bytes_as_saved(cpv_home, tmp_path):
    ck = Checkpointer(TEAM, MODEL, tag=True)
    gate = Gate(ck)
    ckpt = tmp_path / "ckpt.pt"
    first = write_model(ckpt, 2_000_000, seed=1)
    started = time.perf_counter()
    assert ck.save(ckpt, metrics={"loss": 0.5})
    assert time.perf_counter() - started < 1.0 and gate.entered.wait(10)  # the upload is in flight
    write_model(ckpt, 2_000_000, seed=2)  # the next epoch overwrites it at once
    gate.release.set()
    ck.close()
    assert ck.versions == ["v0.1"] and ck.uploaded == 1
    m = ModelsCheckpointsManage(TEAM, MODEL)
    got = m.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert Path(got.model_path).name == "ckpt.pt" and Path(got.model_path).read_bytes() == first
    assert m.get_model_metadata("v0.1").metrics == {"loss": 0.5}


def test_saves_faster_than_uploads_coalesce_and_the_newest_is_never_dropped(cpv_home, tmp_path, caplog):
    ck = Checkpointer(TEAM, MODEL, tag=True)
    gate = Gate(ck)
    ckpt = tmp_path / "ckpt.pt"
    payloads = []
    for epoch in range(4):
        payloads.append(write_model(ckpt, 1000, seed=epoch))
        ck.save(ckpt, metrics={"loss": 1.0 / (epoch + 1)})
        if epoch == 0:
            assert gate.entered.wait(10)  # epoch 0 is uploading; 1, 2, 3 pile up behind it
    gate.release.set()
    ck.wait()
    assert ck.versions == ["v0.1", "v0.2"] and ck.superseded == 2
    assert "replaced by save #3" in caplog.text and "replaced by save #4" in caplog.text
    m = ModelsCheckpointsManage(TEAM, MODEL)
    assert Path(m.download_model_checkpoint("v0.2", output_dir=tmp_path / "o").model_path).read_bytes() == payloads[-1]
    ck.close()


def test_auto_tags_only_improvements_and_every_skips(cpv_home, tmp_path):
    ckpt = tmp_path / "model.bin"
    with Checkpointer(TEAM, MODEL, every=2, keep_best="loss", tag="auto") as ck:
        uploaded = []
        for epoch, loss in enumerate([0.9, 0.95, 0.7, 0.8, 0.85, 0.6]):
            write_model(ckpt, 500, seed=epoch)
            uploaded.append(ck.save(ckpt, metrics={"loss": loss}))
            ck.wait()
    # saves 1 (best so far), 2 (every 2nd), 3 (best), 4 (every 2nd), 6 (best and 2nd); 5 skipped
    assert uploaded == [True, True, True, True, False, True]
    assert ck.uploaded == 5 and ck.versions == ["v0.1", "v0.2", "v0.3"]
    m = ModelsCheckpointsManage(TEAM, MODEL)
    assert [m.get_model_metadata(v).metrics["loss"] for v in ck.versions] == [0.9, 0.7, 0.6]


def test_a_directory_checkpoint_keeps_its_layout(cpv_home, tmp_path):
    files = write_hf_model(tmp_path / "hf-export")
    with Checkpointer(TEAM, MODEL, tag=True) as ck:
        ck.save(tmp_path / "hf-export", metrics={"wer": 0.1})
    m = ModelsCheckpointsManage(TEAM, MODEL)
    got = m.download_model_checkpoint(ck.versions[0], output_dir=tmp_path / "out")
    assert read_tree(Path(got.model_path)) == files


def test_a_worker_error_is_raised_at_the_next_call_never_swallowed(cpv_home, tmp_path):
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    (cpv_home / "local" / "git" / TEAM / f"{MODEL}.git").rename(tmp_path / "gone")
    ck = Checkpointer(TEAM, MODEL)
    write_model(tmp_path / "ckpt.pt", 500)
    ck.save(tmp_path / "ckpt.pt", metrics={"loss": 1.0})
    with pytest.raises(GitError):
        ck.wait()
    ck.close()  # the error was handed over once; closing is clean


def test_bad_arguments_are_refused_at_once(cpv_home, tmp_path):
    with pytest.raises(ValidationError, match="every=0"):
        Checkpointer(TEAM, MODEL, every=0)
    with pytest.raises(ValidationError, match="keep_best"):
        Checkpointer(TEAM, MODEL, keep_best="loss:sideways")
    ck = Checkpointer(TEAM, MODEL)
    with pytest.raises(ValidationError, match="does not exist"):
        ck.save(tmp_path / "missing.pt")
    with pytest.raises(ValidationError):
        ck.save(tmp_path, metrics={"loss": float("nan")})
    ck.close()


def test_snapshots_of_a_killed_training_run_are_removed_by_the_next_checkpointer(cpv_home, tmp_path, caplog):
    import subprocess
    import sys

    ckpt = tmp_path / "ckpt.pt"
    write_model(ckpt, 5000)
    script = (
        "import os, sys\n"
        "from cpv_core import Checkpointer\n"
        f"ck = Checkpointer({TEAM!r}, {MODEL!r})\n"
        "ck._upload = lambda snap: os._exit(137)  # killed while the upload runs\n"
        f"ck.save({str(ckpt)!r})\n"
        "ck.wait()\n"
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 137
    root = cpv_home / "checkpointer" / TEAM / MODEL
    (left,) = list(root.iterdir())
    assert any(left.rglob("ckpt.pt"))  # the killed run's snapshot is still there
    ck = Checkpointer(TEAM, MODEL)
    assert not left.exists() and "snapshots of a training run that ended" in caplog.text
    ck.close()


def test_the_snapshot_is_moved_into_the_workspace_not_copied_again(cpv_home, tmp_path):
    """One write per save fewer: the upload renames the Checkpointer's own snapshot into
    the workspace (same inode), where a training script's file would be copied."""
    ck = Checkpointer(TEAM, MODEL, tag=False)
    snapshots: list[int] = []
    real = ck._upload

    def noting(snap):  # noqa: ANN001
        snapshots.append(snap.path.stat().st_ino)
        real(snap)

    ck._upload = noting  # type: ignore[method-assign]
    ckpt = tmp_path / "ckpt.pt"
    write_model(ckpt, 100_000, seed=3)
    ck.save(ckpt)
    ck.close()
    workspace_file = ModelsCheckpointsManage(TEAM, MODEL).repo_path / "ckpt.pt"
    assert snapshots == [workspace_file.stat().st_ino] and ckpt.stat().st_ino != snapshots[0]
    assert workspace_file.read_bytes() == ckpt.read_bytes()


def test_snapshot_link_costs_nothing_for_writers_of_new_files_and_bad_values_are_refused(cpv_home, tmp_path):
    """snapshot="link" (what the Hugging Face callback uses: the Trainer writes every
    checkpoint to a new folder) hard-links instead of copying; the source may be deleted
    (checkpoint rotation) before the upload and the version still has its bytes."""
    ck = Checkpointer(TEAM, MODEL, tag=True)
    gate = Gate(ck)
    folder = tmp_path / "checkpoint-500"
    files = write_hf_model(folder)
    inode = (folder / "model-00001-of-00003.safetensors").stat().st_ino
    assert ck.save(folder, metrics={"loss": 0.4}, snapshot="link")
    assert gate.entered.wait(10)
    snapshots = list(ck.staging.rglob("model-00001-of-00003.safetensors"))
    assert [p.stat().st_ino for p in snapshots] == [inode]  # linked, not copied
    shutil.rmtree(folder)  # the Trainer rotates old checkpoints away
    gate.release.set()
    ck.close()
    m = ModelsCheckpointsManage(TEAM, MODEL)
    got = m.download_model_checkpoint(ck.versions[0], output_dir=tmp_path / "out")
    assert read_tree(Path(got.model_path)) == files
    with pytest.raises(ValidationError, match="snapshot='hard' is not 'copy' or 'link'"):
        Checkpointer(TEAM, MODEL).save(tmp_path, snapshot="hard")


def test_a_live_run_from_another_pid_namespace_keeps_its_snapshots(cpv_home, tmp_path, caplog):
    """A run in a container or another sweep job shares CPV_HOME: its PID means nothing
    here (a PID no process has in this namespace). Starting a Checkpointer beside it
    must leave its snapshot alone, and the run then closes cleanly."""
    import subprocess
    import sys

    ckpt = tmp_path / "ckpt.pt"
    write_model(ckpt, 5000)
    script = (
        "import os, sys\n"
        "os.getpid = lambda: 4_000_000  # the PID its own namespace gave it: no process here has it\n"
        "from cpv_core import Checkpointer\n"
        f"ck = Checkpointer({TEAM!r}, {MODEL!r})\n"
        "upload = ck._upload\n"
        "def held(snap):\n"
        "    print('saved', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    upload(snap)\n"
        "ck._upload = held\n"
        f"ck.save({str(ckpt)!r})\n"
        "ck.close()\n"
        "print('closed', ck.versions, flush=True)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "saved"
        (live,) = list((cpv_home / "checkpointer" / TEAM / MODEL).iterdir())
        assert live.name.startswith("4000000-")
        Checkpointer(TEAM, MODEL).close()  # a second run starts (and ends) beside it
        assert live.is_dir() and any(live.rglob("ckpt.pt")) and "training run that ended" not in caplog.text
        out, _ = other.communicate("go\n", timeout=120)
    finally:
        other.kill()
    assert other.returncode == 0 and "closed ['v0.1']" in out
