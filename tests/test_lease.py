"""One round trip per tag: a version is published under a lease on the remote's
``refs/cpv/lease/KIND``, so a tag needs no fetch first; a stale view is refused
by the server, then fetched and retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv_core import ModelsCheckpointsManage
from cpv_core.errors import VersionExistsError
from cpv_core.faults import KILLED_EXIT

from .helpers import git, write_model

TEAM, MODEL = "AI-Convo", "whisper"


def bare(cpv_home: Path) -> Path:
    return cpv_home / "local" / "git" / TEAM / f"{MODEL}.git"


def count_connections(ws: Path, log: Path) -> None:
    """Make every fetch and push of ``ws`` append a line to ``log``."""
    for service in ("upload-pack", "receive-pack"):
        wrapper = log.parent / f"logging-{service}"
        wrapper.write_text(f'#!/bin/sh\necho {service} >> "{log}"\nexec git-{service} "$@"\n')
        wrapper.chmod(0o755)
        git(ws, "config", f"remote.origin.{service.replace('-', '')}", str(wrapper))


def connections(log: Path) -> list[str]:
    lines = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


@pytest.fixture
def alice(cpv_home) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 2000, seed=1)
    m.upload_model_checkpoint()
    return m


def test_a_tag_is_one_push_and_nothing_else(alice, tmp_path):
    log = tmp_path / "connections.log"
    count_connections(alice.repo_path, log)
    assert alice.tag_model_checkpoint() == "v0.1"  # a fresh workspace: no lease seen yet, a tag needs no fetch
    assert connections(log) == ["receive-pack"]
    write_model(alice.repo_path / "model.bin", 2000, seed=2)
    alice.upload_model_checkpoint()
    connections(log)
    assert alice.tag_model_checkpoint() == "v0.2"
    assert connections(log) == ["receive-pack"]
    lease = git(bare(alice.ws.config.config_dir), "for-each-ref", "--format=%(refname) %(objectname)", "refs/cpv/")
    assert lease.split() == ["refs/cpv/lease/model", git(alice.repo_path, "rev-parse", "refs/tags/model/v0.2").strip()]


def test_a_stale_view_is_refused_by_the_server_then_fetched_and_retried(alice, tmp_path):
    bob = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    assert alice.tag_model_checkpoint() == "v0.1"
    write_model(bob.repo_path / "model.bin", 2000, seed=5)
    bob.upload_model_checkpoint()
    log = tmp_path / "connections.log"
    count_connections(bob.repo_path, log)
    assert bob.tag_model_checkpoint() == "v0.2"  # his view said v0.1 was free
    assert connections(log) == ["receive-pack", "upload-pack", "receive-pack"]
    assert git(bob.repo_path, "tag", "-l").split() == ["model/v0.1", "model/v0.2"]


def test_after_a_stale_view_the_duplicate_check_sees_the_fresh_one(alice, tmp_path):
    bob = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    bob.pull()  # bob has alice's upload, not yet her version of it
    assert alice.tag_model_checkpoint() == "v0.1"
    with pytest.raises(VersionExistsError, match="already version v0.1"):
        bob.tag_model_checkpoint(message="bob's")  # (an identical tag object would simply be hers)
    assert git(bob.repo_path, "tag", "-l").split() == ["model/v0.1"]


def test_a_host_that_refuses_cpv_refs_gets_plain_tags(alice, cpv_home, tmp_path):
    hook = bare(cpv_home) / "hooks" / "pre-receive"
    hook.write_text('#!/bin/sh\nwhile read old new ref; do case "$ref" in refs/cpv/*) echo "no custom refs"; exit 1;; esac; done\n')
    hook.chmod(0o755)
    assert alice.tag_model_checkpoint() == "v0.1"
    assert git(bare(cpv_home), "tag", "-l").split() == ["model/v0.1"]
    assert not git(bare(cpv_home), "for-each-ref", "refs/cpv/").strip()
    log = tmp_path / "connections.log"
    count_connections(alice.repo_path, log)
    write_model(alice.repo_path / "model.bin", 2000, seed=3)
    alice.upload_model_checkpoint()
    connections(log)
    assert alice.tag_model_checkpoint() == "v0.2"  # from then on: fetch, then push
    assert connections(log) == ["upload-pack", "receive-pack"]


def test_a_version_created_but_never_published_makes_the_next_tag_fetch_first(alice, tmp_path):
    from .test_whole import cpv

    assert cpv("model", "tag", cwd=alice.repo_path, kill_at="tag.created").returncode == KILLED_EXIT
    assert git(alice.repo_path, "tag", "-l").split() == ["model/v0.1"]  # local only
    log = tmp_path / "connections.log"
    count_connections(alice.repo_path, log)
    assert alice.tag_model_checkpoint() == "v0.1"  # reconciled by a fetch, then published
    assert connections(log) == ["upload-pack", "receive-pack"]


def test_backoff_waits_grow_with_full_jitter_and_stop_at_the_budget(monkeypatch):
    from cpv_core import backoff as backoff_module
    from cpv_core.backoff import Backoff

    policy = Backoff(attempts=12, base=0.05, cap=1.0, budget=10.0)
    for retry in range(1, 12):
        ceiling = min(1.0, 0.05 * 2**retry)
        assert all(0.0 <= policy.delay(retry) <= ceiling for _ in range(50))
    assert max(policy.delay(10) for _ in range(200)) > 0.5  # the ceiling grows; linear waits would stay near 0.05 * n
    clock = {"now": 0.0}
    monkeypatch.setattr(backoff_module.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(backoff_module.time, "sleep", lambda s: clock.__setitem__("now", clock["now"] + 3.0))
    assert list(policy.rounds()) == [0, 1, 2, 3, 4]  # each wait "takes" 3 s: no round starts after 10 s
    assert list(Backoff(attempts=3, budget=1e9).rounds()) == [0, 1, 2]


def test_a_branch_push_that_always_loses_the_race_gives_up_and_leaves_the_workspace_as_it_was(alice, cpv_home, monkeypatch):
    """A server on which someone moves main during every push: the upload retries,
    then stops with one clear line; its commit is undone and the model file stays."""
    from cpv_core.backoff import Backoff
    from cpv_core.errors import GitError
    from cpv_plugins import git_tags

    hook = bare(cpv_home) / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        "unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n"
        'while read old new ref; do [ "$ref" = refs/heads/main ] || continue\n'
        '  c=$(git commit-tree "$old^{tree}" -p "$old" -m "a teammate") && git update-ref refs/heads/main "$c" "$old"\n'
        "done\n"
    )
    hook.chmod(0o755)
    monkeypatch.setattr(git_tags, "BRANCH_PUSH_BACKOFF", Backoff(attempts=3, base=0.01))
    head = git(alice.repo_path, "rev-parse", "HEAD").strip()
    data = write_model(alice.repo_path / "model.bin", 3000, seed=9)
    with pytest.raises(GitError, match=r"refused branch main \(race\) 3 times") as caught:
        alice.upload_model_checkpoint()
    assert "run the command again" in caught.value.fix
    assert (alice.repo_path / "model.bin").read_bytes() == data
    remote_main = git(bare(cpv_home), "rev-parse", "refs/heads/main").strip()
    assert git(alice.repo_path, "rev-parse", "HEAD").strip() in {head, remote_main}  # its own commit undone
    assert "(2.9 KiB)" not in git(alice.repo_path, "log", "--format=%s", "HEAD")
