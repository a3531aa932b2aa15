"""Whole or absent: every mutating command completes, or the next command
repairs what it left by itself; no version without its bytes; no lost update.
Local default (plain git for the teammate); the sshd soak is in test_faults."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.config import CPVConfig
from cpv_core.errors import CPVError, DVCError, WorkspaceDirtyError
from cpv_core.faults import KILL_ENV, KILLED_EXIT

from .helpers import git, write_data_dir, write_model

TEAM, MODEL = "AI-Convo", "whisper"
CPV = [sys.executable, "-m", "cpv_core.cli"]


def cpv(*args: str, cwd: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.run([*CPV, *args], cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def bare(cpv_home: Path) -> Path:
    return cpv_home / "local" / "git" / TEAM / f"{MODEL}.git"


def store(cpv_home: Path) -> Path:
    return cpv_home / "local" / "storage" / TEAM / MODEL


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def cache_object(ws: Path, digest: str) -> Path:
    oid = digest.removeprefix("md5:")
    return ws / ".dvc" / "cache" / "files" / "md5" / oid[:2] / oid[2:]


def store_object(cpv_home: Path, digest: str) -> Path:
    oid = digest.removeprefix("md5:")
    return store(cpv_home) / "files" / "md5" / oid[:2] / oid[2:]


def flip_a_byte(path: Path) -> None:
    """Damage a stored object but keep its size and mtime (what a stat check cannot see)."""
    st = path.stat()
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(autouse=True)
def two_copies(cpv_home) -> None:
    """These tests damage a stored object in place (bit rot) and expect the other copy
    to repair it: the local default keeps one copy unless ``local.link`` is false."""
    CPVConfig().set_config("local.link", "false")


@pytest.fixture
def m(cpv_home) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 300_000, seed=1)
    m.upload_model_checkpoint(metrics={"loss": 0.5})
    assert m.tag_model_checkpoint() == "v0.1"
    return m


def invariants(m: ModelsCheckpointsManage, cpv_home: Path) -> None:
    """What must hold after the command that follows an interruption."""
    ws = m.repo_path
    remote_tags = set(git(bare(cpv_home), "for-each-ref", "--format=%(refname) %(objectname)", "refs/tags/").splitlines())
    local_tags = set(git(ws, "for-each-ref", "--format=%(refname) %(objectname)", "refs/tags/").splitlines())
    assert local_tags == remote_tags
    head = git(ws, "rev-parse", "HEAD").strip()  # nothing local is unpublished (being behind is fine)
    assert subprocess.run(["git", "merge-base", "--is-ancestor", head, "main"], cwd=bare(cpv_home)).returncode == 0
    for record in m.list_checkpoints():  # every version the remote lists verifies there and downloads
        assert m.verify(record.version, remote=True) == [], record.version
    leftovers = [
        p for p in ws.rglob("*") if ".git" not in p.relative_to(ws).parts and (p.name.endswith((".cpv-tmp", ".tmp")) or ".cpv-" in p.name)
    ]
    leftovers += [p for p in store(cpv_home).rglob("*.cpv-tmp")]
    assert not leftovers, leftovers
    assert not git(ws, "status", "--porcelain", "--untracked-files=no").strip()


# -- 1. publishing a tag ------------------------------------------------------------------


def test_a_tag_killed_before_its_push_is_reconciled_even_after_a_teammate_took_that_version(m, cpv_home, tmp_path):
    write_model(m.repo_path / "model.bin", 300_000, seed=2)
    m.upload_model_checkpoint()
    assert cpv("model", "tag", cwd=m.repo_path, kill_at="tag.created").returncode == KILLED_EXIT
    assert "model/v0.2" in git(m.repo_path, "tag", "-l")
    # a teammate publishes their own v0.2 meanwhile
    b = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "b")
    b.import_model_init()
    write_model(b.repo_path / "model.bin", 1000, seed=9)
    b.upload_model_checkpoint()
    assert b.tag_model_checkpoint() == "v0.2"
    result = ok(cpv("model", "tag", cwd=m.repo_path))
    assert result.stdout.strip() == "v0.3" and "replaced" in result.stderr
    assert [r.author for r in m.list_checkpoints()][1] == b.list_checkpoints()[1].author
    invariants(m, cpv_home)


def test_a_local_only_tag_is_removed_and_said_so(m, cpv_home):
    write_model(m.repo_path / "model.bin", 300_000, seed=2)
    m.upload_model_checkpoint()
    assert cpv("model", "tag", cwd=m.repo_path, kill_at="tag.created").returncode == KILLED_EXIT
    result = ok(cpv("model", "list", cwd=m.repo_path))
    assert "removed local version tag(s) model/v0.2" in result.stderr and "v0.2" not in result.stdout
    assert ok(cpv("model", "tag", cwd=m.repo_path)).stdout.strip() == "v0.2"
    invariants(m, cpv_home)


# -- 2, 3. revert --------------------------------------------------------------------------


def test_revert_refetches_a_damaged_cache_object_and_never_commits_it(m, cpv_home):
    original = md5(m.repo_path / "model.bin")
    write_model(m.repo_path / "model.bin", 300_000, seed=2)
    m.upload_model_checkpoint()
    flip_a_byte(cache_object(m.repo_path, m.get_model_metadata("v0.1").digest))
    m.revert_model_checkpoint("v0.1")
    assert md5(m.repo_path / "model.bin") == original
    assert m.tag_model_checkpoint("v0.3") == "v0.3"
    invariants(m, cpv_home)


def test_a_revert_that_fails_leaves_the_workspace_exactly_as_it_was(m, cpv_home):
    write_model(m.repo_path / "model.bin", 300_000, seed=2)
    m.upload_model_checkpoint()
    digest = m.get_model_metadata("v0.1").digest
    flip_a_byte(cache_object(m.repo_path, digest))
    flip_a_byte(store_object(cpv_home, digest))
    before = (md5(m.repo_path / "model.bin"), (m.repo_path / "model.bin.dvc").read_text(), git(m.repo_path, "rev-parse", "HEAD"))
    result = cpv("model", "revert", "v0.1", cwd=m.repo_path)
    assert result.returncode == 5 and "corrupt" in result.stderr and "Traceback" not in result.stderr
    after = (md5(m.repo_path / "model.bin"), (m.repo_path / "model.bin.dvc").read_text(), git(m.repo_path, "rev-parse", "HEAD"))
    assert after == before
    assert not git(m.repo_path, "status", "--porcelain", "--untracked-files=all").strip()


@pytest.mark.parametrize("phase", ["revert.pointers-restored", "revert.content-placed", "download.object-placed", "revert.committed"])
def test_a_killed_revert_is_rolled_back_or_finished_by_the_next_command(m, cpv_home, phase):
    write_model(m.repo_path / "model.bin", 300_000, seed=2)
    m.upload_model_checkpoint()
    current = md5(m.repo_path / "model.bin")
    assert cpv("model", "revert", "v0.1", cwd=m.repo_path, kill_at=phase).returncode == KILLED_EXIT
    result = ok(cpv("model", "list", cwd=m.repo_path))
    if phase == "revert.committed":  # the commit was made: the revert is finished, its push comes next
        assert md5(m.repo_path / "model.bin") != current
    else:
        assert "rolled back" in result.stderr
        assert md5(m.repo_path / "model.bin") == current
    ok(cpv("model", "revert", "v0.1", cwd=m.repo_path))
    invariants(m, cpv_home)


# -- the kill matrix for upload, tag and combined tag ----------------------------------------------


@pytest.mark.parametrize(
    "phase", ["upload.placed", "upload.tracked", "upload.remote-partial", "upload.stored", "upload.base-recorded", "upload.committed"]
)
def test_kill_matrix_upload(m, cpv_home, phase):
    trained = write_model(m.repo_path / "model.bin", 300_000, seed=3)
    assert cpv("model", "upload", "-m", "next", cwd=m.repo_path, kill_at=phase).returncode == KILLED_EXIT
    assert (m.repo_path / "model.bin").read_bytes() == trained
    ok(cpv("model", "upload", "-m", "next", cwd=m.repo_path))
    assert ok(cpv("model", "tag", cwd=m.repo_path)).stdout.strip() == "v0.2"
    assert (m.repo_path / "model.bin").read_bytes() == trained
    invariants(m, cpv_home)


@pytest.mark.parametrize("phase", ["tag.created", "tag.published"])
def test_kill_matrix_combined_tag(cpv_home, tmp_path, phase):
    src = tmp_path / "data"
    write_data_dir(src)
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init(data_path=src)
    write_model(m.repo_path / "model.bin", 5000, seed=4)
    m.upload_model_checkpoint()
    assert cpv("checkpoint", "create", cwd=m.repo_path, kill_at=phase).returncode == KILLED_EXIT
    result = cpv("checkpoint", "create", cwd=m.repo_path)
    if phase == "tag.published":  # it was published: creating it again says so
        assert result.returncode == 9 and "already combined version" in result.stderr
    else:
        ok(result)
    invariants(m, cpv_home)
    assert DataCheckpointsManage(TEAM, MODEL).verify(remote=True) == []


# -- 5. lost update -----------------------------------------------------------------------------


def test_a_rebased_pointer_never_lets_stale_content_undo_a_teammates_upload(cpv_home, tmp_path):
    src = tmp_path / "data"
    write_data_dir(src)
    a = ModelsCheckpointsManage(TEAM, MODEL)
    a.import_model_init(data_path=src)
    b = DataCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "b")
    b.import_data_init()
    b.pull()
    (b.repo_path / "data" / "train" / "new.txt").write_text("B's new sample\n")
    b.upload_data_checkpoint(message="B adds a sample")
    write_model(a.repo_path / "model.bin", 5000, seed=5)
    a.upload_model_checkpoint()  # rebases: data.dvc is now B's, A's data/ is not
    a_data = DataCheckpointsManage(TEAM, MODEL)
    with pytest.raises(WorkspaceDirtyError, match="changed upstream"):
        a_data.upload_data_checkpoint()
    result = cpv("data", "upload", cwd=a.repo_path)
    assert result.returncode == 10 and "cpv pull" in result.stderr
    assert ok(cpv("pull", cwd=a.repo_path)).stdout.split() == ["data"]
    assert (a.repo_path / "data" / "train" / "new.txt").read_text() == "B's new sample\n"
    assert not a_data.upload_data_checkpoint().changed
    assert a_data.tag_data_checkpoint() == "v0.1"
    got = a_data.download_data_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert (Path(got.data_path) / "train" / "new.txt").exists()


# -- 6. no version without its bytes -----------------------------------------------------------


def test_a_damaged_cache_object_is_never_what_gets_stored(m, cpv_home):
    digest = m.get_model_metadata("v0.1").digest
    flip_a_byte(cache_object(m.repo_path, digest))
    store_object(cpv_home, digest).chmod(0o644)
    store_object(cpv_home, digest).unlink()
    m.upload_model_checkpoint(metrics={"loss": 0.4})  # same bytes, re-evaluated
    assert m.verify("v0.1", remote=True) == [] and m.verify("v0.1") == []


def test_a_damaged_directory_object_is_reported_then_repaired_by_the_next_upload(cpv_home, tmp_path):
    src = tmp_path / "data"
    write_data_dir(src)
    d = DataCheckpointsManage(TEAM, MODEL)
    d.import_data_init(src)
    # files last changed long before they were hashed, as real data is (one hashed within a
    # second of its last change is always read again, which would repair the cache silently)
    for f in (d.repo_path / "data").rglob("*.txt"):
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns - 3_600_000_000_000))
    assert not d.upload_data_checkpoint().changed  # init tagged v0.1; this re-reads the aged files once
    sample = d.repo_path / "data" / "train" / "sample_0.txt"
    digest = "md5:" + md5(sample)
    flip_a_byte(cache_object(d.repo_path, digest))
    store_object(cpv_home, digest).chmod(0o644)
    store_object(cpv_home, digest).unlink()
    # and the manifest that vouched for it (as gc removes them: manifests first), so the upload asks for the file
    store_object(cpv_home, d.ws.storage.objects("data")[0]).unlink()
    (d.repo_path / "data" / "test" / "more.txt").write_text("more\n")
    before = git(d.repo_path, "rev-parse", "HEAD")
    with pytest.raises(DVCError, match="damaged"):
        d.upload_data_checkpoint()
    assert git(d.repo_path, "rev-parse", "HEAD") == before  # nothing committed for bytes that are not stored
    d.upload_data_checkpoint()
    assert d.tag_data_checkpoint() == "v0.2"
    assert d.verify("v0.2", remote=True) == []


# -- 8. smaller ones ------------------------------------------------------------------------------


def test_a_failed_upload_leaves_no_local_commit(m, cpv_home):
    before = (git(m.repo_path, "rev-parse", "HEAD"), (m.repo_path / "metrics.log").read_text())
    moved = bare(cpv_home).with_name("gone.git")
    bare(cpv_home).rename(moved)
    write_model(m.repo_path / "model.bin", 300_000, seed=6)
    with pytest.raises(CPVError):
        m.upload_model_checkpoint(metrics={"loss": 0.3})
    assert (git(m.repo_path, "rev-parse", "HEAD"), (m.repo_path / "metrics.log").read_text()) == before
    moved.rename(bare(cpv_home))
    m.upload_model_checkpoint(metrics={"loss": 0.3})
    assert m.tag_model_checkpoint() == "v0.2"


def test_verify_of_a_tag_on_a_tree_checks_its_content_without_a_traceback(m, cpv_home):
    git(m.repo_path, "tag", "-a", "model/v3.0", "-m", "tree", "HEAD^{tree}")
    result = cpv("verify", "v3.0", cwd=m.repo_path)  # the tree holds the pointer: its content verifies
    assert result.returncode == 0 and "Traceback" not in result.stderr and "every file matches" in result.stdout


def test_atomic_writes_follow_the_umask(tmp_path):
    from cpv_core.paths import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def _three_file_data_version(cpv_home: Path) -> tuple[DataCheckpointsManage, Path, Path]:
    """A pushed data directory of three files; its stored manifest and b.bin's stored object."""
    d = DataCheckpointsManage(TEAM, MODEL)
    d.import_data_init()
    for name in ("a", "b", "c"):
        (d.repo_path / "data" / f"{name}.bin").parent.mkdir(parents=True, exist_ok=True)
        (d.repo_path / "data" / f"{name}.bin").write_bytes(name.encode() * 100)
        os.utime(d.repo_path / "data" / f"{name}.bin", (1e9, 1e9))  # not racily clean: the stat cache vouches next time
    d.upload_data_checkpoint()
    manifest = store_object(cpv_home, d.ws.storage.objects("data")[0])
    assert manifest.name.endswith(".dir") and manifest.is_file()
    return d, manifest, store_object(cpv_home, md5(d.repo_path / "data" / "b.bin"))


