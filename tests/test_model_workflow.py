"""Every ModelsCheckpointsManage method end to end on the embedded local default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv_core import (
    CheckpointNotFoundError,
    ModelArtifacts,
    ModelsCheckpointsManage,
    RepositoryError,
    ValidationError,
    VersionExistsError,
    WorkspaceDirtyError,
)

from .helpers import git, tree_state, upload_model, write_model

TEAM, MODEL = "AI-Convo", "whisper"


@pytest.fixture
def mcm(cpv_home) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    return m


def remote_dirs(cpv_home: Path) -> tuple[Path, Path]:
    return cpv_home / "local" / "git" / TEAM / f"{MODEL}.git", cpv_home / "local" / "storage" / TEAM / MODEL


def upload(m: ModelsCheckpointsManage, seed: int, **metrics) -> bytes:
    return upload_model(m, seed, 3000 + seed, metrics=metrics or {"loss": 1.0 / (seed + 1)})


def test_init_creates_layout_and_remote(mcm, cpv_home):
    ws = mcm.repo_path
    assert ws == cpv_home / "workspaces" / TEAM / MODEL
    for name in ("README.md", "metrics.log", ".gitattributes", ".cpv/workspace.json", ".dvc/config"):
        assert (ws / name).exists(), name
    bare, storage = remote_dirs(cpv_home)
    assert (bare / "HEAD").exists() and storage.is_dir()
    assert git(bare, "log", "--oneline", "main").strip()
    # the machine-local remote path is not committed
    assert str(storage) not in (ws / ".dvc" / "config").read_text()
    assert git(ws, "status", "--porcelain") == ""
    # init is idempotent
    assert mcm.import_model_init() == ws


def test_upload_tag_list_download_cycle(mcm, cpv_home):
    first = upload(mcm, 1, loss=0.9)
    assert mcm.tag_model_checkpoint(message="baseline") == "v0.1"
    second = upload(mcm, 2, loss=0.5)
    assert mcm.tag_model_checkpoint() == "v0.2"
    upload(mcm, 3, loss=0.4)
    assert mcm.tag_model_checkpoint(version_tag="v2.0") == "v2.0"
    upload(mcm, 4, loss=0.3)
    assert mcm.tag_model_checkpoint() == "v2.1"
    upload(mcm, 5, loss=0.2)
    assert mcm.tag_model_checkpoint(major=True) == "v3.0"
    assert mcm.read_checkpoint_tag() == ["v0.1", "v0.2", "v2.0", "v2.1", "v3.0"]

    bare, storage = remote_dirs(cpv_home)
    assert "model/v0.1" in git(bare, "tag", "-l")
    assert any(p.is_file() for p in storage.rglob("*"))

    art = mcm.download_model_checkpoint("v0.1", output_dir=cpv_home / "out")
    assert isinstance(art, ModelArtifacts)
    assert Path(art.model_path).read_bytes() == first
    assert art.metrics == {"loss": 0.9} and art.tag == "v0.1"
    assert art.size_mb == round(len(first) / 2**20, 3)
    latest = mcm.download_model_checkpoint(output_dir=cpv_home / "latest")
    assert latest.tag == "v3.0"
    assert Path(mcm.download_model_checkpoint("v0.2").model_path).read_bytes() == second


def test_metadata_of_a_version(mcm):
    data = upload(mcm, 1, loss=0.7, acc=0.8)
    mcm.tag_model_checkpoint(message="first release")
    meta = mcm.get_model_metadata("v0.1")
    assert meta.version == "v0.1" and meta.message == "first release"
    assert meta.metrics == {"loss": 0.7, "acc": 0.8}
    assert meta.size == len(data)
    assert meta.hash.startswith("md5:") and len(meta.commit) == 40
    assert meta.author and meta.date
    assert meta["metrics"]["acc"] == 0.8  # seed-style dict access
    assert mcm.get_model_metadata().version == "v0.1"


def test_metadata_before_any_tag_describes_head(mcm):
    upload(mcm, 1, loss=0.3)
    meta = mcm.get_model_metadata()
    assert meta.version is None and meta.metrics == {"loss": 0.3}


def test_metrics_log_is_json_lines_one_record_per_upload(mcm):
    upload(mcm, 1, loss=0.9)
    upload(mcm, 2, loss=0.8)
    import json

    lines = (mcm.repo_path / "metrics.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["metrics"]["loss"] for r in records] == [0.9, 0.8]
    assert all(r["event"] == "upload" and r["kind"] == "model" and r["timestamp"] for r in records)


def test_upload_from_a_path_outside_the_workspace(mcm, tmp_path):
    src = tmp_path / "trained" / "weights.pt"
    data = write_model(src, 5000)
    result = mcm.upload_model_checkpoint(model_path=src, metrics={"loss": 0.1}, message="from training dir")
    assert result.changed and result.size == 5000
    # the model keeps its own name in the workspace; the source is left alone
    assert (mcm.repo_path / "weights.pt").read_bytes() == data and not (mcm.repo_path / "model.bin").exists()
    assert result.path == str(mcm.repo_path / "weights.pt")
    assert src.read_bytes() == data


def test_download_does_not_touch_the_working_tree(mcm, cpv_home):
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    upload(mcm, 2)
    mcm.tag_model_checkpoint()
    before = tree_state(mcm.repo_path)
    mcm.download_model_checkpoint("v0.1", output_dir=cpv_home / "dl")
    assert tree_state(mcm.repo_path) == before


def test_download_refuses_to_write_into_the_workspace_target(mcm):
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    with pytest.raises(ValidationError):
        mcm.download_model_checkpoint("v0.1", output_dir=mcm.repo_path)


def test_revert_restores_bytes_as_a_new_commit(mcm):
    first = upload(mcm, 1, loss=0.9)
    mcm.tag_model_checkpoint()
    upload(mcm, 2, loss=0.5)
    mcm.tag_model_checkpoint()
    commits_before = int(git(mcm.repo_path, "rev-list", "--count", "HEAD"))
    mcm.revert_model_checkpoint("v0.1")
    assert (mcm.repo_path / "model.bin").read_bytes() == first
    assert int(git(mcm.repo_path, "rev-list", "--count", "HEAD")) == commits_before + 1
    assert git(mcm.repo_path, "status", "--porcelain") == ""
    assert mcm.get_model_metadata("v0.1").metrics == {"loss": 0.9}
    assert "Revert model to v0.1" in git(mcm.repo_path, "log", "-1", "--format=%s")


def test_revert_of_a_dirty_tree_raises_and_changes_nothing(mcm):
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    upload(mcm, 2)
    write_model(mcm.repo_path / "model.bin", 999)  # unsaved training output
    before = tree_state(mcm.repo_path)
    with pytest.raises(WorkspaceDirtyError) as err:
        mcm.revert_model_checkpoint("v0.1")
    assert "model.bin" in err.value.message
    assert tree_state(mcm.repo_path) == before


def test_forced_revert_keeps_the_overwritten_content_recoverable(mcm):
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    unsaved = write_model(mcm.repo_path / "model.bin", 1234)
    mcm.revert_model_checkpoint("v0.1", force=True)
    import hashlib
    import json

    last = json.loads((mcm.repo_path / "metrics.log").read_text().splitlines()[-1])
    saved = last["saved_digest"].removeprefix("md5:")
    assert saved == hashlib.md5(unsaved).hexdigest()
    cached = list((mcm.repo_path / ".dvc" / "cache").rglob(saved[2:]))
    assert cached and cached[0].read_bytes() == unsaved


def test_dry_run_changes_nothing_anywhere(mcm, cpv_home):
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    write_model(mcm.repo_path / "model.bin", 7777)
    bare, storage = remote_dirs(cpv_home)
    before = tree_state(mcm.repo_path, bare, storage)
    dry = ModelsCheckpointsManage(TEAM, MODEL, dry_run=True, echo=lambda line: None)
    result = dry.upload_model_checkpoint(metrics={"loss": 0.01})
    assert result.dry_run and result.plan
    with pytest.raises(WorkspaceDirtyError):  # model.bin differs from the last upload
        dry.tag_model_checkpoint()
    assert tree_state(mcm.repo_path, bare, storage) == before


def test_dry_run_tag_and_revert_change_nothing(mcm, cpv_home):
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    upload(mcm, 2)
    bare, storage = remote_dirs(cpv_home)
    before = tree_state(mcm.repo_path, bare, storage)
    dry = ModelsCheckpointsManage(TEAM, MODEL, dry_run=True, echo=lambda line: None)
    assert dry.tag_model_checkpoint() == "v0.2"
    dry.revert_model_checkpoint("v0.1")
    dry.download_model_checkpoint("v0.1", output_dir=cpv_home / "never")
    assert not (cpv_home / "never").exists()
    assert tree_state(mcm.repo_path, bare, storage) == before


def test_dry_run_init_creates_nothing(cpv_home):
    dry = ModelsCheckpointsManage("T", "new-model", dry_run=True, echo=lambda line: None)
    dry.import_model_init()
    assert not (cpv_home / "workspaces" / "T").exists()
    assert not (cpv_home / "local" / "git" / "T").exists()


def test_missing_tag_raises_not_found(mcm):
    with pytest.raises(CheckpointNotFoundError):
        mcm.download_model_checkpoint()
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    with pytest.raises(CheckpointNotFoundError) as err:
        mcm.download_model_checkpoint("v9.9")
    assert "v0.1" in (err.value.fix or "")
    with pytest.raises(CheckpointNotFoundError):
        mcm.revert_model_checkpoint("v0.5")
    with pytest.raises(CheckpointNotFoundError):
        mcm.get_model_metadata("v0.3")


def test_invalid_and_duplicate_tags_create_nothing(mcm, cpv_home):
    upload(mcm, 1)
    mcm.tag_model_checkpoint(version_tag="v1.0")
    upload(mcm, 2)
    bare, _ = remote_dirs(cpv_home)
    tags_before = git(bare, "tag", "-l"), git(mcm.repo_path, "tag", "-l")
    for bad in ("1.0", "v1.0.1", "latest", "--force", "v01.0"):
        with pytest.raises(ValidationError):
            mcm.tag_model_checkpoint(version_tag=bad)
    with pytest.raises(VersionExistsError):
        mcm.tag_model_checkpoint(version_tag="v1.0")
    assert (git(bare, "tag", "-l"), git(mcm.repo_path, "tag", "-l")) == tags_before


def test_auto_tag_refuses_to_version_the_same_commit_twice(mcm):
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    with pytest.raises(VersionExistsError):
        mcm.tag_model_checkpoint()
    assert mcm.tag_model_checkpoint(version_tag="v1.0") == "v1.0"  # explicit promotion is allowed


def test_tag_refuses_unuploaded_changes(mcm):
    upload(mcm, 1)
    write_model(mcm.repo_path / "model.bin", 100)
    with pytest.raises(WorkspaceDirtyError):
        mcm.tag_model_checkpoint()


def test_tag_before_any_upload_is_a_clear_error(mcm):
    with pytest.raises(CheckpointNotFoundError) as err:
        mcm.tag_model_checkpoint()
    assert "upload" in (err.value.fix or "")


def test_operations_before_init_say_how_to_init(cpv_home):
    m = ModelsCheckpointsManage(TEAM, "never-initialised")
    with pytest.raises(RepositoryError) as err:
        m.read_checkpoint_tag()
    assert "import_model_init()" in (err.value.fix or "")  # a Python caller is told the method; the CLI, `cpv init model`


def test_bad_input_to_upload_changes_nothing(mcm, tmp_path):
    upload(mcm, 1)
    before = tree_state(mcm.repo_path)
    with pytest.raises(ValidationError):
        mcm.upload_model_checkpoint(model_path=tmp_path / "missing.bin")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ValidationError):
        mcm.upload_model_checkpoint(model_path=empty)
    with pytest.raises(ValidationError):
        mcm.upload_model_checkpoint(metrics={"loss": float("nan")})
    assert tree_state(mcm.repo_path) == before


def test_two_clones_see_each_others_versions(mcm, cpv_home, tmp_path):
    upload(mcm, 1)
    assert mcm.tag_model_checkpoint() == "v0.1"
    other = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "member-b")
    other.import_model_init()  # clones the existing model
    assert other.read_checkpoint_tag() == ["v0.1"]
    # member B uploads and tags; A sees it after a fetch
    data_b = write_model(other.repo_path / "model.bin", 4444, seed=9)
    other.upload_model_checkpoint(metrics={"loss": 0.05})
    assert other.tag_model_checkpoint() == "v0.2"
    assert mcm.read_checkpoint_tag() == ["v0.1", "v0.2"]
    got = mcm.download_model_checkpoint("v0.2", output_dir=tmp_path / "a-dl")
    assert Path(got.model_path).read_bytes() == data_b
    assert got.metrics == {"loss": 0.05}
    # A uploads on top of B's branch without a manual pull (rebase of cpv's own files)
    upload(mcm, 3)
    assert mcm.tag_model_checkpoint() == "v0.3"
    assert other.read_checkpoint_tag() == ["v0.1", "v0.2", "v0.3"]


def test_list_offline_falls_back_to_local_with_a_warning(mcm, cpv_home, caplog):
    upload(mcm, 1)
    mcm.tag_model_checkpoint()
    bare, _ = remote_dirs(cpv_home)
    bare.rename(bare.with_suffix(".moved"))
    with caplog.at_level("WARNING"):
        assert mcm.read_checkpoint_tag() == ["v0.1"]
    assert any("local versions" in r.getMessage() for r in caplog.records)


def test_download_never_overwrites_a_different_file_without_force(mcm, tmp_path):
    data = upload(mcm, 1)
    mcm.tag_model_checkpoint()
    out = tmp_path / "out"
    mcm.download_model_checkpoint("v0.1", output_dir=out)
    mcm.download_model_checkpoint("v0.1", output_dir=out)  # the same bytes again: fine
    other = bytes(b ^ 0xFF for b in data)  # same size, different content: the user's file
    (out / "model.bin").write_bytes(other)
    with pytest.raises(WorkspaceDirtyError):
        mcm.download_model_checkpoint("v0.1", output_dir=out)
    assert (out / "model.bin").read_bytes() == other
    mcm.download_model_checkpoint("v0.1", output_dir=out, force=True)
    assert (out / "model.bin").read_bytes() == data


@pytest.mark.parametrize(
    "summary, reason",
    [
        ("[rejected] (already exists)", "exists"),
        ("[remote rejected] (failed to update ref)", "race"),
        ("[remote rejected] (cannot lock ref 'refs/tags/model/v0.2': reference already exists)", "exists"),
        ("[remote rejected] (cannot lock ref 'refs/heads/main': is at 1234 but expected 5678)", "race"),
        ("[rejected] (non-fast-forward)", "non-fast-forward"),
        ("[rejected] (fetch first)", "non-fast-forward"),
        ("[remote rejected] (atomic transaction failed)", "race"),  # the other refs of an atomic push that lost a race
        ("[rejected] (atomic push failed)", "race"),
        ("[remote rejected] (pre-receive hook declined)", "[remote rejected] (pre-receive hook declined)"),
    ],
)
def test_push_rejections_are_classified_for_retry(summary, reason):
    """A server-side race on a ref (seen in CI with 4 concurrent taggers) is retried, not fatal."""
    from cpv_plugins.git_tags import classify_rejection, parse_push_porcelain

    assert classify_rejection(summary) == reason
    rows = parse_push_porcelain(f"To /srv/repo.git\n!\trefs/tags/model/v0.2:refs/tags/model/v0.2\t{summary}\nDone\n")
    assert rows == [("!", "refs/tags/model/v0.2", summary)]


def test_unknown_keyword_arguments_are_a_type_error_not_ignored(mcm):
    """A misspelt option (dryrun=True) must not be silently swallowed."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'dryrun'"):
        mcm.upload_model_checkpoint(dryrun=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'tagg'"):
        mcm.download_model_checkpoint(tagg="v0.1")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        ModelsCheckpointsManage(TEAM, MODEL, colour="red")
    mcm.import_model_init(verbose=False, repo_path=mcm.repo_path)  # what the seeds pass is accepted
    with pytest.raises(ValidationError, match="is not this manager's workspace"):
        mcm.import_model_init(repo_path="/somewhere/else")
