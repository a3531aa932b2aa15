"""The tensor layout (issue #32): a large file stored as chunks (per tensor for
safetensors, by content otherwise), only what changed stored again, every chunk and the
whole file checked on the way back, lazy reads of some tensors; hostile manifests and
headers refused in one line with nothing placed; gc, kills and DVC export."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from safetensors.numpy import load_file, save_file

from cpv_core import ModelsCheckpointsManage, open_tensors
from cpv_core.config import CPVConfig
from cpv_core.errors import CPVError, DVCError, ValidationError
from cpv_core.faults import KILL_ENV, KILLED_EXIT
from cpv_plugins.dvc.chunking import CHUNKED_MIN_BYTES, MIN_CHUNK
from cpv_plugins.dvc.layout import object_relpath

from .helpers import s3_keys

CPV = [sys.executable, "-m", "cpv_core.cli"]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def model_tensors(seed: int, frozen_seed: int = 0, layers: int = 24) -> dict[str, np.ndarray]:
    """A small transformer-like model: frozen layers (same bytes for the same ``frozen_seed``)
    and a head that ``seed`` changes."""
    frozen = np.random.default_rng(frozen_seed)
    tensors = {}
    for i in range(layers):
        tensors[f"encoder.{i}.weight"] = frozen.standard_normal((256, 512), dtype=np.float32)
        tensors[f"encoder.{i}.bias"] = frozen.standard_normal((512,), dtype=np.float32)
    tensors["lm_head.weight"] = np.random.default_rng(seed).standard_normal((1024, 1024), dtype=np.float32)
    return tensors


def write_model(path: Path, tensors: dict[str, np.ndarray]) -> bytes:
    save_file(tensors, str(path))
    return path.read_bytes()


def stored_bytes(m: ModelsCheckpointsManage) -> int:
    return sum(o.size for o in m.ws.storage.inventory())


@pytest.fixture
def tensor_home(cpv_home):
    CPVConfig().set_config("storage_layout", "tensors")
    return cpv_home


@pytest.fixture
def model(tensor_home):
    m = ModelsCheckpointsManage("T", "llm")
    m.import_model_init()
    return m


def pointer_meta(m: ModelsCheckpointsManage) -> dict:
    from cpv_plugins.dvc.layout import parse_pointer

    out = parse_pointer((m.repo_path / "model.bin.dvc").read_bytes())
    assert out is not None
    return dict(out.get("meta") or {})


# -- the engine end to end, local default ------------------------------------------------------


def test_a_new_version_stores_only_the_tensors_that_changed(model, tmp_path):
    first = write_model(model.repo_path / "model.bin", model_tensors(1))
    model.upload_model_checkpoint(metrics={"loss": 1.0})
    model.tag_model_checkpoint()
    after_one = stored_bytes(model)
    assert "cpv_chunks" in pointer_meta(model)
    assert after_one < len(first) * 1.01  # chunks plus a small manifest
    second = write_model(model.repo_path / "model.bin", model_tensors(2))
    model.upload_model_checkpoint(metrics={"loss": 0.9})
    model.tag_model_checkpoint()
    head = 1024 * 1024 * 4
    assert stored_bytes(model) - after_one < head * 1.05  # the changed head, not the frozen encoder again
    pointer = (model.repo_path / "model.bin.dvc").read_text()
    assert hashlib.md5(second).hexdigest() in pointer  # the whole file's MD5, as the whole-file layout records
    for version, payload in (("v0.1", first), ("v0.2", second)):
        got = model.download_model_checkpoint(version, output_dir=tmp_path / version)
        assert Path(got.model_path).read_bytes() == payload
    assert model.verify("v0.1", remote=True) == []


def teammate(tmp_path: Path) -> ModelsCheckpointsManage:
    """Another member's clone: an empty cache, so every byte comes from the store."""
    other = ModelsCheckpointsManage("T", "llm", repo_path=tmp_path / "teammate")
    other.import_model_init()
    return other