def test_an_unchanged_file_the_store_lost_is_uploaded_again_before_anything_is_committed(cpv_home):
    """No stored manifest vouches for the lost file (gc removes manifests first), so the
    confirmation asks for it, finds it missing and uploads it again."""
    d, manifest, lost = _three_file_data_version(cpv_home)
    manifest.unlink()
    lost.unlink()
    (d.repo_path / "data" / "a.bin").write_bytes(b"changed")
    d.upload_data_checkpoint()
    assert lost.is_file()
    assert d.verify(d.tag_data_checkpoint(), remote=True) == []


def test_a_stored_manifest_vouches_for_its_files_and_verify_finds_what_was_lost_behind_its_back(cpv_home):
    """DVC's rule: a manifest on the store means its files are there, so re-uploading one
    changed file asks the store only about that file. An object deleted behind cpv's back
    (not by gc) is then not noticed by the upload; `cpv verify --remote` names it."""
    d, _, lost = _three_file_data_version(cpv_home)
    lost.unlink()
    (d.repo_path / "data" / "a.bin").write_bytes(b"changed")
    d.upload_data_checkpoint()
    assert not lost.is_file()
    problems = d.verify(d.tag_data_checkpoint(), remote=True)
    assert len(problems) == 1 and "b.bin" in problems[0]


def test_gc_deletes_manifests_before_the_files_they_vouch_for(cpv_home, monkeypatch):
    """A gc killed part-way must never leave a manifest whose files are gone."""
    d, manifest, _ = _three_file_data_version(cpv_home)
    objects = d.ws.storage.objects("data")
    order: list[str] = []
    transport = d.ws.storage.transport
    monkeypatch.setattr(transport, "delete", order.append)
    d.ws.storage.delete_objects(sorted(objects, key=lambda oid: oid.endswith(".dir")))  # files first as given
    assert order[0] == manifest.parent.name + manifest.name and set(order) == set(objects)
