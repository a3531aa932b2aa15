"""A contract test suite for storage backend authors (as fsspec's abstract tests).

Subclass :class:`StorageBackendContract` in your plugin's tests and provide
the ``configured`` fixture, which sets up a cpv configuration (``CPV_HOME``,
``HOME``, git identity) whose ``storage`` names your backend::

    from cpv_core.testing import StorageBackendContract

    class TestMyStore(StorageBackendContract):
        @pytest.fixture
        def configured(self, tmp_path, monkeypatch):
            monkeypatch.setenv("CPV_HOME", str(tmp_path / "home"))
            ...
            CPVConfig().set_config("storage", "my-store")

Every test goes through cpv's public API and your backend's protocol methods,
so passing it means the managers can drive your backend: round trips of
files and directories, sub-paths, verification, revert, status, and the
trust rule (nothing is written outside the destination, bad sub-paths are
refused). cpv runs it against ``local``, ``dvc-s3`` and the dirstore example.
:class:`VersioningBackendContract` does the same for versioning backends
(cpv runs it against ``git-tags`` over a local and an SSH remote).
Requires pytest (imported here, never by the rest of cpv).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from cpv_core.api.model_data import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.errors import CPVError, ValidationError
from cpv_core.plugin.protocols import StorageBackend, VersioningBackend


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


class StorageBackendContract:
    """What every storage backend must do for cpv's managers (see the module docstring)."""

    @pytest.fixture
    def configured(self) -> Any:
        """Override: configure cpv so that ``storage`` is the backend under test."""
        raise NotImplementedError("define a `configured` fixture that selects your storage backend")

    @pytest.fixture
    def model(self, configured: Any) -> ModelsCheckpointsManage:
        m = ModelsCheckpointsManage("contract", f"m-{uuid.uuid4().hex[:8]}")
        m.import_model_init()
        return m

    @pytest.fixture
    def data(self, model: ModelsCheckpointsManage) -> DataCheckpointsManage:
        root = model.repo_path / "data"
        for rel, text in {"train/a.txt": "a", "train/deep/b.txt": "bb", "test/c.txt": "ccc"}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        d = DataCheckpointsManage(model.team_name, model.model_name)
        d.upload_data_checkpoint()
        d.tag_data_checkpoint()
        return d

    def test_the_backend_implements_the_protocol(self, model: ModelsCheckpointsManage) -> None:
        assert isinstance(model.ws.storage, StorageBackend)

    def test_a_file_round_trips(self, model: ModelsCheckpointsManage, tmp_path: Path) -> None:
        payload = os.urandom(70_000)
        (model.repo_path / "model.bin").write_bytes(payload)
        result = model.upload_model_checkpoint(metrics={"loss": 0.5})
        assert ":" in result.digest and result.size == len(payload)
        version = model.tag_model_checkpoint()
        got = model.download_model_checkpoint(version, output_dir=tmp_path / "out")
        assert Path(got.model_path).read_bytes() == payload
        assert model.verify(version) == [] and model.verify(version, remote=True) == []
        url = model.ws.storage.object_url(result.digest)  # names the object: its hash is in it (or the digest itself)
        assert isinstance(url, str) and result.digest.split(":")[-1][2:] in url, url

    def test_a_directory_round_trips_and_sub_paths_select(self, data: DataCheckpointsManage, tmp_path: Path) -> None:
        got = data.download_data_checkpoint("v0.1", output_dir=tmp_path / "all")
        assert _tree(Path(got.data_path)) == _tree(data.repo_path / "data")
        part = data.download_data_checkpoint("v0.1", output_dir=tmp_path / "part", sub_path="train")
        assert sorted(_tree(Path(part.data_path))) == ["a.txt", "deep/b.txt"]

    def test_the_manifest_lists_every_file(self, data: DataCheckpointsManage) -> None:
        record = data.ws.versioning.list_versions("data")[-1]
        pointer = data.ws.versioning.read_file(record.ref, data.ws.storage.pointer_path("data"))
        assert pointer is not None
        assert sorted(data.ws.storage.manifest(record.ref, "data", pointer)) == ["test/c.txt", "train/a.txt", "train/deep/b.txt"]

    @pytest.mark.parametrize("sub", ["..", "../x", "/etc", "nosuch"])
    def test_bad_sub_paths_are_refused_and_nothing_is_written(self, data: DataCheckpointsManage, tmp_path: Path, sub: str) -> None:
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(ValidationError):
            data.download_data_checkpoint("v0.1", output_dir=tmp_path / "o", sub_path=sub)
        assert sorted(p.name for p in tmp_path.iterdir()) == before

    def test_materialize_never_writes_outside_its_destination(self, data: DataCheckpointsManage, tmp_path: Path) -> None:
        record = data.ws.versioning.list_versions("data")[-1]
        pointer = data.ws.versioning.read_file(record.ref, data.ws.storage.pointer_path("data"))
        assert pointer is not None
        dest = tmp_path / "a" / "b" / "dest"
        with pytest.raises(CPVError):
            data.ws.storage.materialize(record.ref, "data/../../escape", pointer, dest)
        assert not list(tmp_path.rglob("escape*"))

    def test_revert_restores_the_bytes_and_status_follows(self, model: ModelsCheckpointsManage) -> None:
        first = os.urandom(5000)
        (model.repo_path / "model.bin").write_bytes(first)
        model.upload_model_checkpoint()
        model.tag_model_checkpoint()
        (model.repo_path / "model.bin").write_bytes(os.urandom(6000))
        assert model.ws.storage.status(["model.bin"])["model.bin"] == "modified"
        model.upload_model_checkpoint()
        model.revert_model_checkpoint("v0.1")
        assert (model.repo_path / "model.bin").read_bytes() == first
        assert model.ws.storage.status(["model.bin"])["model.bin"] == "unchanged"

    def test_a_large_file_round_trips_in_every_version_and_verifies(self, model: ModelsCheckpointsManage, tmp_path: Path) -> None:
        """A file large enough for a chunked layout (9 MiB), then the same with one MiB changed
        in its middle: both versions come back byte for byte and verify on the remote."""
        first = os.urandom(9 * 2**20)
        second = first[: 3 * 2**20] + os.urandom(2**20) + first[4 * 2**20 :]
        versions = []
        for payload in (first, second):
            (model.repo_path / "model.bin").write_bytes(payload)
            model.upload_model_checkpoint()
            versions.append(model.tag_model_checkpoint())
        for version, payload in zip(versions, (first, second), strict=True):
            got = model.download_model_checkpoint(version, output_dir=tmp_path / version)
            assert Path(got.model_path).read_bytes() == payload
            assert model.verify(version, remote=True) == []
        model.revert_model_checkpoint(versions[0])
        assert (model.repo_path / "model.bin").read_bytes() == first

    def test_stored_objects_are_listed_and_deleted_or_refused_clearly(self, data: DataCheckpointsManage) -> None:
        """What ``cpv gc`` and ``cpv du`` need; a backend without it must say so in one line."""
        from cpv_core.errors import StorageError

        storage = data.ws.storage
        record = data.ws.versioning.list_versions("data")[-1]
        pointer = data.ws.versioning.read_file(record.ref, storage.pointer_path("data"))
        assert pointer is not None
        try:
            inventory = storage.inventory()
        except StorageError as exc:
            assert "gc and du need it" in exc.message
            return
        objects = storage.objects_of(record.ref, "data", pointer)
        assert len(objects) == 4 and set(objects) <= {o.oid for o in inventory}  # the manifest and three files
        assert all(o.size > 0 and o.modified > 0 for o in inventory)
        storage.delete_objects(objects[1:2])
        storage.delete_objects(objects[1:2])  # absent is not an error
        assert len(data.verify("v0.1", remote=True)) == 1


