"""Models as people have them: a file of any name or a directory of shards,
kept under its own name and layout, switching form from one version to the next."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cpv_core import ModelsCheckpointsManage
from cpv_core.errors import GitError, ValidationError, WorkspaceDirtyError
from cpv_core.faults import KILLED_EXIT

from .helpers import git, tree_state, worktree, write_model
from .test_history import cpv
from .test_whole import cpv as cpv_process
from .test_whole import store

TEAM, MODEL = "AI-Convo", "whisper"
SHARDS = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]


def write_hf_model(root: Path, seed: int = 0) -> dict[str, bytes]:
    """A Hugging Face style folder: config and tokenizer JSON, three weight shards."""
    files = {
        "config.json": json.dumps({"model_type": "whisper", "seed": seed}).encode(),
        "tokenizer.json": b'{"vocab": {"a": 0}}',
        "generation_config.json": b'{"max_length": 448}',
    }
    for i, name in enumerate(SHARDS):
        files[name] = bytes([seed % 256, i]) * 20_000
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stored_objects(cpv_home: Path) -> set[str]:
    return {p.relative_to(store(cpv_home)).as_posix() for p in store(cpv_home).rglob("*") if p.is_file()}


@pytest.fixture
def m(cpv_home) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    return m


def test_a_directory_model_keeps_its_name_and_layout_through_download(m, tmp_path):
    src = tmp_path / "runs" / "whisper-hf"
    files = write_hf_model(src)
    result = m.upload_model_checkpoint(model_path=src, metrics={"wer": 0.1}, message="hf export")
    assert result.nfiles == 6 and result.size == sum(map(len, files.values()))
    assert read_tree(m.repo_path / "whisper-hf") == files and not (m.repo_path / "model.bin").exists()
    assert m.tag_model_checkpoint() == "v0.1"

    got = m.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert got.model_path == str(tmp_path / "out" / "whisper-hf")
    assert read_tree(Path(got.model_path)) == files
    assert got.size_mb == round(result.size / 2**20, 3)
    meta = m.get_model_metadata("v0.1")
    assert meta.path == "whisper-hf" and meta.size == result.size and meta.message == "hf export"
    assert m.verify("v0.1") == []


def test_changing_one_shard_uploads_one_shard_and_diff_names_it(m, tmp_path, cpv_home):
    src = tmp_path / "whisper-hf"
    write_hf_model(src)
    m.upload_model_checkpoint(model_path=src)
    m.tag_model_checkpoint()
    before = stored_objects(cpv_home)
    (m.repo_path / "whisper-hf" / SHARDS[1]).write_bytes(b"retrained" * 5000)
    m.upload_model_checkpoint()  # the workspace's model is now the directory
    m.tag_model_checkpoint()
    new = stored_objects(cpv_home) - before
    # the changed shard and the directory's new manifest: nothing else moved
    assert len(new) == 2 and sum(1 for o in new if o.endswith(".dir")) == 1
    d = m.diff("v0.1", "v0.2")
    assert d["files"] == {"added": [], "removed": [], "changed": [SHARDS[1]]}
    # these stand-in shards are not real safetensors: the file-level diff stands, and says why
    assert "cannot read the tensors" in d["tensors"][SHARDS[1]]["error"]
    out = cpv("diff", "v0.1", "v0.2", cwd=m.repo_path).output
    assert f"changed  {SHARDS[1]}" in out


def test_a_file_of_any_name_keeps_it(m, tmp_path):
    src = tmp_path / "ckpt-epoch3.pt"
    data = write_model(src, 3000, seed=3)
    m.upload_model_checkpoint(model_path=src)
    m.tag_model_checkpoint()
    assert (m.repo_path / "ckpt-epoch3.pt").read_bytes() == data
    tracked = git(m.repo_path, "ls-files").split()
    assert "ckpt-epoch3.pt.dvc" in tracked and "model.bin.dvc" not in tracked
    got = m.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert Path(got.model_path).name == "ckpt-epoch3.pt" and Path(got.model_path).read_bytes() == data


def test_a_model_switches_between_file_and_directory_across_versions(m, tmp_path):
    first = write_model(m.repo_path / "model.bin", 4000, seed=1)
    m.upload_model_checkpoint()
    assert m.tag_model_checkpoint() == "v0.1"
    files = write_hf_model(tmp_path / "hf")
    m.upload_model_checkpoint(model_path=tmp_path / "hf")
    assert m.tag_model_checkpoint() == "v0.2"
    assert not (m.repo_path / "model.bin").exists()  # it was stored: nothing is lost

    d = m.diff("v0.1", "v0.2")
    assert d["files"]["removed"] == ["model.bin"] and d["files"]["added"] == sorted(files)

    m.revert_model_checkpoint("v0.1")
    assert (m.repo_path / "model.bin").read_bytes() == first and not (m.repo_path / "hf").exists()
    assert json.loads((m.repo_path / ".cpv" / "workspace.json").read_text())["files"]["model"] == "model.bin"
    assert not git(m.repo_path, "status", "--porcelain")
    m.revert_model_checkpoint("v0.2")
    assert read_tree(m.repo_path / "hf") == files and not (m.repo_path / "model.bin").exists()

    # each version downloads in its own form, whatever the workspace holds now
    assert Path(m.download_model_checkpoint("v0.1", output_dir=tmp_path / "a").model_path).read_bytes() == first
    assert read_tree(Path(m.download_model_checkpoint("v0.2", output_dir=tmp_path / "b").model_path)) == files
    assert [v.path for v in m.list_checkpoints()] == ["model.bin", "hf"]


def test_a_model_with_changes_never_uploaded_is_left_in_place_when_the_model_moves(m, tmp_path):
    write_model(m.repo_path / "model.bin", 2000, seed=1)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    unsaved = write_model(m.repo_path / "model.bin", 2000, seed=2)
    lines: list[str] = []
    m.echo = lines.append
    write_hf_model(tmp_path / "hf")
    m.upload_model_checkpoint(model_path=tmp_path / "hf")
    assert (m.repo_path / "model.bin").read_bytes() == unsaved
    assert any("model.bin was left in the workspace" in line for line in lines)
    assert m.tag_model_checkpoint() == "v0.2"  # the leftover is not the model: nothing is dirty
    # a revert to the version that lived there does not overwrite it without force
    with pytest.raises(WorkspaceDirtyError, match="model.bin exists in the workspace"):
        m.revert_model_checkpoint("v0.1")
    assert (m.repo_path / "model.bin").read_bytes() == unsaved and (m.repo_path / "hf").is_dir()
    m.revert_model_checkpoint("v0.1", force=True)
    assert m.target == "model.bin" and not (m.repo_path / "hf").exists()


def test_names_that_cannot_be_a_model_are_refused_and_change_nothing(m, tmp_path):
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    before = tree_state(m.repo_path)
    for name in ("metrics.log", "README.md", "weights.dvc", "data"):
        path = tmp_path / name
        write_model(path, 100)
        with pytest.raises(ValidationError, match=name):
            m.upload_model_checkpoint(model_path=path)
    (m.repo_path / "hf").mkdir()
    (m.repo_path / "hf" / "mine.txt").write_text("the user's own")
    before = tree_state(m.repo_path)
    write_hf_model(tmp_path / "elsewhere" / "hf")
    with pytest.raises(WorkspaceDirtyError, match="already exists"):
        m.upload_model_checkpoint(model_path=tmp_path / "elsewhere" / "hf")
    assert tree_state(m.repo_path) == before


def test_a_directory_inside_the_workspace_is_versioned_where_it_is(m):
    files = write_hf_model(m.repo_path / "checkpoints" / "best")
    out = cpv("model", "upload", "checkpoints/best", "--json", cwd=m.repo_path).stdout
    assert json.loads(out)["path"] == str(m.repo_path / "checkpoints" / "best")
    assert read_tree(m.repo_path / "checkpoints" / "best") == files
    assert (m.repo_path / "checkpoints" / "best.dvc").is_file()
    assert "/best" in (m.repo_path / "checkpoints" / ".gitignore").read_text()
    assert cpv("model", "tag", cwd=m.repo_path).stdout.strip() == "v0.1"
    assert "checkpoints/best" in cpv("status", cwd=m.repo_path).stdout


@pytest.mark.parametrize("phase", ["upload.moved-placed", "upload.moved-stored", "upload.moved-committed"])
def test_a_killed_move_is_rolled_back_or_finished_by_the_next_command(m, tmp_path, phase):
    first = write_model(m.repo_path / "model.bin", 3000, seed=1)
    m.upload_model_checkpoint()
    write_hf_model(tmp_path / "hf")
    assert cpv_process("model", "upload", str(tmp_path / "hf"), cwd=m.repo_path, kill_at=phase).returncode == KILLED_EXIT
    result = cpv_process("status", cwd=m.repo_path)
    assert result.returncode == 0, result.stderr
    again = ModelsCheckpointsManage(TEAM, MODEL)
    if phase == "upload.moved-committed":  # the commit was made: finished, and published by the next upload
        assert again.target == "hf" and not (m.repo_path / "model.bin").exists()
        again.upload_model_checkpoint()
        assert git(m.repo_path, "rev-parse", "HEAD") == git(m.repo_path, "rev-parse", "origin/main")
    else:
        assert "rolled back" in result.stderr
        assert again.target == "model.bin" and (m.repo_path / "model.bin").read_bytes() == first
        assert not (m.repo_path / "hf").exists() and not git(m.repo_path, "status", "--porcelain")
        again.upload_model_checkpoint(model_path=tmp_path / "hf")
        assert again.target == "hf"
    assert again.tag_model_checkpoint() == "v0.1"


def test_a_teammates_move_reaches_pull_and_other_workspace_json_changes_do_not(m, tmp_path, cpv_home):
    write_model(m.repo_path / "model.bin", 2000, seed=1)
    m.upload_model_checkpoint()
    bob = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    bob.pull()
    assert (bob.repo_path / "model.bin").is_file()
    files = write_hf_model(tmp_path / "hf")
    m.upload_model_checkpoint(model_path=tmp_path / "hf")
    assert cpv("pull", cwd=bob.repo_path).stdout.split()[-1] == "hf"
    assert read_tree(bob.repo_path / "hf") == files and not (bob.repo_path / "model.bin").exists()

    # a commit that changes anything else in workspace.json is refused before it lands
    meta_path = m.repo_path / ".cpv" / "workspace.json"
    meta = json.loads(meta_path.read_text())
    meta["backends"]["storage"] = "dvc-s3"
    meta_path.write_text(json.dumps(meta))
    git(m.repo_path, "commit", "-qam", "switch storage")
    git(m.repo_path, "push", "-q", "origin", "main")
    before = worktree(bob.repo_path)
    with pytest.raises(GitError, match="workspace.json"):
        bob.pull()
    assert worktree(bob.repo_path) == before


def test_a_link_where_the_model_would_land_is_refused(m, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, m.repo_path / "hf")
    write_hf_model(tmp_path / "src" / "hf")
    with pytest.raises(WorkspaceDirtyError, match="already exists"):
        m.upload_model_checkpoint(model_path=tmp_path / "src" / "hf")
    assert list(outside.iterdir()) == []


def test_a_combined_checkpoint_holds_a_directory_model_and_reverts_both(m, tmp_path):
    from cpv_core import CombinedCheckpointsManage, DataCheckpointsManage

    from .helpers import write_data_dir

    first = write_model(m.repo_path / "model.bin", 2000, seed=1)
    data_src = tmp_path / "dataset"
    write_data_dir(data_src)
    DataCheckpointsManage(TEAM, MODEL).upload_data_checkpoint(data_path=data_src)
    m.upload_model_checkpoint()
    combined = CombinedCheckpointsManage(TEAM, MODEL)
    assert combined.tag_model_and_data() == ("v0.1", "v0.1")
    files = write_hf_model(tmp_path / "hf")
    m.upload_model_checkpoint(model_path=tmp_path / "hf")
    assert combined.tag_model_and_data()[0] == "v0.2"
    combined.revert_model_and_data("v0.1")
    assert (m.repo_path / "model.bin").read_bytes() == first and not (m.repo_path / "hf").exists()
    combined.revert_model_and_data("v0.2")
    assert read_tree(m.repo_path / "hf") == files and not (m.repo_path / "model.bin").exists()
    assert not git(m.repo_path, "status", "--porcelain")


def test_a_nested_directory_model_downloads_reverts_and_verifies(m, tmp_path):
    files = write_hf_model(m.repo_path / "checkpoints" / "best")
    m.upload_model_checkpoint(model_path=m.repo_path / "checkpoints" / "best")
    m.tag_model_checkpoint()
    got = m.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert Path(got.model_path).name == "best" and read_tree(Path(got.model_path)) == files
    assert m.verify("v0.1") == [] and m.verify("v0.1", remote=True) == []
    (m.repo_path / "checkpoints" / "best" / SHARDS[0]).write_bytes(b"changed")
    m.upload_model_checkpoint()
    m.revert_model_checkpoint("v0.1")
    assert read_tree(m.repo_path / "checkpoints" / "best") == files


def test_uploading_from_elsewhere_under_the_current_name_replaces_the_workspace_copy(m, tmp_path):
    """The common loop: training writes runs/ckpt.pt, each epoch uploads it."""
    src = tmp_path / "runs" / "ckpt.pt"
    for seed in (1, 2):
        data = write_model(src, 2000, seed=seed)
        m.upload_model_checkpoint(model_path=src)
        assert (m.repo_path / "ckpt.pt").read_bytes() == data
    assert m.target == "ckpt.pt"
