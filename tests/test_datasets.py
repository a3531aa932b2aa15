"""Data directories of many files (issue #31): one walk, trees known from their scan,
small files hashed, stored and copied on the worker processes, and every guarantee
(trust, crash, team) kept. The suite runs a few thousand files with the worker
threshold lowered, so the parallel paths run here exactly as at 200 000 files."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage, bulk
from cpv_core.errors import ValidationError
from cpv_core.retention import RetentionPolicy, collect_garbage
from cpv_plugins.dvc import layout
from cpv_plugins.dvc.layout import manifest_bytes, manifest_md5s, parse_manifest
from cpv_plugins.dvc.stat_cache import StatCache

from .test_whole import store, store_object

TEAM, MODEL = "AI-Convo", "whisper"
NFILES = 2400


@pytest.fixture(autouse=True)
def workers_for_small_trees(monkeypatch):
    """The worker processes take over from 100 items (5000 by default)."""
    monkeypatch.setattr(bulk, "MIN_PARALLEL_ITEMS", 100)
    monkeypatch.setattr(bulk, "CHUNK_ITEMS", 300)
    monkeypatch.setenv(bulk.WORKERS_ENV, "2")


def write_tree(root: Path, n: int = NFILES, *, age_s: float = 5.0) -> dict[str, bytes]:
    """``n`` small files in nested folders, modified ``age_s`` ago (older than the racy window)."""
    files = {}
    then = time.time() - age_s
    for i in range(n):
        rel = f"part{i % 7}/shard{i % 13:02}/f{i:05}.bin"
        data = f"sample {i}\n".encode() * (1 + i % 5)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (then, then))
        files[rel] = data
    return files


def age_tree(root: Path, age_s: float = 5.0) -> None:
    """Make every file look modified ``age_s`` ago (the workspace's copies are new)."""
    then = time.time() - age_s
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def data(cpv_home, tmp_path) -> tuple[DataCheckpointsManage, dict[str, bytes]]:
    src = tmp_path / "src"
    files = write_tree(src)
    d = DataCheckpointsManage(TEAM, MODEL)
    d.import_data_init(src)  # upload and v0.1
    return d, files


def test_a_large_tree_round_trips_through_the_workers_in_dvc_format(data, cpv_home, tmp_path):
    d, files = data
    pointer = (d.repo_path / "data.dvc").read_text()
    oid = pointer.split("md5: ")[1].split()[0]
    raw = store_object(cpv_home, oid).read_bytes()
    expected = [{"md5": hashlib.md5(files[rel]).hexdigest(), "relpath": rel} for rel in sorted(files)]
    assert raw == json.dumps(expected, sort_keys=True).encode()  # byte for byte what DVC writes
    for entry in expected[:50]:
        assert store_object(cpv_home, entry["md5"]).read_bytes() == files[entry["relpath"]]
    d.download_data_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert read_tree(tmp_path / "out" / "data") == files
    assert (tmp_path / "out" / "data" / "part0" / "shard00" / "f00000.bin").stat().st_mode & 0o200  # the user's copy is writable


def test_an_unchanged_tree_is_known_from_its_scan_and_a_changed_one_is_not(data, monkeypatch):
    d, files = data
    age_tree(d.repo_path / "data")
    d.upload_data_checkpoint()  # the copies made by init, hashed again now that they are settled
    read: list[str] = []
    real = bulk.map_chunks

    def counting(fn, items, *args, **kwargs):
        read.extend(items if fn.__name__ == "hash_files" else [])
        return real(fn, items, *args, **kwargs)

    monkeypatch.setattr(bulk, "map_chunks", counting)
    assert d.upload_data_checkpoint().changed is False
    assert read == []
    # same size, another content, a different (old) mtime: the scan tells
    target = d.repo_path / "data" / "part3" / "shard05" / "f00031.bin"
    target.write_bytes(bytes(b ^ 1 for b in target.read_bytes()))
    os.utime(target, (time.time() - 60, time.time() - 60))
    assert d.ws.storage.status(["data"])["data"] == "modified"
    result = d.upload_data_checkpoint()
    assert result.changed and len(read) <= 1  # status hashed it; the upload knew it from the stat cache


def test_a_tag_of_a_directory_does_not_walk_it_and_names_the_last_upload(data, monkeypatch):
    d, _ = data
    d.upload_data_checkpoint()
    (d.repo_path / "data" / "part0" / "new.bin").write_bytes(b"not uploaded")
    from cpv_core.plugin import sources
    from cpv_plugins.dvc import tracking

    def walked(root):
        pytest.fail(f"tag walked {root}")

    monkeypatch.setattr(sources, "scan_tree", walked)
    monkeypatch.setattr(tracking, "scan_tree", walked)  # where the status of a directory walks it
    committed = d.pointer_info("HEAD").digest
    version = d.tag_data_checkpoint(allow_duplicate=True)
    assert d.get_data_metadata(version).digest == committed


def test_objects_a_stat_vouched_for_are_sent_again_from_the_files_when_cache_and_store_lost_them(data, cpv_home):
    d, files = data
    d.upload_data_checkpoint()
    for root in (store(cpv_home) / "files", d.repo_path / ".dvc" / "cache" / "files"):
        for p in sorted(root.rglob("*"), reverse=True):
            if p.is_file():
                p.chmod(0o644)
                p.unlink()
    (d.repo_path / "data" / "part1" / "added.bin").write_bytes(b"one more")
    d.upload_data_checkpoint()  # the tree's other files are known by stat, and read now to be sent
    assert d.verify(d.tag_data_checkpoint(), remote=True) == []


def test_a_killed_hashing_leaves_temporaries_the_next_upload_removes(data):
    d, _ = data
    objects = d.repo_path / ".dvc" / "cache" / "files" / "md5"
    leftover = objects / ".cpv-4242-0123456789abcdef0123456789abcdef.tmp"
    leftover.write_bytes(b"half")
    (d.repo_path / "data" / "part2" / "more.bin").write_bytes(b"x")
    d.upload_data_checkpoint()
    assert not leftover.exists()


def test_a_refused_entry_found_by_a_worker_is_one_clear_line_and_nothing_changes(data, tmp_path):
    d, _ = data
    head = d.ws.versioning.head()
    os.mkfifo(d.repo_path / "data" / "part4" / "shard01" / "pipe")
    with pytest.raises(ValidationError, match="is not a regular file"):
        d.upload_data_checkpoint()
    assert d.ws.versioning.head() == head


def test_gc_between_a_teammates_push_and_commit_of_a_large_tree_loses_nothing(data, cpv_home, tmp_path, monkeypatch):
    """Bob uploads v0.1's tree again from his clone while Alice's gc, run between his push
    and his commit, deletes v0.1 as unused: his upload notices and sends the files again."""
    d, files = data
    (d.repo_path / "data" / "part0" / "shard00" / "f00000.bin").write_bytes(b"v0.2")
    d.upload_data_checkpoint()
    d.tag_data_checkpoint()
    then = time.time() - 48 * 3600
    for p in store(cpv_home).rglob("*"):
        if p.is_file():
            os.utime(p, (then, then))
    bob = DataCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_data_init()
    write_tree(bob.repo_path / "data")  # v0.1's content
    real_commit = bob.ws.versioning.commit
    model = d.sibling(ModelsCheckpointsManage)

    def gc_then_commit(*args, **kwargs):
        result = collect_garbage([model, d], RetentionPolicy(keep_last=1), dry_run=False)
        assert result.pruned["data"] == ["v0.1"] and result.deleted  # the interleaving happened
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(bob.ws.versioning, "commit", gc_then_commit)
    bob.upload_data_checkpoint()
    monkeypatch.setattr(bob.ws.versioning, "commit", real_commit)
    version = bob.tag_data_checkpoint(allow_duplicate=True)
    assert bob.verify(version, remote=True) == []


# -- formats, fuzzed ------------------------------------------------------------------

relpaths = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
md5s = st.from_regex(r"[0-9a-f]{32}", fullmatch=True)


def parsed_or_none(raw: bytes) -> dict[str, str] | None:
    try:
        return parse_manifest(raw, "m")
    except ValidationError:
        return None


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(relpaths, md5s, max_size=30))
def test_manifests_are_written_as_json_dumps_and_the_quick_check_agrees_with_the_entry_by_entry_one(files):
    raw, oid = manifest_bytes(files)
    assert raw == json.dumps([{"md5": files[r], "relpath": r} for r in sorted(files)], sort_keys=True).encode()
    assert oid == hashlib.md5(raw).hexdigest() + ".dir"
    assert manifest_md5s(raw, "m") == set(files.values())
    quick = parsed_or_none(raw)
    with patch.object(layout, "_checked_fast", lambda entries: None):  # every entry checked one by one
        assert parsed_or_none(raw) == quick


