"""The DVC-format engine: what it writes is what DVC writes, it reads only what
changed, and both transports keep the same contract (real S3 server for S3)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpv_core import DataCheckpointsManage
from cpv_core.config import CPVConfig
from cpv_plugins.dvc_layout import manifest_bytes, parse_pointer
from cpv_plugins.stat_cache import StatCache
from cpv_plugins.transport import LocalDirTransport

HOUR_NS = 3_600_000_000_000


def backdate(root: Path) -> None:
    """Make every file look last changed an hour ago, as real data is when it is uploaded."""
    for f in root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            st = f.stat()
            os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns - HOUR_NS))


def nested_dir(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "deep.bin").write_bytes(os.urandom(3000))
    (root / "a" / "x.txt").write_text("x\n")
    (root / "empty").write_bytes(b"")
    (root / "z.txt").write_text("z\n")
    (root / "link").symlink_to("z.txt")  # a link inside the directory is stored as its target's bytes, as DVC does


def dvc(*args: str, cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def test_a_directory_is_tracked_byte_for_byte_as_dvc_add_would(cpv_home, tmp_path):
    src = tmp_path / "data"
    nested_dir(src)
    d = DataCheckpointsManage("T", "dirs")
    d.import_data_init(src)
    ours = parse_pointer((d.repo_path / "data.dvc").read_bytes())

    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=plain, check=True)
    dvc("init", "-q", cwd=plain)
    shutil.copytree(src, plain / "data", symlinks=True)
    dvc("add", "-q", "data", cwd=plain)
    theirs = parse_pointer((plain / "data.dvc").read_bytes())

    assert ours == theirs  # md5 (.dir), size, nfiles, hash, path
    oid = ours["md5"]
    ours_manifest = (d.repo_path / ".dvc/cache/files/md5" / oid[:2] / oid[2:]).read_bytes()
    assert ours_manifest == (plain / ".dvc/cache/files/md5" / oid[:2] / oid[2:]).read_bytes()
    assert "up to date" in dvc("status", cwd=d.repo_path).lower()


def test_the_manifest_serialisation_matches_dvc_data():
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    files = {"b/c.txt": "0" * 32, "a.txt": "1" * 32, "a b/ü.txt": "2" * 32}
    tree = Tree()
    for rel, md5 in files.items():
        tree.add(tuple(rel.split("/")), Meta(), HashInfo("md5", md5))
    tree.digest()
    raw, oid = manifest_bytes(files)
    assert raw == tree.as_bytes()
    assert oid == tree.hash_info.value


def _cache_inode(ws: Path, md5: str) -> int:
    return (ws / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).stat().st_ino


def test_re_uploading_a_directory_reads_only_the_files_that_changed(cpv_home, tmp_path):
    src = tmp_path / "data"
    for i in range(20):
        (src / f"part-{i:02d}.bin").parent.mkdir(parents=True, exist_ok=True)
        (src / f"part-{i:02d}.bin").write_bytes(os.urandom(1000))
    backdate(src)
    d = DataCheckpointsManage("T", "incremental")
    d.import_data_init(src)  # copies keep their modification times
    ws = d.repo_path
    md5s = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in (ws / "data").iterdir()}
    inodes = {name: _cache_inode(ws, md5) for name, md5 in md5s.items()}

    (ws / "data" / "part-07.bin").write_bytes(b"changed")
    d.upload_data_checkpoint()

    for name, md5 in md5s.items():
        if name != "part-07.bin":  # an unchanged file's object was neither re-read nor rewritten
            assert _cache_inode(ws, md5) == inodes[name], name
    assert (ws / ".dvc/cache/files/md5" / hashlib.md5(b"changed").hexdigest()[:2]).is_dir()
    version = d.tag_data_checkpoint()
    assert d.verify(version, remote=True) == []


def test_the_stat_cache_trusts_only_what_it_can(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    md5 = hashlib.md5(b"abc").hexdigest()
    cache_file = tmp_path / "stat.json"
    mtime = f.stat().st_mtime_ns

    racy = StatCache(cache_file)
    racy.put("f", f, md5, hashed_at=mtime + 10)  # hashed in the same instant it was written
    assert racy.get("f", f) is None

    settled = StatCache(cache_file)
    settled.put("f", f, md5, hashed_at=mtime + 2 * 10**9)
    settled.save()
    assert StatCache(cache_file).get("f", f) == md5
    f.write_bytes(b"abd")  # same size; the new mtime or inode tells
    os.utime(f, ns=(mtime, mtime + 1))
    assert StatCache(cache_file).get("f", f) is None

    # a cache is data: a damaged or forged file is ignored, never an error
    cache_file.write_text("{not json")
    assert StatCache(cache_file).get("f", f) is None
    st = f.stat()
    cache_file.write_text(
        json.dumps({"format": 2, "files": {"f": ["../../etc", st.st_size, st.st_mtime_ns, st.st_ino, st.st_mtime_ns + 10**10]}})
    )
    assert StatCache(cache_file).get("f", f) is None


# -- the transport contract, for both transports ------------------------------------------


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def transport(request, tmp_path):
    if request.param == "local":
        return LocalDirTransport(tmp_path / "remote", tmp_path / "journal")
    from cpv_plugins.s3_transport import S3Settings, S3Transport

    cfg = request.getfixturevalue("s3_config")
    assert isinstance(cfg, CPVConfig)
    return S3Transport(S3Settings(cfg.get_config("aws")), f"transport-{os.urandom(4).hex()}")


def test_a_transport_stores_reads_lists_and_deletes_objects(transport, tmp_path):
    data = os.urandom(50_000)
    oid = hashlib.md5(data).hexdigest()
    src = tmp_path / "src"
    src.write_bytes(data)
    seen: list[int] = []
    with transport.session("test"):
        assert transport.sizes([oid]) == {}
        assert transport.md5(oid) is None
        with pytest.raises(FileNotFoundError):
            transport.read(oid)
        with pytest.raises(FileNotFoundError):
            transport.get(oid, tmp_path / "out", seen.append, single=True)

        transport.put(oid, src, seen.append)
        assert sum(seen) == len(data)
        assert transport.sizes([oid]) == {oid: len(data)}
        assert transport.md5(oid) == oid
        assert transport.read(oid) == data
        for single in (True, False):
            out = tmp_path / f"out-{single}"
            assert transport.get(oid, out, lambda n: None, single=single) == oid
            assert out.read_bytes() == data
        ((listed, size, written),) = list(transport.inventory())
        assert (listed, size) == (oid, len(data)) and abs(written - time.time()) < 300

        many = [hashlib.md5(str(i).encode()).hexdigest() for i in range(40)]  # above the S3 HEAD limit: one listing
        assert transport.sizes([oid, *many]) == {oid: len(data)}

        transport.delete(oid)
        transport.delete(oid)  # absent is not an error
        assert transport.sizes([oid]) == {} and list(transport.inventory()) == []


def test_only_a_push_removes_a_killed_puts_partial_copy(tmp_path):
    """A reader (status, download) runs without the workspace lock: it must never remove a
    temporary file, which may be a concurrent push's copy in flight."""
    data = b"bytes"
    oid = hashlib.md5(data).hexdigest()
    journal = tmp_path / "journal"
    partial = tmp_path / "remote" / "files" / "md5" / oid[:2] / f".{oid[2:]}.abc.cpv-tmp"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"by")
    journal.write_text(f"{partial}\n")
    reader = LocalDirTransport(tmp_path / "remote", journal)
    with reader.session("read"):
        assert reader.md5(oid) is None
    assert partial.exists() and journal.exists()
    src = tmp_path / "src"
    src.write_bytes(data)
    pusher = LocalDirTransport(tmp_path / "remote", journal)
    with pusher.session("upload"):
        pusher.put(oid, src, lambda n: None)
    assert not partial.exists() and pusher.md5(oid) == oid