class VersioningBackendContract:
    """What every versioning backend must do for cpv's managers.

    Provide ``configured`` (a cpv configuration whose ``versioning`` names the
    backend under test, with a hosting backend it can publish to) as for
    :class:`StorageBackendContract`. Two workspaces of the same model stand
    for two team members: what one publishes the other must see, a version
    can be taken only once, nothing is forced, and the private directory
    cannot be reached by a commit.
    """

    @pytest.fixture
    def configured(self) -> Any:
        """Override: configure cpv so that ``versioning`` is the backend under test."""
        raise NotImplementedError("define a `configured` fixture that selects your versioning backend")

    @pytest.fixture
    def pair(self, configured: Any, tmp_path: Path) -> tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]:
        name = f"v-{uuid.uuid4().hex[:8]}"
        alice = ModelsCheckpointsManage("contract", name)
        alice.import_model_init()
        bob = ModelsCheckpointsManage("contract", name, repo_path=tmp_path / "bob")
        bob.import_model_init()  # the remote exists: bob clones it
        return alice, bob

    def test_the_backend_implements_the_protocol(self, pair: tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]) -> None:
        assert isinstance(pair[0].ws.versioning, VersioningBackend)

    def test_commits_are_read_back_without_a_checkout(self, pair: tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]) -> None:
        alice, _ = pair
        vb = alice.ws.versioning
        first = vb.head()
        (alice.repo_path / "README.md").write_text("changed\n")
        assert vb.changed_files(["README.md"]) == ["README.md"]
        second = vb.commit(["README.md"], "a message\n\nwith a body")
        assert second != first and vb.head() == second
        assert vb.read_file(second, "README.md") == b"changed\n"
        assert vb.read_file(second, "no/such/file") is None
        vb.restore(str(first), ["README.md"])
        assert (alice.repo_path / "README.md").read_bytes() == vb.read_file(str(first), "README.md")

    def test_what_one_member_publishes_the_other_sees(self, pair: tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]) -> None:
        alice, bob = pair
        (alice.repo_path / "model.bin").write_bytes(os.urandom(2000))
        alice.upload_model_checkpoint(metrics={"loss": 0.5}, message="first")
        assert alice.tag_model_checkpoint(message="v one") == "v0.1"
        assert bob.read_checkpoint_tag() == ["v0.1"]  # fetched
        record = bob.ws.versioning.list_versions("model")[-1]
        assert record.message == "v one" and record.metadata["metrics"] == {"loss": 0.5}
        assert bob.ws.versioning.divergence() == (0, 1)
        bob.pull()
        assert bob.ws.versioning.divergence() == (0, 0)

    def test_a_version_is_taken_once_and_never_forced(self, pair: tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]) -> None:
        from cpv_core.domain.versions import Version
        from cpv_core.plugin.protocols import PushRejected

        alice, bob = pair
        (alice.repo_path / "model.bin").write_bytes(os.urandom(2000))
        alice.upload_model_checkpoint()
        alice.tag_model_checkpoint(version_tag="v1.0")
        taken = alice.ws.versioning.list_versions("model")[-1].commit
        # bob has not fetched: his v1.0 names another commit, and the remote must refuse it
        mine = bob.ws.versioning.create_version("model", Version(1, 0), "mine", {})
        assert mine.commit != taken
        with pytest.raises(PushRejected) as err:
            bob.ws.versioning.publish([mine])
        assert err.value.reason == "exists"
        bob.ws.versioning.delete_local_version("model", Version(1, 0))
        bob.ws.versioning.fetch()
        assert [r.commit for r in bob.ws.versioning.list_versions("model")] == [taken]

    def test_a_conditional_publish_from_a_stale_view_is_refused(
        self, pair: tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]
    ) -> None:
        """A backend that says it publishes conditionally lets ``tag`` skip the fetch:
        the remote must then refuse a version allocated from an out-of-date view."""
        from cpv_core.domain.versions import Version
        from cpv_core.plugin.protocols import PushRejected

        alice, bob = pair
        if not bob.ws.versioning.publishes_conditionally():
            pytest.skip("this backend fetches before every tag (publishes_conditionally() is False)")
        (alice.repo_path / "model.bin").write_bytes(os.urandom(2000))
        alice.upload_model_checkpoint()
        alice.tag_model_checkpoint(version_tag="v1.0")
        bob.pull()  # the branch, but bob's view of the versions is refreshed by a fetch...
        alice.tag_model_checkpoint(version_tag="v1.1", allow_duplicate=True)  # ...that has not seen this one
        mine = bob.ws.versioning.create_version("model", Version(2, 0), "from a stale view", {})
        with pytest.raises(PushRejected) as err:
            bob.ws.versioning.publish([mine])
        assert err.value.reason == "stale"
        bob.ws.versioning.delete_local_version("model", Version(2, 0))
        assert bob.tag_model_checkpoint(allow_duplicate=True) == "v1.2"  # fetches, then takes the next free one

    def test_a_stage_change_is_taken_once_and_read_back_by_the_other(
        self, pair: tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]
    ) -> None:
        from cpv_core.plugin.protocols import PushRejected

        alice, bob = pair
        (alice.repo_path / "model.bin").write_bytes(os.urandom(2000))
        alice.upload_model_checkpoint()
        alice.tag_model_checkpoint()
        record = alice.ws.versioning.list_versions("model")[-1]
        bob.ws.versioning.fetch()
        event = alice.ws.versioning.record_stage_event("model", "prod", 1, "v0.1", record.commit, "ship it", ["a rule"])
        assert (event.stage, event.number, event.version, event.message, event.forced) == ("prod", 1, "v0.1", "ship it", ("a rule",))
        with pytest.raises(PushRejected) as err:  # bob has not seen it: same number, another change
            bob.ws.versioning.record_stage_event("model", "prod", 1, None, record.commit, "", [])
        assert err.value.reason == "exists"
        assert bob.ws.versioning.list_stage_events("model") == []  # nothing left behind
        bob.ws.versioning.fetch()
        (seen,) = bob.ws.versioning.list_stage_events("model")
        assert (seen.number, seen.version, seen.author) == (1, "v0.1", event.author)

    def test_pruned_versions_are_marked_or_deleted_for_everyone(
        self, pair: tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]
    ) -> None:
        alice, bob = pair
        for _ in range(2):
            (alice.repo_path / "model.bin").write_bytes(os.urandom(2000))
            alice.upload_model_checkpoint()
            alice.tag_model_checkpoint()
        first, second = alice.ws.versioning.list_versions("model")
        alice.ws.versioning.mark_pruned("model", [first], "gone")
        alice.ws.versioning.mark_pruned("model", [first], "gone")  # twice is once
        alice.ws.versioning.delete_versions("model", [second])
        bob.ws.versioning.fetch()
        assert list(bob.ws.versioning.pruned_versions("model")) == [first.version]
        assert [r.version for r in bob.ws.versioning.list_versions("model")] == [first.version]

    def test_the_private_directory_is_beyond_any_commit(self, pair: tuple[ModelsCheckpointsManage, ModelsCheckpointsManage]) -> None:
        alice, _ = pair
        private = alice.ws.versioning.private_dir()
        assert alice.repo_path in private.parents
        private.mkdir(parents=True, exist_ok=True)
        (private / "probe").write_text("state")
        assert alice.ws.versioning.changed_files() == []  # the versioning backend never sees it