@settings(max_examples=80, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=30,
    )
)
def test_a_damaged_stat_cache_is_ignored_never_trusted(tmp_path_factory, junk):
    folder = tmp_path_factory.mktemp("stat")
    cache = StatCache(folder / "cpv-stat.json")
    for data in (junk, {"format": 3, "rels": junk, "md5": junk, "size": junk, "mtime": junk, "ino": junk, "hashed": junk}):
        cache.file.write_text(json.dumps(data))
        cache.trees_file.write_text(json.dumps({"format": 3, "trees": data}))
        fresh = StatCache(cache.file)
        assert fresh.get_scanned("a", 1, 1, 1) is None
        assert fresh.tree("data", "tree:x", 0) is None


def test_the_stat_cache_vouches_only_for_files_and_trees_unchanged_since_over_a_second(tmp_path):
    cache = StatCache(tmp_path / "cpv-stat.json")
    now = time.time_ns()
    cache.put_scanned("data/a", 3, now - 5_000_000_000, 7, "0" * 32, now)
    cache.put_scanned("data/b", 3, now - 100, 8, "1" * 32, now)  # modified just before it was hashed
    cache.put_tree("data", "tree:f", now - 5_000_000_000, "2" * 32 + ".dir", now)
    cache.save()
    again = StatCache(cache.file)
    assert again.get_scanned("data/a", 3, now - 5_000_000_000, 7) == "0" * 32
    assert again.get_scanned("data/a", 3, now - 5_000_000_000, 8) is None  # another inode
    assert again.get_scanned("data/b", 3, now - 100, 8) is None  # racily clean: not trusted
    assert again.tree("data", "tree:f", now - 5_000_000_000) == "2" * 32 + ".dir"
    assert again.tree("data", "tree:g", now - 5_000_000_000) is None


