"""The dirstore example passes cpv's storage contract suite (cpv_core.testing)."""

from __future__ import annotations

import pytest

from cpv_core.testing import StorageBackendContract


class TestDirstoreContract(StorageBackendContract):
    @pytest.fixture
    def configured(self, dirstore):
        return dirstore