def test_a_local_store_that_cannot_be_written_is_one_clear_error(tmp_path):
    from cpv_core.errors import StorageError

    data = b"bytes"
    oid = hashlib.md5(data).hexdigest()
    (tmp_path / "remote" / "files" / "md5").mkdir(parents=True)
    (tmp_path / "remote" / "files" / "md5" / oid[:2]).write_text("a file where a directory must be")
    src = tmp_path / "src"
    src.write_bytes(data)
    transport = LocalDirTransport(tmp_path / "remote")
    with pytest.raises(StorageError) as err, transport.session("upload model.bin"):
        transport.put(oid, src, lambda n: None)
    assert f"the local store {tmp_path / 'remote'} could not upload model.bin" in err.value.message
    assert "local.root" in err.value.fix


@pytest.mark.s3
def test_a_manifest_read_from_an_unreachable_store_is_one_clear_error(s3_config, tmp_path):
    """Reading a directory's manifest from the remote (a sub-path download, diff, status on a
    fresh clone) goes through the transport's session like every other remote call."""
    from cpv_core.errors import AWSError

    src = tmp_path / "dataset"
    nested_dir(src)
    DataCheckpointsManage("T", "unreachable").import_data_init(src)
    clone = DataCheckpointsManage("T", "unreachable", repo_path=tmp_path / "clone")
    clone.import_data_init()
    CPVConfig().set_config("aws.endpoint_url", "http://127.0.0.1:9")  # nothing listens on the discard port
    clone = DataCheckpointsManage("T", "unreachable", repo_path=tmp_path / "clone")
    with pytest.raises(AWSError, match="unreachable"):
        clone.download_data_checkpoint("v0.1", output_dir=tmp_path / "out", sub_path="a")
    assert not (tmp_path / "out").exists()
