"""The dirstore tests' set-up: a private CPV_HOME whose storage is the dirstore."""

from __future__ import annotations

import cpv_dirstore
import pytest

from cpv_core.plugin.config import CPVConfig
from cpv_core.plugin.manager import get_plugin_manager, reset_plugin_manager


@pytest.fixture
def dirstore(tmp_path, monkeypatch):
    monkeypatch.setenv("CPV_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    (tmp_path / "gitconfig").write_text("[user]\n\tname = T\n\temail = t@example.com\n")
    reset_plugin_manager()
    pm = get_plugin_manager()
    if pm.get_plugin("dirstore") is None:  # not installed: register it by hand
        pm.register(cpv_dirstore, name="dirstore")
    cfg = CPVConfig()
    cfg.set_config("storage", "dirstore")
    cfg.set_config("dirstore.root", str(tmp_path / "objects"))
    yield tmp_path / "objects"
    reset_plugin_manager()
