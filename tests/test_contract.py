"""cpv_core.testing's contract suite, run against the default storage backends
(the dirstore example runs it in its own tests)."""

from __future__ import annotations

import pytest

from cpv_core.config import CPVConfig
from cpv_core.testing import StorageBackendContract


class TestLocalStorageContract(StorageBackendContract):
    @pytest.fixture
    def configured(self, cpv_home):
        CPVConfig().set_config("storage", "local")


@pytest.mark.s3
class TestS3StorageContract(StorageBackendContract):
    @pytest.fixture
    def configured(self, s3_config):
        assert CPVConfig().backend_name("storage") == "dvc-s3"