def test_download_tensors_fetches_only_their_chunks_and_writes_a_valid_file(model, tmp_path):
    tensors = model_tensors(1)
    write_model(model.repo_path / "model.bin", tensors)
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    got = teammate(tmp_path).download_tensors("v0.1", "lm_head.*,encoder.3.*", tmp_path / "out")
    loaded = load_file(str(got.path))  # the safetensors library accepts it
    assert sorted(loaded) == ["encoder.3.bias", "encoder.3.weight", "lm_head.weight"]
    for name, array in loaded.items():
        assert np.array_equal(array, tensors[name])
    wanted = sum(tensors[n].nbytes for n in loaded)
    assert wanted <= got.bytes_fetched <= 1.05 * wanted + 2 * MIN_CHUNK  # the tensors plus the header's chunk
    assert got.bytes_fetched < got.file_size / 3


def test_open_tensors_reads_each_tensor_on_first_use(model, tmp_path):
    tensors = model_tensors(1)
    write_model(model.repo_path / "model.bin", tensors)
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    with open_tensors("T", "llm", "v0.1", "encoder.*", repo_path=teammate(tmp_path).repo_path) as lazy:
        assert len(lazy) == 48 and "lm_head.weight" not in lazy
        before = lazy.fetched
        assert np.array_equal(lazy["encoder.5.weight"], tensors["encoder.5.weight"])
        assert tensors["encoder.5.weight"].nbytes <= lazy.fetched - before <= tensors["encoder.5.weight"].nbytes + MIN_CHUNK


def test_the_whole_file_layout_reads_some_tensors_verified_by_its_index(cpv_home, tmp_path):
    """A safetensors file stored whole gets a tensor index at upload (its chunks' SHA-256s):
    --tensors then reads only their byte ranges of the whole object, each checked."""
    m = ModelsCheckpointsManage("T", "whole")
    m.import_model_init()
    tensors = model_tensors(1, layers=8)
    payload = write_model(m.repo_path / "model.bin", tensors)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    assert "cpv_index" in pointer_meta(m) and "cpv_chunks" not in pointer_meta(m)
    other = ModelsCheckpointsManage("T", "whole", repo_path=tmp_path / "teammate")
    other.import_model_init()
    got = other.download_tensors("v0.1", "lm_head.weight", tmp_path / "out")
    assert np.array_equal(load_file(str(got.path))["lm_head.weight"], tensors["lm_head.weight"])
    assert tensors["lm_head.weight"].nbytes <= got.bytes_fetched <= tensors["lm_head.weight"].nbytes + 2 * MIN_CHUNK
    whole = other.download_model_checkpoint("v0.1", output_dir=tmp_path / "whole")
    assert Path(whole.model_path).read_bytes() == payload  # the whole file as DVC stores it
    md5 = hashlib.md5(payload).hexdigest()
    damaged = bytearray(payload)
    damaged[got.file_size - 10] ^= 0xFF  # in lm_head, the last tensor
    store = Path(m.ws.storage.transport.object_path(md5))
    _replace(store, bytes(damaged))
    with pytest.raises(DVCError, match="corrupt"):
        other.download_tensors("v0.1", "lm_head.weight", tmp_path / "again")


def test_other_large_files_are_cut_by_content_and_an_insertion_dedupes(model, tmp_path):
    payload = os.urandom(12 * 2**20)
    (model.repo_path / "model.bin").write_bytes(payload)
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    once = stored_bytes(model)
    (model.repo_path / "model.bin").write_bytes(b"inserted at the start" + payload)
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    assert stored_bytes(model) - once < 0.3 * len(payload)  # only the first chunk or two are new
    got = model.download_model_checkpoint("v0.2", output_dir=tmp_path / "o")
    assert Path(got.model_path).read_bytes() == b"inserted at the start" + payload


def test_a_small_file_stays_whole_in_the_tensor_layout(model):
    (model.repo_path / "model.bin").write_bytes(os.urandom(CHUNKED_MIN_BYTES - 1))
    model.upload_model_checkpoint()
    assert "cpv_chunks" not in pointer_meta(model)


