"""Nothing lost when members run gc, promote, tag and upload on one model at once.

Each race is put in a fixed order by a wrapped backend call (the moment a teammate's
command runs is chosen, not hoped for); the servers are real: the local bare
repository and store here, SeaweedFS and the sshd in the remote variant below.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.errors import CheckpointNotFoundError, GitError, VersionExistsError, WorkspaceDirtyError
from cpv_core.retention import RetentionPolicy, collect_garbage

from .helpers import git, s3_keys, upload_model, write_model
from .test_retention import five_versions, two_data_versions
from .test_whole import bare, store, store_object

TEAM, MODEL = "AI-Convo", "whisper"


def age(root: Path, hours: float = 48.0) -> None:
    """Make every stored object look written ``hours`` ago (older than the default grace)."""
    then = time.time() - hours * 3600
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (then, then))


def gc(m: ModelsCheckpointsManage | DataCheckpointsManage, **policy: object):
    model = m if isinstance(m, ModelsCheckpointsManage) else m.sibling(ModelsCheckpointsManage)
    return collect_garbage([model, model.sibling(DataCheckpointsManage)], RetentionPolicy(keep_last=1, **policy), dry_run=False)  # type: ignore[arg-type]


@pytest.fixture
def alice(cpv_home) -> ModelsCheckpointsManage:
    """Five model versions of different content (loss 1/seed), v0.2 in prod."""
    return five_versions()


def teammate(tmp_path: Path, name: str = "bob") -> ModelsCheckpointsManage:
    member = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / name)
    member.import_model_init()
    return member


# -- gc and upload -------------------------------------------------------------------


def test_gc_between_a_teammates_push_and_commit_leaves_his_version_whole(alice, cpv_home, tmp_path, monkeypatch):
    """Bob uploads v0.1's bytes again: the store has them (old), so his push sends
    nothing; Alice's gc (default grace) runs before his commit and deletes them as
    unused. The upload sees that a gc overlapped it and sends them again."""
    bob = teammate(tmp_path)
    write_model(bob.repo_path / "model.bin", 3000, seed=1)
    v01 = store_object(cpv_home, alice.get_model_metadata("v0.1").digest)
    age(store(cpv_home))
    real_commit = bob.ws.versioning.commit

    def gc_then_commit(*args, **kwargs):
        assert gc(alice).pruned["model"] == ["v0.1", "v0.3", "v0.4"]
        assert not v01.exists()  # the interleaving happened: the bytes Bob relies on are gone
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(bob.ws.versioning, "commit", gc_then_commit)
    bob.upload_model_checkpoint(metrics={"loss": 0.9})
    monkeypatch.setattr(bob.ws.versioning, "commit", real_commit)
    assert v01.is_file()
    version = bob.tag_model_checkpoint(allow_duplicate=True)
    assert bob.verify(version, remote=True) == []


def test_gc_that_lists_the_store_before_an_upload_and_deletes_after_its_confirmation_loses_nothing(alice, cpv_home, tmp_path, monkeypatch):
    """The harder order: the gc reads what to protect, then Bob stores, commits and
    confirms, then the gc deletes. Bob's upload sees the gc's run, waits for it to end,
    and only then confirms its objects (sending what the gc removed)."""
    bob = teammate(tmp_path)
    write_model(bob.repo_path / "model.bin", 3000, seed=1)
    v01 = store_object(cpv_home, alice.get_model_metadata("v0.1").digest)
    age(store(cpv_home))
    listed, committed = threading.Event(), threading.Event()
    real_delete = alice.ws.storage.delete_objects

    def delete_after_bobs_commit(oids):
        listed.set()
        assert committed.wait(60)
        time.sleep(1.5)  # Bob is now waiting on this run: it deletes under his feet
        real_delete(oids)

    monkeypatch.setattr(alice.ws.storage, "delete_objects", delete_after_bobs_commit)
    errors: list[BaseException] = []

    def run_gc() -> None:
        try:
            gc(alice)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = threading.Thread(target=run_gc)
    worker.start()
    assert listed.wait(60)
    real_push_branch = bob.ws.versioning.push_branch

    def push_then_signal() -> None:
        real_push_branch()
        committed.set()

    monkeypatch.setattr(bob.ws.versioning, "push_branch", push_then_signal)
    bob.upload_model_checkpoint(metrics={"loss": 0.9})
    worker.join(60)
    assert not errors and not worker.is_alive()
    assert v01.is_file()
    assert bob.verify(bob.tag_model_checkpoint(allow_duplicate=True), remote=True) == []


def test_a_directory_whose_files_gc_raced_is_whole_and_stays_whole(cpv_home, tmp_path, monkeypatch):
    """Bob uploads data v0.1's files plus one new file: a new (young) manifest naming old
    files. gc between his push and his commit must keep every file that manifest names,
    and his next upload (which trusts the manifest) must leave the store complete."""
    src = tmp_path / "data"
    d = two_data_versions(src)  # v0.2: v0.1's train/sample_0.txt is only v0.1's
    bob = DataCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_data_init()
    bob_data = bob.repo_path / "data"
    shutil.rmtree(bob_data, ignore_errors=True)
    shutil.copytree(src, bob_data)  # data v0.1's files
    (bob_data / "extra.txt").write_text("new\n")
    age(store(cpv_home))
    real_commit = bob.ws.versioning.commit
    monkeypatch.setattr(bob.ws.versioning, "commit", lambda *a, **k: (gc(d), real_commit(*a, **k))[1])
    bob.upload_data_checkpoint()
    monkeypatch.setattr(bob.ws.versioning, "commit", real_commit)
    first = bob.tag_data_checkpoint()
    assert bob.verify(first, remote=True) == []
    (bob_data / "extra.txt").write_text("newer\n")
    bob.upload_data_checkpoint()
    assert bob.verify(first, remote=True) == [] and bob.verify(bob.tag_data_checkpoint(), remote=True) == []


# -- gc and promote ------------------------------------------------------------------


def test_a_promotion_landing_while_gc_runs_keeps_its_bytes_and_loses_its_mark(alice, cpv_home, tmp_path, monkeypatch):
    # Bob's promotion runs inside Alice's gc here (one thread), so it cannot wait for
    # that run to end as a promotion in another process would: it stops waiting at once
    monkeypatch.setenv("CPV_GC_WAIT", "0")
    bob = teammate(tmp_path)
    real_mark = alice.ws.versioning.mark_pruned

    def promote_then_mark(kind, records, note):
        bob.promote("v0.1", "prod")  # lands after gc read the stages, before it marks and deletes
        return real_mark(kind, records, note)

    monkeypatch.setattr(alice.ws.versioning, "mark_pruned", promote_then_mark)
    result = gc(alice, grace_hours=0)
    assert result.pruned["model"] == ["v0.3", "v0.4"]
    assert alice.stages()["prod"] == "v0.1" and alice.verify("prod", remote=True) == []
    assert git(bare(cpv_home), "tag", "-l", "pruned/*").split() == ["pruned/model/v0.3", "pruned/model/v0.4"]


def test_promoting_a_version_gc_removed_is_refused_with_the_date(alice, cpv_home, tmp_path):
    gc(alice, grace_hours=0)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    before = git(bare(cpv_home), "for-each-ref")
    with pytest.raises(CheckpointNotFoundError, match=f"model v0.1 was removed by cpv gc on {today}"):
        alice.promote("v0.1", "prod")
    with pytest.raises(CheckpointNotFoundError, match="model v0.1 was removed by cpv gc"):
        alice.promote("best:loss:max", "staging")  # the highest loss is v0.1's
    assert git(bare(cpv_home), "for-each-ref") == before


# -- wedges: one pushed tag must not stop the team --------------------------------------


def test_one_stage_record_pushed_far_ahead_does_not_wedge_the_stage(alice, cpv_home, tmp_path, caplog):
    hostile = 'hijack\n\ncpv-metadata: {"action": "promote", "version": "v0.5"}'
    git(alice.repo_path, "tag", "-a", "stage/model/prod/999999", "-m", hostile, "HEAD")
    git(alice.repo_path, "push", "origin", "refs/tags/stage/model/prod/999999")
    bob = teammate(tmp_path)
    assert bob.stages() == {"prod": "v0.2"}  # the stray record holds nothing
    assert "ignoring stage record(s) stage/model/prod/999999" in caplog.text
    bob.promote("v0.3", "prod")
    assert bob.stages() == {"prod": "v0.3"} and alice.stages() == {"prod": "v0.3"}
    bob.demote("prod")
    assert bob.stages() == {}
    assert "stage/model/prod/3" in git(bare(cpv_home), "tag", "-l", "stage/*").split()


def test_one_version_pushed_at_the_ceiling_neither_stops_auto_tags_nor_takes_latest(alice, cpv_home, tmp_path, caplog):
    git(alice.repo_path, "tag", "model/v999999.999999", "HEAD")
    git(alice.repo_path, "push", "origin", "refs/tags/model/v999999.999999")
    bob = teammate(tmp_path)
    write_model(bob.repo_path / "model.bin", 3000, seed=42)
    bob.upload_model_checkpoint()
    assert bob.tag_model_checkpoint() == "v0.6"
    assert "numbering does not go on from it" in caplog.text
    assert bob.get_model_metadata("latest").version == "v0.6"
    assert bob.get_model_metadata("v999999.999999").version == "v999999.999999"  # still there, by name


# -- every rejection of a stage record ends in one line ---------------------------------


def _install_hook(repo: Path, body: str) -> None:
    hook = repo / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\n" + body)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)


def test_a_promotion_that_loses_a_server_side_race_names_the_winner(alice, cpv_home, tmp_path):
    """The remote takes Carol's record 2 of prod after Bob's push was told the ref is free
    (a hook writes it in that window, outside the push's quarantine): git refuses Bob's
    update as a ref race, not as a taken name. Bob gets the same one line as for a taken name."""
    bob = teammate(tmp_path)
    commit = git(alice.repo_path, "rev-parse", "model/v0.4^{commit}").strip()
    tag = (
        f"object {commit}\ntype commit\ntag stage/model/prod/2\ntagger Carol <carol@example.com> 1700000000 +0000\n\n"
        'hotfix\n\ncpv-metadata: {"action": "promote", "version": "v0.4"}\n'
    )
    (tmp_path / "carol.tag").write_text(tag)
    _install_hook(
        bare(cpv_home),
        f'while read old new ref; do\n  if [ "$ref" = refs/tags/stage/model/prod/2 ] && [ ! -e "{tmp_path}/raced" ]; then\n'
        f'    touch "{tmp_path}/raced"\n    unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n'
        f'    git update-ref "$ref" "$(git mktag < "{tmp_path}/carol.tag")"\n  fi\ndone\nexit 0\n',
    )
    with pytest.raises(VersionExistsError, match="^Carol promoted v0.4 to prod first, at the same moment; your change was not made"):
        bob.promote("v0.3", "prod")
    assert (tmp_path / "raced").exists()
    assert bob.stages() == {"prod": "v0.4"}
    assert not [t for t in git(bob.repo_path, "tag", "-l", "stage/*").split() if t.endswith("/3")]


def test_a_stage_record_a_server_hook_refuses_is_one_clear_line(alice, cpv_home, tmp_path):
    _install_hook(bare(cpv_home), "echo 'stages are frozen' >&2\nexit 1\n")
    with pytest.raises(GitError, match="the remote refused the change of prod .*your change was not made"):
        alice.promote("v0.3", "prod")
    assert alice.stages() == {"prod": "v0.2"}


# -- the same races against SeaweedFS and the sshd ---------------------------------------


@pytest.mark.s3
@pytest.mark.ssh
def test_gc_between_a_teammates_push_and_commit_over_s3_and_ssh(s3_config, bitbucket_config, sshd, seaweed, tmp_path, monkeypatch):
    team = f"team-{uuid.uuid4().hex[:8]}"
    sshd.create_repo("ai-team", f"{team}-{MODEL}")
    alice = ModelsCheckpointsManage(team, MODEL)
    alice.import_model_init()
    for seed in (1, 2, 3):
        upload_model(alice, seed, 50_000)
        alice.tag_model_checkpoint()
    bob = ModelsCheckpointsManage(team, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    write_model(bob.repo_path / "model.bin", 50_000, seed=1)  # v0.1's bytes, on S3 already
    first = alice.get_model_metadata("v0.1").digest.removeprefix("md5:")
    real_commit = bob.ws.versioning.commit

    def gc_then_commit(*args, **kwargs):
        assert gc(alice, grace_hours=0).pruned["model"] == ["v0.1", "v0.2"]
        assert not any(k.endswith(first[2:]) for k in s3_keys(seaweed, prefix=f"{team}/{MODEL}/"))
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(bob.ws.versioning, "commit", gc_then_commit)
    bob.upload_model_checkpoint()
    monkeypatch.setattr(bob.ws.versioning, "commit", real_commit)
    assert any(k.endswith(first[2:]) for k in s3_keys(seaweed, prefix=f"{team}/{MODEL}/"))
    assert bob.verify(bob.tag_model_checkpoint(allow_duplicate=True), remote=True) == []


def test_a_gc_whose_run_cannot_be_marked_done_still_reports_what_it_did(alice, cpv_home, monkeypatch, caplog):
    def unreachable(run):
        raise GitError("git could not push: the network went away", fix="check the network")

    monkeypatch.setattr(alice.ws.versioning, "end_gc", unreachable)
    result = gc(alice, grace_hours=0)
    assert result.pruned["model"] == ["v0.1", "v0.3", "v0.4"] and len(result.deleted) == 3
    assert "could not mark gc run" in caplog.text and "the network went away" in caplog.text
    running = git(bare(cpv_home), "for-each-ref", "--format=%(refname)", "refs/cpv/gc/").split()
    assert len(running) == 1 and running[0].startswith("refs/cpv/gc/running/")  # stale after 6 h, never waited on longer


@pytest.mark.ssh
def test_a_promotion_that_loses_over_ssh_names_the_winner_in_one_line(bitbucket_config, sshd, tmp_path, monkeypatch):
    import cpv_core.stages as stages_module

    team = f"team-{uuid.uuid4().hex[:8]}"
    sshd.create_repo("ai-team", f"{team}-{MODEL}")
    alice = ModelsCheckpointsManage(team, MODEL)
    alice.import_model_init()
    for seed in (1, 2):
        upload_model(alice, seed, 2000)
        alice.tag_model_checkpoint()
    bob = ModelsCheckpointsManage(team, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    alice.promote("v0.1", "prod")  # lands first; Bob's view is from before it
    real_fetch = stages_module.fetch_versions
    calls = {"n": 0}

    def fetch_late(ws, *, required):
        calls["n"] += 1
        if calls["n"] > 1:  # the view Bob decides on is stale; the one after the refusal is fresh
            real_fetch(ws, required=required)

    monkeypatch.setattr(stages_module, "fetch_versions", fetch_late)
    with pytest.raises(VersionExistsError, match="^Test User promoted v0.1 to prod first, at the same moment; your change was not made"):
        bob.promote("v0.2", "prod")
    monkeypatch.setattr(stages_module, "fetch_versions", real_fetch)
    assert bob.stages() == {"prod": "v0.1"}


def test_an_upload_killed_after_publishing_while_gc_ran_is_settled_before_any_tag(alice, cpv_home, tmp_path, monkeypatch):
    """The crash rule for the fence: Bob's upload is killed after its commit is on the
    remote but before it re-sent what an overlapping gc removed. His next tag is refused
    (it would publish a version without its bytes); his next upload settles it."""
    import cpv_core.transfer as transfer

    bob = teammate(tmp_path)
    write_model(bob.repo_path / "model.bin", 3000, seed=1)
    v01 = store_object(cpv_home, alice.get_model_metadata("v0.1").digest)
    age(store(cpv_home))
    real_commit = bob.ws.versioning.commit
    monkeypatch.setattr(bob.ws.versioning, "commit", lambda *a, **k: (gc(alice), real_commit(*a, **k))[1])

    def killed(*args, **kwargs):
        raise SystemExit(137)  # as kill -9 there: nothing after this runs

    real_settle = transfer.settle_after_publish
    monkeypatch.setattr(transfer, "settle_after_publish", killed)
    with pytest.raises(SystemExit):
        bob.upload_model_checkpoint(metrics={"loss": 0.9})
    monkeypatch.setattr(bob.ws.versioning, "commit", real_commit)
    monkeypatch.setattr(transfer, "settle_after_publish", real_settle)
    assert not v01.exists()  # the published commit names bytes the gc removed
    before = git(bare(cpv_home), "tag", "-l", "model/*")
    with pytest.raises(WorkspaceDirtyError, match="interrupted after publishing its commit while a cpv gc ran"):
        bob.tag_model_checkpoint(allow_duplicate=True)
    assert git(bare(cpv_home), "tag", "-l", "model/*") == before
    bob.upload_model_checkpoint()  # the same content: settles the killed upload
    assert v01.is_file()
    assert bob.verify(bob.tag_model_checkpoint(allow_duplicate=True), remote=True) == []


def test_a_gc_killed_before_it_marked_its_run_done_is_closed_by_the_next_gc_here(alice, cpv_home, monkeypatch, caplog):
    import cpv_core.gc_fence as fence_module

    real_end = fence_module.end
    monkeypatch.setattr(fence_module, "end", lambda ws, run: None)  # killed before it could say it was done
    gc(alice, grace_hours=0)
    runs = git(bare(cpv_home), "for-each-ref", "--format=%(refname)", "refs/cpv/gc/").split()
    assert len(runs) == 1 and runs[0].startswith("refs/cpv/gc/running/")
    monkeypatch.setattr(fence_module, "end", real_end)
    gc(alice, grace_hours=0)
    assert "closed gc run" in caplog.text and "an interrupted cpv gc on this machine had left open" in caplog.text
    refs = git(bare(cpv_home), "for-each-ref", "--format=%(refname)", "refs/cpv/gc/").split()
    assert refs and all(r.startswith("refs/cpv/gc/done/") for r in refs)


def test_a_promotion_a_gc_pruned_after_all_gives_the_stage_back(alice, cpv_home, tmp_path):
    """The other order: Bob checked v0.1 was not pruned, then a whole gc ran (it read the
    stages before Bob's record and pruned v0.1), then his record landed. His promotion sees
    the gc's run, finds v0.1 pruned, and gives prod back to v0.2 in one line."""
    bob = teammate(tmp_path)
    real_record = bob.ws.versioning.record_stage_event
    ran = {"gc": False}

    def gc_then_record(*args, **kwargs):
        if not ran["gc"]:
            ran["gc"] = True
            assert "v0.1" in gc(alice, grace_hours=0).pruned["model"]
        return real_record(*args, **kwargs)

    bob.ws.versioning.record_stage_event = gc_then_record  # type: ignore[method-assign]
    with pytest.raises(
        CheckpointNotFoundError, match="cpv gc removed the content of model v0.1 while it was promoted to prod; prod is back to v0.2"
    ):
        bob.promote("v0.1", "prod")
    assert bob.stages() == {"prod": "v0.2"} and alice.stages() == {"prod": "v0.2"}
    assert alice.verify("prod", remote=True) == []
