"""One operation reads its history once: a tag lists the version tags with one
``for-each-ref`` (a read scope), and the tag it creates is read back in process,
exactly as the listing would have read it."""

from __future__ import annotations

from collections import Counter

import pytest

from cpv_core import ModelsCheckpointsManage
from cpv_plugins.git import plumbing

from .helpers import upload_model


@pytest.fixture
def git_commands(monkeypatch):
    """Every git subprocess cpv starts, by subcommand."""
    counted: Counter[str] = Counter()
    real = plumbing.run_git

    def counting(args, **kwargs):
        counted[args[0]] += 1
        return real(args, **kwargs)

    from cpv_plugins.git import branch, marks, repository

    for module in (repository, branch, marks):
        if hasattr(module, "run_git"):
            monkeypatch.setattr(module, "run_git", counting)
    return counted


def test_a_tag_runs_one_for_each_ref(cpv_home, git_commands):
    m = ModelsCheckpointsManage("team", "model")
    m.import_model_init()
    upload_model(m, seed=1)
    m.tag_model_checkpoint()
    upload_model(m, seed=2)
    git_commands.clear()
    assert m.tag_model_checkpoint() == "v0.2"
    assert git_commands["for-each-ref"] == 1, dict(git_commands)
    assert sum(git_commands.values()) <= 11, dict(git_commands)


def test_a_tag_read_back_in_process_equals_the_listed_record(cpv_home):
    m = ModelsCheckpointsManage("team", "model")
    m.import_model_init()
    upload_model(m, seed=1)
    m.tag_model_checkpoint(message="first")
    versioning = m.ws.versioning
    from cpv_core.domain.versions import Version

    listed = versioning.get_version("model", Version.parse("v0.1"))
    created = versioning.create_version("model", Version.parse("v0.2"), "second", {"digest": "d" * 32})
    assert created == versioning.get_version("model", Version.parse("v0.2"))
    assert listed is not None and listed.date and created.date and created.author == listed.author


def test_a_scope_sees_the_changes_its_own_backend_makes(cpv_home):
    """The listing is dropped by any command that may change refs: a version created
    inside a scope is listed by the next read in the same scope."""
    m = ModelsCheckpointsManage("team", "model")
    m.import_model_init()
    upload_model(m, seed=1)
    versioning = m.ws.versioning
    from cpv_core.domain.versions import Version

    with versioning.read_scope():
        assert versioning.list_versions("model") == []
        versioning.create_version("model", Version.parse("v0.1"), "", {})
        assert [r.version for r in versioning.list_versions("model")] == ["v0.1"]
        versioning.delete_local_version("model", Version.parse("v0.1"))
        assert versioning.list_versions("model") == []