def test_init_says_what_the_layout_gives_up_and_a_bad_layout_is_refused(tensor_home):
    said = []
    m = ModelsCheckpointsManage("T", "said", echo=said.append)
    m.import_model_init()
    assert any("dvc pull" in line and "export --dvc" in line for line in said)
    with pytest.raises(CPVError, match="not a storage layout"):
        from cpv_core.plugin.settings import check_setting

        check_setting("storage_layout", "zip")


# -- hostile store and repository ---------------------------------------------------------------


def _uploaded(model) -> tuple[bytes, str]:
    payload = write_model(model.repo_path / "model.bin", model_tensors(1, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    return payload, pointer_meta(model)["cpv_chunks"]


def _store_path(m, oid: str) -> Path:
    return Path(m.ws.storage.transport.object_path(oid))


def _replace(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_a_swapped_pack_on_the_store_is_refused_naming_the_chunk_and_nothing_is_placed(model, tmp_path):
    _, moid = _uploaded(model)
    manifest = json.loads(_store_path(model, moid).read_bytes())
    pack, size = manifest["packs"][0]
    damaged = bytearray(_store_path(model, pack).read_bytes())
    offset = manifest["chunks"][3][3]
    damaged[offset] ^= 0xFF  # one byte of the fourth chunk
    _replace(_store_path(model, pack), bytes(damaged))
    _empty_cache(model)
    with pytest.raises(DVCError, match="chunk 4 of .* is corrupt"):
        model.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "model.bin").exists()
    assert any("pack 1" in p and "corrupt" in p for p in model.verify("v0.1", remote=True))


def _empty_cache(model) -> None:
    for cached in (model.repo_path / ".dvc/cache").rglob("*"):
        if cached.is_file():
            os.chmod(cached, 0o644)
            cached.unlink()


def test_a_manifest_that_lies_is_refused_in_one_line(model, tmp_path):
    """A teammate with write access to the store rewrites the manifest (its key no longer
    matches its bytes), or a pointer names a manifest of other bytes."""
    _, moid = _uploaded(model)
    path = _store_path(model, moid)
    doc = json.loads(path.read_bytes())
    doc["chunks"] = doc["chunks"][:-1]
    _replace(path, json.dumps(doc).encode())
    _empty_cache(model)
    with pytest.raises(DVCError, match="does not match its hash"):
        model.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_header_that_lies_is_refused_before_any_offset_is_used(model, tmp_path):
    """A committed file whose safetensors header claims bytes past its end: stored (cut by
    content, it is not a valid safetensors file), then refused by --tensors with one line."""
    body = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 10**9]}}).encode()
    lie = struct.pack("<Q", len(body)) + body + os.urandom(CHUNKED_MIN_BYTES)
    (model.repo_path / "model.bin").write_bytes(lie)
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    with pytest.raises(ValidationError, match="claims"):
        model.download_tensors("v0.1", "w", tmp_path / "out")
    assert not (tmp_path / "out" / "model.bin").exists()


# -- gc, kills, S3, DVC ---------------------------------------------------------------------------


