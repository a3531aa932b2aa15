"""Safe retention: cpv gc keeps exactly what the policy says on a shared remote,
and cpv du shows where the bytes are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.errors import CheckpointNotFoundError, GitError, ValidationError, WorkspaceDirtyError
from cpv_core.retention import RetentionPolicy, collect_garbage, disk_usage

from .helpers import git, write_data_dir, write_model
from .test_history import cpv
from .test_whole import bare, store, store_object

TEAM, MODEL = "AI-Convo", "whisper"
T = ["-t", TEAM, "--model-name", MODEL]


def stored(cpv_home: Path) -> set[str]:
    return {p.relative_to(store(cpv_home)).as_posix() for p in store(cpv_home).rglob("*") if p.is_file()}


def five_versions() -> ModelsCheckpointsManage:
    """Five model versions of different content (loss 1/seed), v0.2 in prod."""
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    for seed in range(1, 6):
        write_model(m.repo_path / "model.bin", 3000, seed=seed)
        m.upload_model_checkpoint(metrics={"loss": 1.0 / seed})
        m.tag_model_checkpoint()
    m.promote("v0.2", "prod")
    return m


@pytest.fixture
def m(cpv_home) -> ModelsCheckpointsManage:
    """Five model versions of different content, v0.2 in prod."""
    return five_versions()


def managers(m: ModelsCheckpointsManage) -> list:
    return [m, m.sibling(DataCheckpointsManage)]


def test_gc_keeps_exactly_what_the_policy_says(m, cpv_home, tmp_path):
    digests = {v: m.get_model_metadata(v).digest for v in m.read_checkpoint_tag()}
    result = collect_garbage(
        managers(m), RetentionPolicy(keep_last=2, keep_stages=True, keep=("best:loss:max",), grace_hours=0), dry_run=False
    )
    assert result.kept["model"] == ["v0.1", "v0.2", "v0.4", "v0.5"] and result.pruned["model"] == ["v0.3"]
    assert result.freed == 3000 and len(result.deleted) == 1
    assert not store_object(cpv_home, digests["v0.3"]).exists()
    for version in ("v0.1", "v0.2", "v0.4", "v0.5"):
        assert m.verify(version, remote=True) == []
        assert m.download_model_checkpoint(version, output_dir=tmp_path / version).tag == version
    with pytest.raises(CheckpointNotFoundError, match="removed by cpv gc on"):
        m.download_model_checkpoint("v0.3", output_dir=tmp_path / "v0.3")
    with pytest.raises(CheckpointNotFoundError, match="removed by cpv gc"):
        m.revert_model_checkpoint("v0.3")
    listing = json.loads(cpv("model", "list", "--json", *T).stdout)["versions"]
    assert [v["version"] for v in listing if v["pruned"]] == ["v0.3"]
    assert "pruned" in cpv("model", "list", *T).stdout
    # the marker reached the remote: a teammate sees it too
    assert git(bare(cpv_home), "tag", "-l", "pruned/*").split() == ["pruned/model/v0.3"]


def test_a_dry_run_changes_nothing_and_says_what_it_would_do(m, cpv_home):
    before = (stored(cpv_home), git(bare(cpv_home), "for-each-ref"))
    out = cpv("gc", "--keep-last", "1", "--grace", "0", "--dry-run", *T).stdout
    assert "prune v0.1, v0.3, v0.4" in out and "[dry-run] would delete 3 object(s)" in out
    assert (stored(cpv_home), git(bare(cpv_home), "for-each-ref")) == before


def test_the_grace_period_spares_young_objects(m, cpv_home):
    before = stored(cpv_home)
    result = json.loads(cpv("gc", "--keep-last", "1", "--yes", "--json", *T).stdout)  # default grace: 24 h
    assert result["deleted_objects"] == 0 and result["spared_young_objects"] == 3 and result["pruned"]["model"] == []
    assert stored(cpv_home) == before


def two_data_versions(src: Path) -> DataCheckpointsManage:
    """Data v0.1 (six files, from ``src``) and v0.2, which shares five of them."""
    d = DataCheckpointsManage(TEAM, MODEL)
    write_data_dir(src)
    d.import_data_init(src)  # data v0.1
    (d.repo_path / "data" / "train" / "sample_0.txt").write_text("changed\n")
    d.upload_data_checkpoint()
    d.tag_data_checkpoint()
    return d


def test_shared_directory_files_stay_while_a_kept_version_uses_them(cpv_home, tmp_path):
    d = two_data_versions(tmp_path / "data")
    model = d.sibling(ModelsCheckpointsManage)
    result = collect_garbage([model, d], RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
    assert result.pruned["data"] == ["v0.1"] and len(result.deleted) == 2  # its manifest and the one file only it had
    assert d.verify("v0.2", remote=True) == []
    usage = disk_usage([model, d])
    assert usage["unreferenced_bytes"] == 0 and usage["versions"][0]["pruned"]


def test_gc_refuses_without_the_remote_or_behind_it_or_without_a_policy(m, cpv_home, tmp_path):
    with pytest.raises(ValidationError, match="needs to be told what to keep"):
        collect_garbage(managers(m), RetentionPolicy(), dry_run=True)
    bob = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    write_model(bob.repo_path / "model.bin", 3000, seed=99)
    bob.upload_model_checkpoint()
    with pytest.raises(WorkspaceDirtyError, match="has not seen"):
        collect_garbage(managers(m), RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
    bare(cpv_home).rename(tmp_path / "away")
    before = stored(cpv_home)
    with pytest.raises(GitError):
        collect_garbage(managers(m), RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
    assert stored(cpv_home) == before


def test_gc_in_the_middle_of_a_teammates_upload_loses_nothing(m, cpv_home, tmp_path):
    """Bob's upload has stored its bytes but not yet committed its pointer (the moment
    an upload is in flight): gc, run then, must leave his objects alone."""
    bob = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    write_model(bob.repo_path / "model.bin", 300_000, seed=7)
    bob.ws.storage.track(["model.bin"])
    bob.ws.storage.push(["model.bin"])  # stored, nothing committed yet
    in_flight = stored(cpv_home)
    result = collect_garbage(managers(m), RetentionPolicy(keep_last=1), dry_run=False)  # default grace
    assert result.pruned["model"] == [] and stored(cpv_home) == in_flight
    bob.upload_model_checkpoint()  # the upload completes
    assert bob.tag_model_checkpoint() == "v0.6" and bob.verify("v0.6", remote=True) == []


def test_du_shows_bytes_per_version_and_the_total(m, cpv_home):
    out = cpv("du", *T).stdout
    assert "VERSION" in out and "total on the remote: 14.6 KiB in 5 object(s)" in out
    usage = json.loads(cpv("du", "--json", *T).stdout)
    assert [r["size"] for r in usage["versions"]] == [3000] * 5 and usage["unreferenced_bytes"] == 0


def test_delete_versions_removes_pruned_versions_from_the_history(m, cpv_home):
    out = cpv("gc", "--keep-last", "2", "--keep-stages", "--grace", "0", "--delete-versions", "--yes", *T).stdout
    assert "model versions removed from the history: v0.1, v0.3" in out
    assert m.read_checkpoint_tag() == ["v0.2", "v0.4", "v0.5"]
    assert git(bare(cpv_home), "tag", "-l", "model/*").split() == ["model/v0.2", "model/v0.4", "model/v0.5"]


def test_gc_all_takes_every_model_of_the_team_with_a_workspace_here(m, cpv_home):
    other = ModelsCheckpointsManage(TEAM, "second")
    other.import_model_init()
    for seed in (1, 2):
        write_model(other.repo_path / "model.bin", 2000, seed=seed)
        other.upload_model_checkpoint()
        other.tag_model_checkpoint()
    result = json.loads(cpv("gc", "--all", "-t", TEAM, "--keep-last", "1", "--grace", "0", "--yes", "--json").stdout)
    assert result[f"{TEAM}/second"]["pruned"]["model"] == ["v0.1"]
    assert result[f"{TEAM}/{MODEL}"]["pruned"]["model"] == ["v0.1", "v0.3", "v0.4"]  # v0.2 holds prod
    assert cpv("gc", "--all", "-t", "Nobody", "--keep-last", "1", expect=8).output.count("no workspace of team Nobody") == 1


def test_gc_asks_before_deleting_on_a_terminal_and_needs_yes_without_one(m, cpv_home):
    import os
    import sys

    import pexpect

    before = stored(cpv_home)
    refused = cpv("gc", "--keep-last", "1", "--grace", "0", *T, expect=2).output
    assert "no terminal to ask on; nothing was deleted" in refused and "--dry-run" in refused and "--yes" in refused
    assert stored(cpv_home) == before
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    args = ["-m", "cpv_core.cli", "gc", "--keep-last", "1", "--grace", "0", *T]
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=60)
    child.expect_exact("[dry-run] would delete 3 object(s)")
    child.expect_exact("delete what is listed above from the store? [y/N]:")
    child.sendline("n")
    child.expect_exact("nothing was deleted")
    child.expect(pexpect.EOF)
    assert stored(cpv_home) == before
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=60)
    child.expect_exact("delete what is listed above from the store? [y/N]:")
    child.sendline("y")
    child.expect_exact("delete 3 object(s)")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and len(stored(cpv_home)) == len(before) - 3
