"""The dirstore plugin's own tests: cpv's workflow through it, corruption, partial downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage, StorageError


def test_model_workflow(dirstore, tmp_path):
    m = ModelsCheckpointsManage("team", "model")
    m.import_model_init()
    (m.repo_path / "model.bin").write_bytes(b"weights-1" * 100)
    m.upload_model_checkpoint(metrics={"loss": 1.0})
    assert m.tag_model_checkpoint() == "v0.1"
    (m.repo_path / "model.bin").write_bytes(b"weights-2" * 100)
    m.upload_model_checkpoint(metrics={"loss": 0.5})
    assert m.tag_model_checkpoint() == "v0.2"
    art = m.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert Path(art.model_path).read_bytes() == b"weights-1" * 100
    m.revert_model_checkpoint("v0.1")
    assert (m.repo_path / "model.bin").read_bytes() == b"weights-1" * 100
    assert m.verify("v0.2") == []


def test_corruption_is_detected(dirstore, tmp_path):
    m = ModelsCheckpointsManage("team", "model")
    m.import_model_init()
    (m.repo_path / "model.bin").write_bytes(b"weights" * 100)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    (obj,) = [p for p in dirstore.rglob("*") if p.is_file()]
    obj.write_bytes(b"garbage")
    assert m.verify("v0.1") and "corrupt" in m.verify("v0.1")[0]
    with pytest.raises(StorageError):
        m.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "model.bin").exists()


def test_partial_data_download(dirstore, tmp_path):
    d = DataCheckpointsManage("team", "model")
    d.import_data_init()
    for split in ("train", "test"):
        (d.repo_path / "data" / split).mkdir(parents=True)
        (d.repo_path / "data" / split / "a.txt").write_text(split)
    d.upload_data_checkpoint()
    d.tag_data_checkpoint()
    part = d.download_data_checkpoint("v0.1", output_dir=tmp_path / "p", sub_path="test")
    assert [p.name for p in Path(part.data_path).iterdir()] == ["a.txt"]


def test_a_hostile_pointer_writes_nothing_outside_the_output(dirstore, tmp_path):
    """A hostile manifest in the store (read back through the engine every transport
    gets) writes nothing outside the output."""
    import hashlib
    import json
    import subprocess

    from cpv_core import ValidationError

    d = DataCheckpointsManage("team", "model")
    d.import_data_init()
    (d.repo_path / "data").mkdir()
    (d.repo_path / "data" / "a.txt").write_text("a")
    d.upload_data_checkpoint()
    d.tag_data_checkpoint()
    payload = b"owned"
    md5 = hashlib.md5(payload).hexdigest()
    manifest = json.dumps([{"md5": md5, "relpath": "../../escaped.txt"}]).encode()
    dir_md5 = hashlib.md5(manifest).hexdigest()
    store = dirstore / "team" / "model" / "files" / "md5"
    for name, data in ((md5, payload), (f"{dir_md5}.dir", manifest)):
        (store / name[:2]).mkdir(parents=True, exist_ok=True)
        (store / name[:2] / name[2:]).write_bytes(data)
    pointer = f"outs:\n- md5: {dir_md5}.dir\n  size: 5\n  nfiles: 1\n  hash: md5\n  path: data\n"
    (d.repo_path / "data.dvc").write_text(pointer)
    for args in (["add", "-f", "data.dvc"], ["commit", "-q", "-m", "x"], ["tag", "-a", "data/v9.0", "-m", "x"]):
        subprocess.run(["git", *args], cwd=d.repo_path, check=True)
    with pytest.raises(ValidationError, match="manifest entry"):
        d.download_data_checkpoint("v9.0", output_dir=tmp_path / "o" / "p")
    assert not list(tmp_path.rglob("escaped.txt"))
