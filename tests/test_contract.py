"""cpv_core.testing's contract suite, run against the default storage backends
(the dirstore example runs it in its own tests)."""

from __future__ import annotations

import uuid

import pytest

from cpv_core import ModelsCheckpointsManage
from cpv_core.config import CPVConfig
from cpv_core.testing import StorageBackendContract, VersioningBackendContract


class TestLocalStorageContract(StorageBackendContract):
    @pytest.fixture
    def configured(self, cpv_home):
        CPVConfig().set_config("storage", "local")


@pytest.mark.s3
class TestS3StorageContract(StorageBackendContract):
    @pytest.fixture
    def configured(self, s3_config):
        assert CPVConfig().backend_name("storage") == "dvc-s3"


class TestLocalTensorLayoutContract(StorageBackendContract):
    """The tensor layout (chunks) on the local default."""

    @pytest.fixture
    def configured(self, cpv_home):
        CPVConfig().set_config("storage", "local")
        CPVConfig().set_config("storage_layout", "tensors")


@pytest.mark.s3
class TestS3TensorLayoutContract(StorageBackendContract):
    """The tensor layout (chunks) on S3 (SeaweedFS)."""

    @pytest.fixture
    def configured(self, s3_config):
        CPVConfig().set_config("storage_layout", "tensors")


class TestGitTagsContractLocal(VersioningBackendContract):
    @pytest.fixture
    def configured(self, cpv_home):
        assert CPVConfig().backend_name("versioning") == "git-tags"


@pytest.mark.ssh
class TestGitTagsContractOverSsh(VersioningBackendContract):
    @pytest.fixture
    def configured(self, bitbucket_config, sshd, request):
        self.sshd = sshd

    @pytest.fixture
    def pair(self, configured, tmp_path):
        name = f"v-{uuid.uuid4().hex[:8]}"
        self.sshd.create_repo("ai-team", f"contract-{name}")
        alice = ModelsCheckpointsManage("contract", name)
        alice.import_model_init()
        bob = ModelsCheckpointsManage("contract", name, repo_path=tmp_path / "bob")
        bob.import_model_init()
        return alice, bob


@pytest.mark.gcs
class TestGcsStorageContract(StorageBackendContract):
    @pytest.fixture
    def configured(self, gcs_config):
        assert CPVConfig().backend_name("storage") == "dvc-gs"


@pytest.mark.azure
class TestAzureStorageContract(StorageBackendContract):
    @pytest.fixture
    def configured(self, azure_config):
        assert CPVConfig().backend_name("storage") == "dvc-azure"


def _pair_on(create_repo, tmp_path):
    """Two members' workspaces of a fresh model whose repository ``create_repo`` made."""
    name = f"v-{uuid.uuid4().hex[:8]}"
    create_repo(f"ai-team/contract-{name}.git")
    alice = ModelsCheckpointsManage("contract", name)
    alice.import_model_init()
    bob = ModelsCheckpointsManage("contract", name, repo_path=tmp_path / "bob")
    bob.import_model_init()
    return alice, bob


@pytest.mark.https
class TestGitTagsContractOverHttps(VersioningBackendContract):
    """Leases, atomic pushes and stage changes through git's smart HTTP behind TLS."""

    @pytest.fixture
    def configured(self, https_git_config, git_https):
        assert CPVConfig().backend_name("hosting") == "git"
        self.server = git_https

    @pytest.fixture
    def pair(self, configured, tmp_path):
        return _pair_on(self.server.create_repo, tmp_path)


@pytest.mark.ssh
class TestGitTagsContractOverGitSsh(VersioningBackendContract):
    """The same through hosting ``git`` with an ssh:// URL on a non-standard port."""

    @pytest.fixture
    def configured(self, ssh_git_config, sshd):
        assert CPVConfig().backend_name("hosting") == "git"
        self.sshd = sshd

    @pytest.fixture
    def pair(self, configured, tmp_path):
        return _pair_on(lambda path: self.sshd.create_repo(*path.removesuffix(".git").split("/")), tmp_path)