@pytest.mark.parametrize("value", ["lots", "0", "-2", "65", "2.5"])
def test_a_bad_worker_count_is_a_clear_error(monkeypatch, value):
    from cpv_core.errors import ConfigError

    monkeypatch.setenv(bulk.WORKERS_ENV, value)
    with pytest.raises(ConfigError, match="CPV_WORKERS=.* is not a number of worker processes"):
        bulk.worker_count()


@pytest.mark.parametrize("phase", ["track.chunk-hashed", "upload.chunk-stored"])
def test_an_upload_killed_while_the_workers_run_is_completed_by_the_next_one(cpv_home, tmp_path, phase):
    """A real kill (in a separate cpv process, the default worker threshold) while worker
    processes are half-way through the chunks: the next upload settles and completes it."""
    import subprocess
    import sys

    from cpv_core.faults import KILL_ENV, KILLED_EXIT

    d = DataCheckpointsManage(TEAM, MODEL)
    d.import_data_init()
    files = write_tree(d.repo_path / "data", bulk.MIN_PARALLEL_ITEMS + 500 if bulk.MIN_PARALLEL_ITEMS > 1000 else 6000)
    env = {**os.environ, KILL_ENV: phase, bulk.WORKERS_ENV: "2"}
    killed = subprocess.run(
        [sys.executable, "-m", "cpv_core.cli", "data", "upload"], cwd=d.repo_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == KILLED_EXIT, killed.stderr  # returns only once the workers let go of its output
    env.pop(KILL_ENV)
    again = subprocess.run(
        [sys.executable, "-m", "cpv_core.cli", "data", "upload"], cwd=d.repo_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert not list((d.repo_path / ".dvc" / "cache" / "files" / "md5").glob(".cpv-*.tmp"))
    version = d.tag_data_checkpoint()
    assert d.verify(version, remote=True) == []
    d.download_data_checkpoint(version, output_dir=tmp_path / "out")
    assert read_tree(tmp_path / "out" / "data") == files
