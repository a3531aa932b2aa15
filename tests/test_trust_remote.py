"""The trust boundary over the real servers: a teammate with push access to the
git host (sshd) and write access to the bucket (SeaweedFS) crafts what the
victim's cpv reads; nothing outside the workspace or output may change."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage, ValidationError
from cpv_core.errors import GitError
from cpv_plugins.bitbucket_ssh import BitbucketSettings

from .helpers import S3_BUCKET, s3_client, tree_state, write_model

pytestmark = [pytest.mark.s3, pytest.mark.ssh]


@pytest.fixture
def team(s3_config, bitbucket_config, sshd) -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def ssh_git(*args: str, cwd: Path | None = None) -> str:
    """Plain git as a teammate runs it, with the test key."""
    from cpv_core.config import CPVConfig

    env = {**os.environ, "GIT_SSH_COMMAND": BitbucketSettings(CPVConfig().get_config("bitbucket")).ssh_command()}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def canary_state(tmp_path: Path) -> dict[str, str]:
    home = Path(os.environ["HOME"])
    return {**tree_state(home / ".ssh"), **tree_state(tmp_path / "canary")}


@pytest.fixture
def canary(tmp_path) -> Path:
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "notes.txt").write_text("mine\n")
    return tmp_path


def test_names_that_share_a_repository_are_refused(team, sshd, tmp_path):
    sshd.create_repo("ai-team", f"{team}-x")
    a = ModelsCheckpointsManage(team.upper(), "x", repo_path=tmp_path / "a")
    a.import_model_init()
    with pytest.raises(ValidationError, match="differ only in upper/lower case"):
        ModelsCheckpointsManage(team, "x", repo_path=tmp_path / "b").import_model_init()
    assert not (tmp_path / "b").exists()
    sshd.create_repo("ai-team", f"{team}-ops-x")
    ModelsCheckpointsManage(f"{team}-ops", "x", repo_path=tmp_path / "c").import_model_init()
    with pytest.raises(ValidationError, match=f"holds {team}-ops/x, not {team}/ops-x"):
        ModelsCheckpointsManage(team, "ops-x", repo_path=tmp_path / "d").import_model_init()
    assert not (tmp_path / "d").exists()


def test_hostile_teammate_over_ssh_and_s3_changes_nothing_outside(team, sshd, seaweed, s3_config, canary, tmp_path):
    sshd.create_repo("ai-team", f"{team}-model")
    victim = ModelsCheckpointsManage(team, "model", repo_path=tmp_path / "victim")
    victim.import_model_init()
    write_model(victim.repo_path / "model.bin", 4096, seed=1)
    victim.upload_model_checkpoint(metrics={"loss": 0.4})
    assert victim.tag_model_checkpoint() == "v0.1"

    mallory = tmp_path / "mallory"
    url = victim.ws.hosting.remote_url()
    ssh_git("clone", "-q", url, str(mallory))
    ssh_git("config", "user.email", "m@example.com", cwd=mallory)
    ssh_git("config", "user.name", "Mallory", cwd=mallory)

    # a manifest whose entry escapes the output, its objects planted in the bucket
    client = s3_client(seaweed)
    payload = b"owned\n"
    md5 = hashlib.md5(payload).hexdigest()
    client.put_object(Bucket=S3_BUCKET, Key=f"{team}/model/files/md5/{md5[:2]}/{md5[2:]}", Body=payload)
    manifest = json.dumps([{"md5": md5, "relpath": "../../canary/planted.txt"}]).encode()
    dir_md5 = hashlib.md5(manifest).hexdigest()
    client.put_object(Bucket=S3_BUCKET, Key=f"{team}/model/files/md5/{dir_md5[:2]}/{dir_md5[2:]}.dir", Body=manifest)
    ssh_git("checkout", "-q", "--detach", cwd=mallory)
    (mallory / "data.dvc").write_text(f"outs:\n- md5: {dir_md5}.dir\n  size: 6\n  nfiles: 1\n  hash: md5\n  path: data\n")
    (mallory / "model.bin.dvc").write_text("outs:\n- md5: ../../../../canary/notes.txt\n  size: 5\n  hash: md5\n  path: model.bin\n")
    ssh_git("add", "-f", "data.dvc", "model.bin.dvc", cwd=mallory)
    ssh_git("commit", "-q", "-m", "crafted", cwd=mallory)
    ssh_git("tag", "-a", "data/v9.0", "-m", "x", cwd=mallory)
    ssh_git("tag", "-a", "model/v9.0", "-m", "x", cwd=mallory)
    ssh_git("push", "-q", "origin", "refs/tags/data/v9.0", "refs/tags/model/v9.0", cwd=mallory)
    # and a commit on main that adds a model file (it would replace the victim's on rebase)
    ssh_git("checkout", "-q", "main", cwd=mallory)
    (mallory / "model.bin").write_bytes(b"mallory's weights")
    ssh_git("add", "-f", "model.bin", cwd=mallory)
    ssh_git("commit", "-q", "-m", "better weights", cwd=mallory)
    ssh_git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=mallory)

    before = canary_state(tmp_path)
    out = tmp_path / "out" / "a" / "b"
    with pytest.raises(ValidationError, match="manifest entry"):
        DataCheckpointsManage(team, "model", repo_path=victim.repo_path).download_data_checkpoint("v9.0", output_dir=out)
    with pytest.raises(ValidationError, match="not a content hash"):
        victim.download_model_checkpoint("v9.0", output_dir=out)
    trained = write_model(victim.repo_path / "model.bin", 4096, seed=2)
    with pytest.raises(GitError, match="cpv accepts only pointer files"):
        victim.upload_model_checkpoint(metrics={"loss": 0.3})
    assert (victim.repo_path / "model.bin").read_bytes() == trained
    assert canary_state(tmp_path) == before
    assert not list(tmp_path.rglob("planted.txt"))
    # the victim's own version still downloads and verifies
    assert victim.verify("v0.1", remote=True) == []
    got = victim.download_model_checkpoint("v0.1", output_dir=tmp_path / "good")
    assert Path(got.model_path).stat().st_size == 4096
