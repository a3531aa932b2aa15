"""Data checkpoints and combined model + data versions, end to end on the local default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv_core import (
    CheckpointNotFoundError,
    CombinedCheckpointsManage,
    DataArtifacts,
    DataCheckpointsManage,
    ModelsCheckpointsManage,
    VersionExistsError,
)
from cpv_core.backends import PushRejected

from .helpers import git, tree_state, write_data_dir, write_many_files, write_model

TEAM, MODEL = "AI-Convo", "whisper"


def storage_objects(cpv_home: Path) -> set[str]:
    root = cpv_home / "local" / "storage" / TEAM / MODEL
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def bare(cpv_home: Path) -> Path:
    return cpv_home / "local" / "git" / TEAM / f"{MODEL}.git"


def snapshot_dir(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def managers(cpv_home, tmp_path):
    src = tmp_path / "training_data"
    write_data_dir(src, 9)
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init(data_path=src)
    d = DataCheckpointsManage(TEAM, MODEL)
    c = CombinedCheckpointsManage(TEAM, MODEL)
    return m, d, c


def test_import_model_init_with_data_uploads_the_data(managers):
    m, d, _ = managers
    assert (m.repo_path / "data.dvc").exists()
    assert sorted(p.name for p in (m.repo_path / "data").iterdir()) == ["test", "train", "validation"]
    assert d.get_data_metadata().version is None and d.get_data_metadata().size > 0


def test_data_cycle_with_many_files_transfers_only_the_change(cpv_home, tmp_path):
    d = DataCheckpointsManage(TEAM, MODEL)
    d.import_data_init()
    data = d.repo_path / "data"
    write_many_files(data, 2000)
    d.upload_data_checkpoint(message="2000 files")
    assert d.tag_data_checkpoint() == "v0.1"
    before = storage_objects(cpv_home)
    assert len(before) == 2001  # 2000 files + the directory manifest
    (data / "train" / "f0000.txt").write_text("changed\n")
    d.upload_data_checkpoint(message="one file changed")
    new = storage_objects(cpv_home) - before
    assert len(new) == 2 and sum(n.endswith(".dir") for n in new) == 1
    assert d.tag_data_checkpoint() == "v0.2"
    art = d.download_data_checkpoint("v0.1", output_dir=tmp_path / "v1")
    assert isinstance(art, DataArtifacts) and art.file_count == 2000 and art.version == "v0.1"
    assert (Path(art.data_path) / "train" / "f0000.txt").read_text() == "row 0\n"
    part = d.download_data_checkpoint("v0.2", output_dir=tmp_path / "part", sub_path="test")
    files = list(Path(part.data_path).rglob("*.txt"))
    assert Path(part.data_path).name == "test" and len(files) == 666


def test_model_and_data_have_separate_sequences(managers):
    m, d, _ = managers
    for i in range(3):
        write_model(m.repo_path / "model.bin", 1000 + i)
        m.upload_model_checkpoint(metrics={"loss": 1 - i / 10})
        m.tag_model_checkpoint()
    assert d.tag_data_checkpoint() == "v0.1"
    assert m.read_checkpoint_tag() == ["v0.1", "v0.2", "v0.3"]
    assert d.read_checkpoint_tag() == ["v0.1"]
    tags = git(m.repo_path, "tag", "-l").split()
    assert "model/v0.3" in tags and "data/v0.1" in tags


def test_combined_tag_revert_and_lineage(managers, cpv_home):
    m, d, c = managers
    model_v1 = write_model(m.repo_path / "model.bin", 2000, seed=1)
    m.upload_model_checkpoint(metrics={"loss": 0.5})
    data_v1 = snapshot_dir(d.repo_path / "data")
    assert c.tag_model_and_data(model_message="model one", data_message="data one") == ("v0.1", "v0.1")
    # the sequences diverge: more model versions than data versions
    write_model(m.repo_path / "model.bin", 2100, seed=2)
    m.upload_model_checkpoint(metrics={"loss": 0.4})
    m.tag_model_checkpoint()
    write_model(m.repo_path / "model.bin", 2200, seed=3)
    m.upload_model_checkpoint(metrics={"loss": 0.3})
    (d.repo_path / "data" / "train" / "extra.txt").write_text("more data\n")
    d.upload_data_checkpoint()
    assert c.tag_model_and_data() == ("v0.3", "v0.2")
    meta = c.get_combined_metadata()
    assert meta.version == "v0.2" and meta.lineage == {"model": "v0.3", "data": "v0.2"}
    assert meta["model"]["metrics"] == {"loss": 0.3}
    assert m.get_model_metadata("v0.3").lineage["data"] == "v0.2"
    # model v0.2 was tagged alone while data v0.1 was committed: it records that too
    assert c.models_trained_on("v0.2") == ["v0.3"] and d.models_trained_on("v0.1") == ["v0.1", "v0.2"]
    remote_tags = git(bare(cpv_home), "tag", "-l").split()
    assert {"model/v0.3", "data/v0.2", "checkpoint/v0.2"} <= set(remote_tags)

    c.revert_model_and_data("v0.1")
    assert (m.repo_path / "model.bin").read_bytes() == model_v1
    assert snapshot_dir(d.repo_path / "data") == data_v1
    assert git(m.repo_path, "status", "--porcelain") == ""
    assert "checkpoint v0.1" in git(m.repo_path, "log", "-1", "--format=%s")


def test_model_tag_alone_records_the_data_version_it_was_trained_on(managers):
    m, d, _ = managers
    assert d.tag_data_checkpoint() == "v0.1"
    write_model(m.repo_path / "model.bin", 1500)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    assert m.get_model_metadata().lineage == {"data": "v0.1"}
    assert d.models_trained_on("v0.1") == ["v0.1"]


def test_combined_tag_conflict_moves_nothing_anywhere(managers, cpv_home, tmp_path):
    m, d, c = managers
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    # another member takes data v1.0 on the remote first
    other = DataCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "other")
    other.import_data_init()
    assert other.tag_data_checkpoint(version_tag="v1.0") == "v1.0"
    remote_before = tree_state(bare(cpv_home))
    with pytest.raises(VersionExistsError) as err:
        c.tag_model_and_data(version_tag="v1.0")
    assert "data v1.0" in err.value.message
    assert tree_state(bare(cpv_home)) == remote_before
    local_tags = git(m.repo_path, "tag", "-l").split()
    assert "model/v1.0" not in local_tags and "checkpoint/v1.0" not in local_tags


def test_atomic_push_lands_all_refs_or_none(managers, cpv_home, tmp_path):
    """The versioning backend's publish is one atomic push: a rejected tag leaves
    the branch and the other tags untouched on the remote."""
    m, d, c = managers
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    other = DataCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "other")
    other.import_data_init()
    other.tag_data_checkpoint(version_tag="v2.0")  # on the remote, unknown to m (no fetch)
    write_model(m.repo_path / "model.bin", 1200)
    m.upload_model_checkpoint()  # pushes the branch: the remote branch is at m's HEAD
    from cpv_core.versions import Version

    vb = m.ws.versioning
    records = [vb.create_version("model", Version(2, 0), "", {}), vb.create_version("data", Version(2, 0), "", {})]
    remote_before = tree_state(bare(cpv_home))
    with pytest.raises(PushRejected) as err:
        vb.publish(records, with_branch=True)
    assert err.value.reason == "exists" and "refs/tags/data/v2.0" in err.value.rejected
    assert tree_state(bare(cpv_home)) == remote_before
    assert "model/v2.0" not in git(bare(cpv_home), "tag", "-l")


def test_combined_tag_retries_when_a_version_is_taken_meanwhile(managers, cpv_home, tmp_path, monkeypatch):
    m, d, c = managers
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    other = DataCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "other")
    other.import_data_init()
    # the race: the other member publishes data v0.1 right after our fetch
    real_fetch = type(c.ws.versioning).fetch
    calls = {"n": 0}

    def racing_fetch(self):
        real_fetch(self)
        calls["n"] += 1
        if calls["n"] == 1:
            other.tag_data_checkpoint(version_tag="v0.1")

    monkeypatch.setattr(type(c.ws.versioning), "fetch", racing_fetch)
    assert c.tag_model_and_data() == ("v0.1", "v0.2")
    tags = set(git(bare(cpv_home), "tag", "-l").split())
    assert {"model/v0.1", "data/v0.1", "data/v0.2", "checkpoint/v0.1"} <= tags
    assert not any(t.startswith("model/v0.2") for t in tags)


def test_missing_combined_version(managers):
    _, _, c = managers
    with pytest.raises(CheckpointNotFoundError):
        c.get_combined_metadata()
    with pytest.raises(CheckpointNotFoundError):
        c.revert_model_and_data("v0.1")
