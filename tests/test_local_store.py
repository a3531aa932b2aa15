"""The embedded local default keeps one copy of a model under CPV_HOME: the
store's objects are hard links to the workspace cache's read-only objects;
nothing is ever linked into the workspace itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpv_core import ModelsCheckpointsManage
from cpv_core.config import CPVConfig
from cpv_core.errors import ConfigError

from .helpers import worktree, write_model
from .test_whole import cache_object, cpv, flip_a_byte, store_object

TEAM, MODEL = "AI-Convo", "whisper"
N = 20 * 1024 * 1024


def disk_used(root: Path, *, excluding: Path) -> int:
    """Bytes of disk the files under ``root`` take, each inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            st = path.lstat()
            if path == excluding or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def upload(cpv_home: Path) -> tuple[ModelsCheckpointsManage, str]:
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", N, seed=1)
    digest = m.upload_model_checkpoint().digest
    m.tag_model_checkpoint()
    return m, digest


def test_an_uploaded_model_takes_one_copy_besides_the_workspace_file(cpv_home):
    m, digest = upload(cpv_home)
    used = disk_used(cpv_home, excluding=m.repo_path / "model.bin")
    assert used <= 1.05 * N, f"{used / N:.3f} x the model"
    print(f"disk used under CPV_HOME: {used / N:.3f} x the model")
    cached, stored = cache_object(m.repo_path, digest).stat(), store_object(cpv_home, digest).stat()
    assert (cached.st_dev, cached.st_ino) == (stored.st_dev, stored.st_ino)
    assert cached.st_mode & 0o222 == 0  # read-only: neither copy is written in place by cpv


def test_the_workspace_file_is_never_linked_and_may_be_overwritten_in_place(cpv_home):
    m, digest = upload(cpv_home)
    model = m.repo_path / "model.bin"
    assert model.stat().st_nlink == 1
    with open(model, "r+b") as handle:  # what a training script saving over its checkpoint does
        handle.write(b"\0" * 4096)
    assert m.verify("v0.1", remote=True) == [] and m.verify("v0.1") == []
    got = m.download_model_checkpoint("v0.1", output_dir=cpv_home / "out")
    assert Path(got.model_path).stat().st_nlink == 1


def test_local_link_false_keeps_two_independent_copies(cpv_home):
    CPVConfig().set_config("local.link", "false")
    m, digest = upload(cpv_home)
    assert cache_object(m.repo_path, digest).stat().st_ino != store_object(cpv_home, digest).stat().st_ino
    assert disk_used(cpv_home, excluding=m.repo_path / "model.bin") >= 2 * N


def test_a_local_link_value_that_is_not_a_boolean_is_refused(cpv_home):
    CPVConfig().set_config("local.link", "sometimes")
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000)
    with pytest.raises(ConfigError, match="local.link 'sometimes' is not true or false"):
        m.upload_model_checkpoint()


def test_with_one_copy_a_damaged_object_is_reported_and_a_revert_to_it_changes_nothing(cpv_home):
    m, digest = upload(cpv_home)
    write_model(m.repo_path / "model.bin", 1000, seed=2)
    m.upload_model_checkpoint()
    flip_a_byte(cache_object(m.repo_path, digest))  # the store's object is the same bytes
    assert m.verify("v0.1", remote=True) and m.verify("v0.1")
    before = worktree(m.repo_path)
    result = cpv("model", "revert", "v0.1", cwd=m.repo_path)
    assert result.returncode == 5 and "corrupt" in result.stderr and "Traceback" not in result.stderr
    assert worktree(m.repo_path) == before


def test_a_full_disk_is_named_as_such_not_as_a_missing_directory():
    """ENOSPC from the store: the fix says to free space, not to check the directory exists."""
    import errno

    from cpv_core.errors import StorageError
    from cpv_plugins.transports.local import LocalDirTransport

    transport = LocalDirTransport.__new__(LocalDirTransport)
    transport.root = Path("/nonexistent-store")
    with pytest.raises(StorageError) as caught, transport.session("upload data"):
        raise OSError(errno.ENOSPC, "No space left on device", "/store/files/md5/15")
    assert "No space left on device" in caught.value.message and "free space" in caught.value.fix
