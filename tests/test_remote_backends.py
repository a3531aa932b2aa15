"""The data and combined scenarios on the production backends: DVC on a real
S3 server (SeaweedFS) and git over a real sshd (the Bitbucket stand-in)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cpv_core import CombinedCheckpointsManage, DataCheckpointsManage, ModelsCheckpointsManage, VersionExistsError

from .helpers import git, s3_keys, tree_state, write_many_files, write_model

pytestmark = [pytest.mark.s3, pytest.mark.ssh]


@pytest.fixture
def remote(s3_config, bitbucket_config, sshd):
    """A fresh team/model whose repository exists on the sshd; storage on S3."""
    team, model = f"team-{uuid.uuid4().hex[:8]}", "whisper"
    bare = sshd.create_repo("ai-team", f"{team}-{model}")
    return team, model, bare


def test_data_reupload_transfers_only_the_change_over_s3(remote, seaweed, tmp_path):
    team, model, _ = remote
    d = DataCheckpointsManage(team, model)
    d.import_data_init()
    data = d.repo_path / "data"
    write_many_files(data, 2000)
    d.upload_data_checkpoint()
    assert d.tag_data_checkpoint() == "v0.1"
    prefix = f"{team}/{model}/"
    before = set(s3_keys(seaweed, prefix=prefix))
    assert len(before) == 2001
    (data / "test" / "f0002.txt").write_text("changed\n")
    d.upload_data_checkpoint()
    new = set(s3_keys(seaweed, prefix=prefix)) - before
    assert len(new) == 2 and sum(k.endswith(".dir") for k in new) == 1
    assert d.tag_data_checkpoint() == "v0.2"
    other = DataCheckpointsManage(team, model, repo_path=tmp_path / "member-b")
    other.import_data_init()
    part = other.download_data_checkpoint("v0.1", output_dir=tmp_path / "part", sub_path="test")
    assert (Path(part.data_path) / "f0002.txt").read_text() == "row 2\n" and part.file_count == 666


def test_combined_versions_revert_and_atomicity_over_ssh_and_s3(remote, tmp_path):
    team, model, bare = remote
    m = ModelsCheckpointsManage(team, model)
    src = tmp_path / "src"
    for split in ("train", "validation", "test"):
        (src / split).mkdir(parents=True)
        (src / split / "a.txt").write_text(split)
    m.import_model_init(data_path=src)
    model_v1 = write_model(m.repo_path / "model.bin", 40_000, seed=1)
    m.upload_model_checkpoint(metrics={"loss": 0.5})
    c = CombinedCheckpointsManage(team, model)
    assert c.tag_model_and_data() == ("v0.1", "v0.1")
    write_model(m.repo_path / "model.bin", 41_000, seed=2)
    m.upload_model_checkpoint(metrics={"loss": 0.4})
    (m.repo_path / "data" / "train" / "b.txt").write_text("more")
    DataCheckpointsManage(team, model).upload_data_checkpoint()
    assert c.tag_model_and_data() == ("v0.2", "v0.2")

    # another member takes data v1.0 first: the combined v1.0 fails and nothing moves
    other = DataCheckpointsManage(team, model, repo_path=tmp_path / "member-b")
    other.import_data_init()
    assert other.tag_data_checkpoint(version_tag="v1.0") == "v1.0"
    write_model(m.repo_path / "model.bin", 42_000, seed=3)
    m.upload_model_checkpoint()
    remote_before = tree_state(bare)
    with pytest.raises(VersionExistsError):
        c.tag_model_and_data(version_tag="v1.0")
    assert tree_state(bare) == remote_before
    assert "model/v1.0" not in git(m.repo_path, "tag", "-l")

    c.revert_model_and_data("v0.1")
    assert (m.repo_path / "model.bin").read_bytes() == model_v1
    assert sorted(p.name for p in (m.repo_path / "data" / "train").iterdir()) == ["a.txt"]
    assert c.get_combined_metadata("v0.2").lineage == {"model": "v0.2", "data": "v0.2"}
    assert c.models_trained_on("v0.1") == ["v0.1"]
    assert "checkpoint/v0.2" in git(bare, "tag", "-l")