def test_gc_keeps_every_chunk_a_kept_version_uses_and_frees_the_rest(model, tmp_path):
    from cpv_core.ops.retention import RetentionPolicy, collect_garbage

    payloads = []
    for seed in (1, 2, 3):
        payloads.append(write_model(model.repo_path / "model.bin", model_tensors(seed, layers=8)))
        model.upload_model_checkpoint()
        model.tag_model_checkpoint()
    before = stored_bytes(model)
    result = collect_garbage([model], RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
    assert result.freed > 0 and stored_bytes(model) < before
    got = model.download_model_checkpoint("v0.3", output_dir=tmp_path / "o")
    assert Path(got.model_path).read_bytes() == payloads[-1]
    assert model.verify("v0.3", remote=True) == []


def _cpv(*args: str, cwd: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.run([*CPV, *args], cwd=cwd, capture_output=True, text=True, timeout=180, env=env)


@pytest.mark.parametrize("phase", ["upload.chunk-cut", "upload.tracked", "upload.stored"])
def test_a_killed_chunked_upload_is_completed_by_the_next(model, phase, tmp_path):
    write_model(model.repo_path / "model.bin", model_tensors(1, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    trained = write_model(model.repo_path / "model.bin", model_tensors(2, layers=8))
    assert _cpv("model", "upload", "-m", "next", cwd=model.repo_path, kill_at=phase).returncode == KILLED_EXIT
    assert (model.repo_path / "model.bin").read_bytes() == trained
    done = _cpv("model", "upload", "-m", "next", cwd=model.repo_path)
    assert done.returncode == 0, done.stderr
    assert _cpv("model", "tag", cwd=model.repo_path).stdout.strip() == "v0.2"
    got = model.download_model_checkpoint("v0.2", output_dir=tmp_path / "o")
    assert Path(got.model_path).read_bytes() == trained
    assert model.verify("v0.2", remote=True) == []


def test_a_killed_download_places_nothing_and_the_next_completes(model, tmp_path):
    payload = write_model(model.repo_path / "model.bin", model_tensors(1, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    out = tmp_path / "out"
    killed = _cpv("model", "download", "v0.1", "-o", str(out), cwd=model.repo_path, kill_at="download.chunk-placed")
    assert killed.returncode == KILLED_EXIT
    assert not (out / "model.bin").exists()
    assert _cpv("model", "download", "v0.1", "-o", str(out), cwd=model.repo_path).returncode == 0
    assert (out / "model.bin").read_bytes() == payload
    assert not [p for p in out.iterdir() if p.name != "model.bin"]  # the killed run's staging was cleared


@pytest.mark.s3
def test_on_s3_only_new_chunks_are_sent_and_lazy_reads_fetch_little(s3_config, seaweed, tmp_path):
    CPVConfig().set_config("storage_layout", "tensors")
    m = ModelsCheckpointsManage("T", "s3llm")
    m.import_model_init()
    tensors = model_tensors(1)
    first = write_model(m.repo_path / "model.bin", tensors)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    keys_one = set(s3_keys(seaweed))
    write_model(m.repo_path / "model.bin", model_tensors(2))
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    new = set(s3_keys(seaweed)) - keys_one
    assert len(new) == 2  # one pack (the head's new chunks) and the new manifest: nothing of the encoder
    got = m.download_model_checkpoint("v0.1", output_dir=tmp_path / "o")
    assert Path(got.model_path).read_bytes() == first
    lazy = m.download_tensors("v0.1", "encoder.7.weight", tmp_path / "t")
    assert lazy.bytes_fetched <= tensors["encoder.7.weight"].nbytes + 2 * MIN_CHUNK
    assert np.array_equal(load_file(str(lazy.path))["encoder.7.weight"], tensors["encoder.7.weight"])


def test_export_writes_plain_dvc_objects_that_dvc_pull_reads(model, tmp_path):
    payload = write_model(model.repo_path / "model.bin", model_tensors(1, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    export = tmp_path / "export"
    assert _cpv("model", "export", "v0.1", "--dvc", "-o", str(export), cwd=model.repo_path).returncode == 0
    md5 = hashlib.md5(payload).hexdigest()
    assert (export / object_relpath(md5)).read_bytes() == payload
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(model.ws.hosting.remote_url()), str(clone)], check=True)
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    add = [sys.executable, "-m", "dvc", "remote", "add", "--local", "-d", "export", str(export)]  # as the export's line says
    subprocess.run(add, cwd=clone, check=True, env=env, capture_output=True)
    pulled = subprocess.run([sys.executable, "-m", "dvc", "pull"], cwd=clone, env=env, capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "model.bin").read_bytes() == payload


def test_a_teammate_reuses_the_stored_packs_without_holding_them(model, tmp_path):
    """Bob's clone never had v0.1's packs: his new version points into them on the store."""
    write_model(model.repo_path / "model.bin", model_tensors(1, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    bob = teammate(tmp_path)
    bob.pull()
    before = stored_bytes(model)
    trained = write_model(bob.repo_path / "model.bin", model_tensors(2, layers=8))
    bob.upload_model_checkpoint()
    assert bob.tag_model_checkpoint() == "v0.2"
    assert stored_bytes(model) - before < 5 * 2**20  # the new head (4 MiB) and a manifest
    got = model.download_model_checkpoint("v0.2", output_dir=tmp_path / "o")
    assert Path(got.model_path).read_bytes() == trained


def test_gc_between_a_teammates_check_and_push_is_repaired_by_the_next_upload(model, tmp_path, monkeypatch):
    """Team rule, in a fixed order: Bob's upload finds v0.1's pack stored and reuses it;
    before his push, Alice's gc (v0.2 kept: a different model) deletes that pack. Bob's push
    refuses in one line and commits nothing; his next upload stores the bytes again."""
    from cpv_core.ops.retention import RetentionPolicy, collect_garbage

    write_model(model.repo_path / "model.bin", model_tensors(1, frozen_seed=5, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    bob = teammate(tmp_path)
    bob.pull()
    write_model(model.repo_path / "model.bin", model_tensors(3, frozen_seed=9, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    trained = write_model(bob.repo_path / "model.bin", model_tensors(2, frozen_seed=5, layers=8))
    storage = bob.ws.storage
    real_push = storage.push

    def gc_then_push(paths):
        collect_garbage([model], RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
        return real_push(paths)

    monkeypatch.setattr(storage, "push", gc_then_push)
    with pytest.raises(DVCError, match="removed from .* after this upload found it there"):
        bob.upload_model_checkpoint()
    monkeypatch.setattr(storage, "push", real_push)
    bob.ws.versioning.fetch()
    bob.upload_model_checkpoint()
    version = bob.tag_model_checkpoint()
    got = model.download_model_checkpoint(version, output_dir=tmp_path / "o")
    assert Path(got.model_path).read_bytes() == trained
    assert model.verify(version, remote=True) == []


def test_a_shared_header_does_not_keep_an_old_checkpoints_pack_alive(model):
    """Two models of one architecture share only their header's chunk: the second stores it
    again instead of borrowing it, so gc can free the first model's whole pack."""
    from cpv_core.ops.retention import RetentionPolicy, collect_garbage

    write_model(model.repo_path / "model.bin", model_tensors(1, frozen_seed=5, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    first = set(model.ws.storage.objects("model.bin"))
    write_model(model.repo_path / "model.bin", model_tensors(3, frozen_seed=9, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    assert not first & set(model.ws.storage.objects("model.bin"))
    result = collect_garbage([model], RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
    assert result.freed > 8 * 2**20


def write_sharded(root: Path, seed: int) -> dict[str, bytes]:
    """A Hugging Face style directory: a config and two safetensors shards (frozen encoder, trained head)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"layers": 8}))
    encoder = {k: v for k, v in model_tensors(0, layers=20).items() if k.startswith("encoder.")}  # 10 MiB, frozen
    head = np.random.default_rng(seed).standard_normal((2048, 1024), dtype=np.float32)  # 8 MiB, trained
    write_model(root / "model-00001-of-00002.safetensors", encoder)
    write_model(root / "model-00002-of-00002.safetensors", {"lm_head.weight": head})
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_a_sharded_directory_model_stores_only_the_changed_tensors(model, tmp_path):
    files = write_sharded(tmp_path / "hf", seed=1)
    model.upload_model_checkpoint(model_path=tmp_path / "hf")
    model.tag_model_checkpoint()
    from cpv_plugins.dvc.layout import parse_pointer

    out = parse_pointer((model.repo_path / "hf.dvc").read_bytes())
    assert out is not None and len(out["meta"]["cpv_entry_chunks"]) == 2  # both shards chunked, the config whole
    once = stored_bytes(model)
    changed = write_sharded(model.repo_path / "hf", seed=2)
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    assert stored_bytes(model) - once < 8.5 * 2**20  # the head's shard; the encoder's is not stored again
    other = teammate(tmp_path)
    for version, expected in (("v0.1", files), ("v0.2", changed)):
        got = other.download_model_checkpoint(version, output_dir=tmp_path / version)
        assert {p.name: p.read_bytes() for p in Path(got.model_path).iterdir()} == expected
        assert other.verify(version, remote=True) == []
    export = tmp_path / "export"
    assert _cpv("model", "export", "v0.2", "--dvc", "-o", str(export), cwd=model.repo_path).returncode == 0
    for data in changed.values():
        assert (export / object_relpath(hashlib.md5(data).hexdigest())).read_bytes() == data


def test_gc_keeps_a_directory_versions_packs_and_frees_the_rest(model, tmp_path):
    from cpv_core.ops.retention import RetentionPolicy, collect_garbage

    for seed in (1, 2, 3):
        expected = write_sharded(model.repo_path / "hf" if seed > 1 else tmp_path / "hf", seed)
        if seed == 1:
            model.upload_model_checkpoint(model_path=tmp_path / "hf")
        else:
            model.upload_model_checkpoint()
        model.tag_model_checkpoint()
    result = collect_garbage([model], RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
    assert result.freed > 2 * 8 * 2**20  # two old heads
    got = teammate(tmp_path).download_model_checkpoint("v0.3", output_dir=tmp_path / "o")
    assert {p.name: p.read_bytes() for p in Path(got.model_path).iterdir()} == expected


def test_a_damaged_cached_pack_is_read_from_the_store_instead(model, tmp_path):
    payload = write_model(model.repo_path / "model.bin", model_tensors(1, layers=8))
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    pack = json.loads(_store_path(model, pointer_meta(model)["cpv_chunks"]).read_bytes())["packs"][0][0]
    cached = model.repo_path / ".dvc/cache" / object_relpath(pack)
    os.chmod(cached, 0o644)
    cached.unlink()  # the store keeps its own copy (a hard link before), then the cache's rots
    shutil.copy(_store_path(model, pack), cached)
    rotten = bytearray(cached.read_bytes())
    rotten[100] ^= 0xFF
    cached.write_bytes(bytes(rotten))
    got = model.download_model_checkpoint("v0.1", output_dir=tmp_path / "o")
    assert Path(got.model_path).read_bytes() == payload
    assert not cached.exists()  # evicted


def test_storage_layout_is_set_by_either_spelling_and_checked(cpv_home, tmp_path):
    for spelling in ("storage.layout", "storage_layout"):
        done = _cpv("config", "set", spelling, "tensors", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert CPVConfig().get_config("storage_layout") == "tensors" and CPVConfig().get_config("storage") != {"layout": "tensors"}
    refused = _cpv("config", "set", "storage.layout", "zip", cwd=tmp_path)
    assert refused.returncode != 0 and "not a storage layout" in refused.stderr
    assert CPVConfig().get_config("storage_layout") == "tensors"


def test_a_killed_tensors_download_leaves_nothing_placed_and_the_next_clears_its_leftover(model, tmp_path):
    tensors = model_tensors(1, layers=8)
    write_model(model.repo_path / "model.bin", tensors)
    model.upload_model_checkpoint()
    model.tag_model_checkpoint()
    out = tmp_path / "out"
    args = ("model", "download", "v0.1", "--tensors", "lm_head.weight", "-o", str(out))
    assert _cpv(*args, cwd=model.repo_path, kill_at="download.tensors-written").returncode == KILLED_EXIT
    assert not (out / "model.bin").exists() and [p.name for p in out.iterdir() if p.name.endswith(".cpv-tmp")]
    done = _cpv(*args, cwd=model.repo_path)
    assert done.returncode == 0, done.stderr
    assert "left by an interrupted download" in done.stderr + done.stdout
    assert [p.name for p in out.iterdir()] == ["model.bin"]
    assert np.array_equal(load_file(str(out / "model.bin"))["lm_head.weight"], tensors["lm_head.weight"])
