"""The dvc-s3 storage backend and aws credentials against a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest

from cpv_core import AWSError, CredentialError, DataCheckpointsManage, DVCError, ModelsCheckpointsManage, ValidationError
from cpv_core.config import CPVConfig
from cpv_core.plugins import Plugins

from .helpers import S3_BUCKET, S3_SECRET_KEY, git, s3_client, s3_keys, write_aws_credentials, write_data_dir, write_model
from .test_history import cpv

pytestmark = pytest.mark.s3


def test_setup_stores_references_only_and_selects_dvc_s3(s3_config, cpv_home):
    text = (cpv_home / "config.json").read_text()
    assert S3_SECRET_KEY not in text and "AKIA" not in text
    assert s3_config.get_config("aws.profile") == "cpv-test"
    assert s3_config.backend_name("storage") == "dvc-s3"
    assert s3_config.backend_name("hosting") == "local"


def test_validate_passes_against_the_server(s3_config):
    report = s3_config.validate_credentials()
    names = {c.name: c.ok for c in report}
    assert report.ok, report.to_dict()
    assert names["aws.credentials"] and names["aws.bucket"] and names["aws.endpoint"]


def test_full_model_workflow_over_s3(s3_config, seaweed, tmp_path):
    team, model = "AI-Convo", "whisper-s3"
    a = ModelsCheckpointsManage(team, model)
    a.import_model_init()
    data = write_model(a.repo_path / "model.bin", 300_000)
    a.upload_model_checkpoint(metrics={"loss": 0.25, "wer": 0.04})
    assert a.tag_model_checkpoint(message="first") == "v0.1"

    keys = s3_keys(seaweed)
    ours = [k for k in keys if k.startswith(f"{team}/{model}/")]
    assert ours, keys
    md5 = hashlib.md5(data).hexdigest()
    assert any(k.endswith(md5[2:]) for k in ours)

    # another team member: fresh workspace and fresh DVC cache
    b = ModelsCheckpointsManage(team, model, repo_path=tmp_path / "member-b")
    b.import_model_init()
    assert b.read_checkpoint_tag() == ["v0.1"]
    art = b.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert Path(art.model_path).read_bytes() == data
    assert art.metrics == {"loss": 0.25, "wer": 0.04}

    # the remote URL is committed, credentials are not
    dvc_config = (a.repo_path / ".dvc" / "config").read_text()
    assert f"s3://{S3_BUCKET}/{team}/{model}" in dvc_config
    for path in (a.repo_path, b.repo_path):
        everything = git(path, "log", "-p", "--all") + (path / ".dvc" / "config").read_text()
        everything += (path / ".dvc" / "config.local").read_text()
        assert S3_SECRET_KEY not in everything


def test_objects_land_only_under_team_and_model(s3_config, seaweed):
    before = set(s3_keys(seaweed))
    m = ModelsCheckpointsManage("AI-Vision", "yolo")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 5000)
    m.upload_model_checkpoint()
    new = set(s3_keys(seaweed)) - before
    assert new and all(k.startswith("AI-Vision/yolo/") for k in new)


def test_two_teams_with_the_same_model_name_do_not_collide(s3_config, seaweed, tmp_path):
    one = ModelsCheckpointsManage("team-one", "shared-name")
    two = ModelsCheckpointsManage("team-two", "shared-name")
    for m, size in ((one, 1111), (two, 2222)):
        m.import_model_init()
        write_model(m.repo_path / "model.bin", size)
        m.upload_model_checkpoint()
        assert m.tag_model_checkpoint() == "v0.1"
    a1 = one.download_model_checkpoint("v0.1", output_dir=tmp_path / "1")
    a2 = two.download_model_checkpoint("v0.1", output_dir=tmp_path / "2")
    assert Path(a1.model_path).stat().st_size == 1111 and Path(a2.model_path).stat().st_size == 2222
    assert s3_keys(seaweed, prefix="team-one/shared-name/") and s3_keys(seaweed, prefix="team-two/shared-name/")


def test_wrong_secret_is_a_credential_error_and_nothing_is_committed(s3_config, seaweed, cpv_home, tmp_path):
    m = ModelsCheckpointsManage("AI-Convo", "wrong-secret")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 4000)
    # rotate the file to a wrong secret under another profile and point cpv at it
    home = Path(str(cpv_home).replace("cpv-home", "home"))
    creds = write_aws_credentials(home, profile="bad-profile", secret="not-the-right-secret")
    cfg = CPVConfig()
    cfg.setup_aws_profile(credential_path=creds, aws_profile="bad-profile", bucket=S3_BUCKET, endpoint_url=seaweed.endpoint)
    m = ModelsCheckpointsManage("AI-Convo", "wrong-secret")
    m.ws.storage.init()  # machine-local settings follow the config
    head = git(m.repo_path, "rev-parse", "HEAD")
    with pytest.raises(CredentialError) as err:
        m.upload_model_checkpoint(metrics={"loss": 1.0})
    assert "bad-profile" in err.value.message
    assert git(m.repo_path, "rev-parse", "HEAD") == head
    assert git(m.repo_path, "tag", "-l") == ""
    report = cfg.validate_credentials()
    failed = {c.name for c in report.failed()}
    assert failed == {"aws.credentials"}


def test_missing_bucket_is_reported_and_not_created(s3_config, seaweed):
    cfg = CPVConfig()
    cfg.set_config("aws.bucket", "no-such-bucket-cpv")
    report = cfg.validate_credentials()
    assert {c.name for c in report.failed()} == {"aws.bucket"}
    m = ModelsCheckpointsManage("AI-Convo", "nobucket")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000)
    with pytest.raises(AWSError) as err:
        m.upload_model_checkpoint()
    assert "'no-such-bucket-cpv' does not exist" in err.value.message
    buckets = [b["Name"] for b in s3_client(seaweed).list_buckets()["Buckets"]]
    assert "no-such-bucket-cpv" not in buckets


def test_stopped_server_fails_fast(s3_config, cpv_home):
    cfg = CPVConfig()
    cfg.set_config("aws.endpoint_url", "http://127.0.0.1:9")  # nothing listens on the discard port
    m = ModelsCheckpointsManage("AI-Convo", "down")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000)
    start = time.monotonic()
    with pytest.raises(AWSError) as err:
        m.upload_model_checkpoint()
    assert time.monotonic() - start < 15
    assert "unreachable" in err.value.message
    report = cfg.validate_credentials()
    assert [c.name for c in report.failed()] == ["aws.endpoint"]
    # hashing happened locally, but nothing was committed
    assert git(m.repo_path, "log", "--oneline").count("\n") == 1


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"credential_path": "/nonexistent/credentials"}, CredentialError),
        ({"aws_profile": "no-such-profile"}, CredentialError),
        ({"bucket": "Bad_Bucket"}, ValidationError),
        ({"endpoint_url": "ftp://x"}, ValidationError),
        ({"endpoint_url": "http://user:pw@host"}, ValidationError),
        ({"aws_profile": "bad profile\n[x]"}, ValidationError),
    ],
)
def test_bad_aws_setup_is_refused_and_changes_nothing(cpv_home, kwargs, exc):
    home = Path(str(cpv_home).replace("cpv-home", "home"))
    creds = write_aws_credentials(home)
    args = {"credential_path": creds, "aws_profile": "cpv-test"}
    args.update(kwargs)
    with pytest.raises(exc):
        CPVConfig().setup_aws_profile(**args)
    assert not (cpv_home / "config.json").exists()


def test_aws_provider_environment_names_files_not_secrets(s3_config):
    env = Plugins().credential_provider("aws").environment(s3_config)
    assert env["AWS_PROFILE"] == "cpv-test" and env["AWS_SHARED_CREDENTIALS_FILE"].endswith("credentials")
    assert S3_SECRET_KEY not in repr(env)
    assert "aws" in {p.name for p in Plugins().credential_providers()}  # cpv_credential_providers


def test_plain_dvc_can_pull_what_cpv_pushed(s3_config, seaweed, tmp_path):
    """What lands on S3 is a valid DVC remote."""

    m = ModelsCheckpointsManage("AI-Convo", "plain-dvc")
    m.import_model_init()
    data = write_model(m.repo_path / "model.bin", 12345)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    clone = plain_dvc_pull(m, "model/v0.1", tmp_path / "clone", s3_config, seaweed)
    assert (clone / "model.bin").read_bytes() == data


def plain_dvc_pull(m: ModelsCheckpointsManage, tag: str, clone: Path, s3_config, seaweed) -> Path:
    """What a plain git + DVC user does: clone the repository, check out ``tag``, ``dvc pull``."""
    import os
    import sys

    subprocess.run(["git", "clone", "-q", str(m.ws.hosting.remote_url()), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", tag], cwd=clone, check=True)
    env = dict(
        os.environ,
        AWS_SHARED_CREDENTIALS_FILE=s3_config.get_config("aws.credential_path"),
        AWS_PROFILE="cpv-test",
        AWS_ENDPOINT_URL_S3=seaweed.endpoint,
    )
    subprocess.run([sys.executable, "-m", "dvc", "pull", "-q"], cwd=clone, check=True, env=env, capture_output=True)
    return clone


def _run_in_pty(cmd: list[str], cwd: Path) -> str:
    """Run ``cmd`` with stdout/stderr on a pseudo-terminal; return what it printed."""
    import fcntl
    import os
    import select
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # rows, columns
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait()
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_and_plain_lines_in_a_pipe(s3_config, tmp_path):
    import sys

    m = ModelsCheckpointsManage("AI-Convo", "progress")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 40 * 1024 * 1024)
    cpv = [sys.executable, "-m", "cpv_core.cli"]
    out = _run_in_pty([*cpv, "model", "upload"], m.repo_path)
    assert "hash model.bin" in out and "upload model.bin" in out  # tqdm bars: bytes, rate, ETA (S3: hashed in place, no cache copy)
    assert "100%" in out and "B/s" in out and "\r" in out
    subprocess.run([*cpv, "model", "tag"], cwd=m.repo_path, check=True, capture_output=True)
    piped = subprocess.run(
        [*cpv, "model", "download", "v0.1", "-o", str(tmp_path / "o")], cwd=m.repo_path, capture_output=True, text=True, check=True
    )
    assert "download model.bin: 40.0 MiB in" in piped.stderr and "\r" not in piped.stderr and "%" not in piped.stderr
    quiet = subprocess.run(
        [*cpv, "-q", "model", "download", "v0.1", "-o", str(tmp_path / "q")], cwd=m.repo_path, capture_output=True, text=True, check=True
    )
    assert quiet.stderr == ""


def test_dvc_agrees_with_what_cpv_tracked(s3_config):
    """cpv hashes and caches single files itself: the pointer, the cache object and
    the .gitignore entry must be exactly what DVC expects (with `cache.copy true`,
    the layout a DVC user working in the workspace itself needs)."""
    import os
    import sys

    s3_config.set_config("cache.copy", "true")
    m = ModelsCheckpointsManage("AI-Convo", "dvc-agrees")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 123_456)
    m.upload_model_checkpoint()
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status"], cwd=m.repo_path, capture_output=True, text=True, env=dict(os.environ), check=True
    )
    assert "up to date" in status.stdout
    assert "/model.bin" in (m.repo_path / ".gitignore").read_text().splitlines()
    assert git(m.repo_path, "status", "--porcelain") == ""


def test_a_directory_model_over_s3_reaches_a_teammate_and_plain_dvc(s3_config, seaweed, tmp_path):

    from .test_model_forms import SHARDS, read_tree, write_hf_model

    team, model = "AI-Convo", "hf-s3"
    a = ModelsCheckpointsManage(team, model)
    a.import_model_init()
    files = write_hf_model(tmp_path / "whisper-hf")
    a.upload_model_checkpoint(model_path=tmp_path / "whisper-hf")
    assert a.tag_model_checkpoint() == "v0.1"
    keys_before = set(s3_keys(seaweed))
    (a.repo_path / "whisper-hf" / SHARDS[0]).write_bytes(b"new shard" * 1000)
    a.upload_model_checkpoint()
    assert len(set(s3_keys(seaweed)) - keys_before) == 2  # the changed shard and the new manifest

    b = ModelsCheckpointsManage(team, model, repo_path=tmp_path / "member-b")
    b.import_model_init()
    got = b.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert Path(got.model_path).name == "whisper-hf" and read_tree(Path(got.model_path)) == files

    clone = plain_dvc_pull(a, "model/v0.1", tmp_path / "clone", s3_config, seaweed)
    assert read_tree(clone / "whisper-hf") == files


def test_a_directory_of_small_files_and_one_large_one_downloads_whole_and_checked(s3_config, seaweed, tmp_path, monkeypatch):
    """Small files come several at a time, one GET each, hashed as they stream; a file
    above the multipart size in parallel ranged parts, hashed in order. A damaged small
    object is still named and nothing is placed."""
    from cpv_plugins import s3_transport

    d = DataCheckpointsManage("AI-Convo", "mixed")
    d.import_data_init()
    big = write_model(d.repo_path / "data" / "big.bin", s3_transport.SMALL_OBJECT_BYTES + 12345, seed=7)
    small = {f"part-{i}.txt": f"row {i}\n".encode() * 50 for i in range(40)}
    for name, content in small.items():
        (d.repo_path / "data" / name).write_bytes(content)
    d.upload_data_checkpoint()
    version = d.tag_data_checkpoint()
    got = Path(d.download_data_checkpoint(version, output_dir=tmp_path / "out").data_path)
    assert (got / "big.bin").read_bytes() == big and all((got / n).read_bytes() == c for n, c in small.items())
    victim = hashlib.md5(small["part-7.txt"]).hexdigest()
    s3_client(seaweed).put_object(Bucket=S3_BUCKET, Key=f"AI-Convo/mixed/files/md5/{victim[:2]}/{victim[2:]}", Body=b"tampered")
    with pytest.raises(DVCError, match="corrupt"):
        d.download_data_checkpoint(version, output_dir=tmp_path / "again")
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").rglob("*.txt"))


def test_gc_removes_pruned_objects_from_the_bucket_and_keeps_the_rest(s3_config, seaweed, tmp_path):
    from cpv_core import DataCheckpointsManage
    from cpv_core.retention import RetentionPolicy, collect_garbage, disk_usage

    team, model = "AI-Convo", "gc-s3"
    m = ModelsCheckpointsManage(team, model)
    m.import_model_init()
    for seed in (1, 2, 3):
        write_model(m.repo_path / "model.bin", 50_000, seed=seed)
        m.upload_model_checkpoint()
        m.tag_model_checkpoint()
    first = m.get_model_metadata("v0.1").digest.removeprefix("md5:")
    prefix = f"{team}/{model}/"
    assert any(k.endswith(first[2:]) for k in s3_keys(seaweed, prefix=prefix))
    both = [m, m.sibling(DataCheckpointsManage)]
    result = collect_garbage(both, RetentionPolicy(keep_last=2, grace_hours=0), dry_run=False)
    assert result.pruned["model"] == ["v0.1"] and result.freed == 50_000
    assert not any(k.endswith(first[2:]) for k in s3_keys(seaweed, prefix=prefix))
    assert m.verify("v0.2", remote=True) == [] and m.verify("v0.3", remote=True) == []
    usage = disk_usage(both)
    assert usage["total_bytes"] == 100_000 and usage["objects"] == 2


def test_the_bucket_s_team_model_prefixes_are_the_registry_s_models(s3_config, seaweed):
    from cpv_plugins.dvc_s3 import cpv_enumerate_models

    for team, model in (("Vision", "detector-s3"), ("Search", "ranker-s3")):
        m = ModelsCheckpointsManage(team, model)
        m.import_model_init()
        write_model(m.repo_path / "model.bin", 1000)
        m.upload_model_checkpoint()
    found = cpv_enumerate_models(s3_config)
    assert ("Vision", "detector-s3") in found and ("Search", "ranker-s3") in found


def cache_files(m: ModelsCheckpointsManage) -> list[str]:
    root = m.repo_path / ".dvc" / "cache" / "files"
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_an_s3_upload_keeps_no_second_local_copy_and_stays_verifiable(s3_config, seaweed, tmp_path):
    m = ModelsCheckpointsManage("AI-Convo", "no-copy")
    m.import_model_init()
    payload = write_model(m.repo_path / "model.bin", 3 * 1024 * 1024, seed=1)
    digest = m.upload_model_checkpoint(metrics={"loss": 0.5}).digest.removeprefix("md5:")
    assert cache_files(m) == []  # hashed where it is, uploaded from there
    assert s3_keys(seaweed, prefix="AI-Convo/no-copy/files/md5/") == [f"AI-Convo/no-copy/files/md5/{digest[:2]}/{digest[2:]}"]
    version = m.tag_model_checkpoint()
    assert m.verify(version) == [] and m.verify(version, remote=True) == []  # the local copy is the workspace file
    unsaved = write_model(m.repo_path / "model.bin", 1000, seed=2)
    # not cached here is not damage: the remote's copy is checked instead (exit 0, said so)
    assert m.verify(version) == []
    shown = cpv("verify", version, "-t", "AI-Convo", "--model-name", "no-copy").stdout
    assert "every file matches its hash in the local cache (1 not cached here: checked on the remote)" in shown
    m.revert_model_checkpoint(version, force=True)  # fetched from the bucket, verified
    assert (m.repo_path / "model.bin").read_bytes() == payload
    saved = m.ws.storage.objects("model.bin")  # the unsaved work was kept in the cache first, as documented
    assert [name for name in cache_files(m)] == [hashlib.md5(unsaved).hexdigest()[2:]] and saved == [digest]
    got = m.download_model_checkpoint(version, output_dir=tmp_path / "out")
    assert Path(got.model_path).read_bytes() == payload


def test_a_large_file_is_downloaded_part_by_part_checked_in_parallel_and_plain_dvc_still_pulls_it(
    s3_config, seaweed, tmp_path, monkeypatch
):
    """The upload records each part's SHA-256 in the pointer's meta (kept, ignored by DVC);
    a download fetches and checks the parts in parallel instead of one sequential MD5."""
    from cpv_plugins import part_digests, s3_transport
    from cpv_plugins.dvc_layout import parse_pointer

    monkeypatch.setattr(part_digests, "MIN_PART_SIZE", 1024 * 1024)
    m = ModelsCheckpointsManage("AI-Convo", "parts")
    m.import_model_init()
    payload = write_model(m.repo_path / "model.bin", 3 * 1024 * 1024 + 5, seed=3)
    m.upload_model_checkpoint()
    version = m.tag_model_checkpoint()
    recorded = parse_pointer((m.repo_path / "model.bin.dvc").read_bytes())["meta"]["cpv_parts"]
    assert recorded["part_size"] == 1024 * 1024 and recorded["digests"] == [
        hashlib.sha256(payload[i : i + 1024 * 1024]).hexdigest() for i in range(0, len(payload), 1024 * 1024)
    ]

    def whole_md5_not_expected(*args, **kwargs):
        raise AssertionError("the whole-file MD5 download was used")

    monkeypatch.setattr(s3_transport, "download_hashing", whole_md5_not_expected)
    got = m.download_model_checkpoint(version, output_dir=tmp_path / "out")
    assert Path(got.model_path).read_bytes() == payload
    clone = plain_dvc_pull(m, f"model/{version}", tmp_path / "clone", s3_config, seaweed)
    assert (clone / "model.bin").read_bytes() == payload

    # a smaller file replaces the model: no list is left behind naming the old one's parts
    write_model(m.repo_path / "model.bin", 1000, seed=4)
    m.upload_model_checkpoint()
    assert "meta" not in parse_pointer((m.repo_path / "model.bin.dvc").read_bytes())


def test_a_damaged_part_is_named_and_nothing_is_placed(s3_config, seaweed, tmp_path, monkeypatch):
    from cpv_plugins import part_digests

    monkeypatch.setattr(part_digests, "MIN_PART_SIZE", 1024 * 1024)
    m = ModelsCheckpointsManage("AI-Convo", "bad-part")
    m.import_model_init()
    payload = bytearray(write_model(m.repo_path / "model.bin", 4 * 1024 * 1024, seed=5))
    digest = m.upload_model_checkpoint().digest.removeprefix("md5:")
    version = m.tag_model_checkpoint()
    payload[2 * 1024 * 1024 + 7] ^= 0xFF  # same size, one byte of the third part changed on the store
    s3_client(seaweed).put_object(Bucket=S3_BUCKET, Key=f"AI-Convo/bad-part/files/md5/{digest[:2]}/{digest[2:]}", Body=bytes(payload))
    with pytest.raises(DVCError, match=r"part 3 of 4 \(bytes 2097152-3145727\) does not match"):
        m.download_model_checkpoint(version, output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "model.bin").exists()


def test_a_data_directory_over_s3_uploads_only_what_changed_without_a_cache_copy(s3_config, seaweed):
    d = DataCheckpointsManage("AI-Convo", "no-copy-data")
    d.import_data_init()
    write_data_dir(d.repo_path / "data", 6)
    d.upload_data_checkpoint()
    first = set(s3_keys(seaweed, prefix="AI-Convo/no-copy-data/"))
    (d.repo_path / "data" / "train" / "new.bin").write_bytes(b"n" * 5000)
    d.upload_data_checkpoint()
    added = set(s3_keys(seaweed, prefix="AI-Convo/no-copy-data/")) - first
    assert len(added) == 2 and sum(k.endswith(".dir") for k in added) == 1  # the new file and the new manifest
    assert all(name.endswith(".dir") for name in cache_files(d))  # only manifests are cached
    assert d.verify(d.tag_data_checkpoint(), remote=True) == []


def test_re_uploading_one_changed_file_of_a_large_directory_lists_nothing(s3_config, seaweed, monkeypatch, tmp_path):
    """The stored manifest of the version before vouches for its files: one changed file of
    a directory far above the HEAD limit costs a few HEAD requests, no listing of the bucket;
    a teammate's fresh clone, once it has downloaded, re-uploads the same way."""
    import os

    from cpv_plugins.s3_transport import HEAD_LIMIT, S3Transport

    d = DataCheckpointsManage("AI-Convo", "vouched-data")
    d.import_data_init()
    for i in range(HEAD_LIMIT * 3):
        f = d.repo_path / "data" / f"part-{i:03d}.bin"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(f"{i}".encode() * 50)
        os.utime(f, (1e9, 1e9))  # aged: the stat cache vouches for them next time
    d.upload_data_checkpoint()
    listings: list[str] = []
    real_listing = S3Transport._listing

    def counting(self):
        listings.append(self.prefix)
        return real_listing(self)

    monkeypatch.setattr(S3Transport, "_listing", counting)
    (d.repo_path / "data" / "part-007.bin").write_bytes(b"changed")
    d.upload_data_checkpoint()
    assert listings == []
    assert d.verify(d.tag_data_checkpoint(), remote=True) == []

    b = DataCheckpointsManage("AI-Convo", "vouched-data", repo_path=tmp_path / "member-b")
    b.import_data_init()
    b.revert_data_checkpoint("v0.1")  # every file is new to b's stat cache, but the stored manifest vouches for it
    (b.repo_path / "data" / "part-008.bin").write_bytes(b"changed by b")
    b.upload_data_checkpoint()
    assert listings == []
    assert b.verify(b.tag_data_checkpoint(), remote=True) == []


def test_a_file_changed_while_it_uploads_is_taken_back_and_nothing_is_committed(s3_config, seaweed, monkeypatch):
    """The upload reads the workspace file itself; a writer that changes it meanwhile
    (a training job still saving) must not leave bytes under a hash they do not have."""
    from cpv_plugins.s3_transport import S3Transport

    m = ModelsCheckpointsManage("AI-Convo", "moving")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 2 * 1024 * 1024, seed=1)
    head = git(m.repo_path, "rev-parse", "HEAD")
    real_put = S3Transport.put

    def put_while_written(self, oid, src, on_bytes):
        real_put(self, oid, src, on_bytes)
        with open(src, "r+b") as f:  # the job rewrites the file in place, as torch.save does
            f.write(b"epoch 2!")

    monkeypatch.setattr(S3Transport, "put", put_while_written)
    with pytest.raises(DVCError, match="model.bin changed while it was uploaded"):
        m.upload_model_checkpoint()
    assert s3_keys(seaweed, prefix="AI-Convo/moving/files/") == []
    assert git(m.repo_path, "rev-parse", "HEAD") == head
    monkeypatch.setattr(S3Transport, "put", real_put)
    m.upload_model_checkpoint()  # once written, the file uploads
    assert m.verify(m.tag_model_checkpoint(), remote=True) == []


class Killed(BaseException):
    """Stands for kill -9 at one instant: nothing after it in that process runs."""


def test_an_upload_killed_between_sending_and_checking_is_settled_by_the_next_push(s3_config, seaweed, monkeypatch, caplog):
    """Crash rule: the file was rewritten during the upload and the process died before its
    stat check; the bucket holds other bytes under the file's hash. The next push finds that
    (a journal names the unchecked object), removes it, and stores the true bytes."""
    import logging

    from cpv_plugins.s3_transport import S3Transport

    m = ModelsCheckpointsManage("AI-Convo", "killed-mid-check")
    m.import_model_init()
    original = write_model(m.repo_path / "model.bin", 2 * 1024 * 1024, seed=4)
    real_put = S3Transport.put

    def put_then_die(self, oid, src, on_bytes):
        with open(src, "r+b") as f:  # rewritten in place while it is sent (same size)
            f.write(b"epoch 2!")
        real_put(self, oid, src, on_bytes)
        raise Killed

    monkeypatch.setattr(S3Transport, "put", put_then_die)
    with pytest.raises(Killed):
        m.upload_model_checkpoint()
    monkeypatch.setattr(S3Transport, "put", real_put)
    (m.repo_path / "model.bin").write_bytes(original)  # the user puts the content back and uploads again
    m = ModelsCheckpointsManage("AI-Convo", "killed-mid-check")
    with caplog.at_level(logging.WARNING, logger="cpv.storage"):
        m.upload_model_checkpoint()
    assert "an upload killed before its check left" in caplog.text
    assert m.verify(m.tag_model_checkpoint(), remote=True) == []


def test_an_upload_checks_the_bucket_while_it_hashes_and_only_once(s3_config, seaweed, monkeypatch, tmp_path):
    """The pre-flight (boto3's import, the reachability and bucket checks) runs on
    another thread while the file is hashed; the push waits for it instead of
    making it again, and its error is still the upload's (test_stopped_server_fails_fast)."""
    import threading

    from cpv_plugins import s3_transport

    threads: list[str] = []
    real_preflight = s3_transport.preflight

    def recording(settings, prefix):
        threads.append(threading.current_thread().name)
        real_preflight(settings, prefix)

    monkeypatch.setattr(s3_transport, "preflight", recording)
    m = ModelsCheckpointsManage("AI-Convo", "prepared")
    m.import_model_init()
    threads.clear()
    write_model(m.repo_path / "model.bin", 3000)
    m.upload_model_checkpoint()
    assert threads == ["cpv-s3-prepare"]
    assert m.tag_model_checkpoint() == "v0.1"
    teammate = ModelsCheckpointsManage("AI-Convo", "prepared", repo_path=tmp_path / "teammate")
    teammate.import_model_init()
    teammate.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")  # nothing hashed first: checked in line
    assert threads == ["cpv-s3-prepare", threading.current_thread().name]


def test_an_unreachable_store_stops_the_upload_before_the_file_is_hashed(s3_config, cpv_home, monkeypatch):
    """The background check fails at once (nothing listens on the port): the hashing
    stops at its next chunk and the one-line error is the pre-flight's, nothing committed."""
    from cpv_plugins import part_digests
    from cpv_plugins.s3_transport import S3Transport

    CPVConfig().set_config("aws.endpoint_url", "http://127.0.0.1:9")
    m = ModelsCheckpointsManage("AI-Convo", "down-early")
    m.import_model_init()
    size = len(write_model(m.repo_path / "model.bin", 8 * 1024 * 1024))
    head = git(m.repo_path, "rev-parse", "HEAD")
    real_prepare, real_md5_stream = S3Transport.prepare, part_digests.md5_stream

    def prepare_and_let_it_finish(self):
        real_prepare(self)
        self._ready.exception(timeout=30)  # deterministic: the check has failed before hashing starts

    hashed: list[int] = []

    def counting(reader, writer=None, on_bytes=None):
        return real_md5_stream(reader, writer, lambda n: (hashed.append(n), on_bytes(n)))

    monkeypatch.setattr(S3Transport, "prepare", prepare_and_let_it_finish)
    monkeypatch.setattr(part_digests, "md5_stream", counting)  # a file below the part size is hashed by it
    with pytest.raises(AWSError, match="unreachable"):
        m.upload_model_checkpoint()
    assert len(hashed) == 1 and sum(hashed) < size  # stopped after its first chunk
    assert git(m.repo_path, "rev-parse", "HEAD") == head
    assert not (m.repo_path / "model.bin.dvc").exists()


def test_a_directory_model_s_large_shards_are_downloaded_part_by_part_checked_in_parallel(s3_config, seaweed, tmp_path, monkeypatch):
    """Each large entry's part digests go into the directory pointer's meta by MD5 (DVC
    ignores them); a download checks those parts as they stream instead of one sequential
    MD5 per shard; a damaged part is named; a replaced shard's parts are not kept."""
    from cpv_plugins import part_digests, s3_transport
    from cpv_plugins.dvc_layout import parse_pointer

    monkeypatch.setattr(part_digests, "MIN_PART_SIZE", 1024 * 1024)
    m = ModelsCheckpointsManage("AI-Convo", "hf-parts")
    m.import_model_init()
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "whisper"}')
    shards = {
        f"model-0000{i}-of-00002.safetensors": write_model(src / f"model-0000{i}-of-00002.safetensors", 3 * 1024 * 1024 + 5, seed=20 + i)
        for i in (1, 2)
    }
    m.upload_model_checkpoint(model_path=src)
    version = m.tag_model_checkpoint()
    recorded = parse_pointer((m.repo_path / "hf.dvc").read_bytes())["meta"]["cpv_entry_parts"]
    assert set(recorded) == {hashlib.md5(data).hexdigest() for data in shards.values()}
    for data in shards.values():
        entry = recorded[hashlib.md5(data).hexdigest()]
        assert entry["size"] == len(data) and entry["digests"] == [
            hashlib.sha256(data[i : i + 1024 * 1024]).hexdigest() for i in range(0, len(data), 1024 * 1024)
        ]

    def whole_md5_not_expected(*args, **kwargs):
        raise AssertionError("the whole-file MD5 download was used for a shard")

    monkeypatch.setattr(s3_transport, "download_hashing", whole_md5_not_expected)
    teammate = ModelsCheckpointsManage("AI-Convo", "hf-parts", repo_path=tmp_path / "teammate")
    teammate.import_model_init()
    got = Path(teammate.download_model_checkpoint(version, output_dir=tmp_path / "out").model_path)
    assert {name: (got / name).read_bytes() for name in shards} == shards
    clone = plain_dvc_pull(m, f"model/{version}", tmp_path / "clone", s3_config, seaweed)
    assert all((clone / "hf" / name).read_bytes() == data for name, data in shards.items())

    first, second = sorted(shards)
    damaged = bytearray(shards[first])
    damaged[1024 * 1024 + 3] ^= 0xFF
    oid = hashlib.md5(shards[first]).hexdigest()
    s3_client(seaweed).put_object(Bucket=S3_BUCKET, Key=f"AI-Convo/hf-parts/files/md5/{oid[:2]}/{oid[2:]}", Body=bytes(damaged))
    with pytest.raises(DVCError, match=rf"{first} is corrupt: part 2 of 4"):
        teammate.download_model_checkpoint(version, output_dir=tmp_path / "again")

    changed = write_model(m.repo_path / "hf" / second, 3 * 1024 * 1024 + 5, seed=99)
    m.upload_model_checkpoint()
    recorded = parse_pointer((m.repo_path / "hf.dvc").read_bytes())["meta"]["cpv_entry_parts"]
    # the new shard's parts, never the replaced one's; the unchanged shard has its parts only
    # if it was read again (a file the stat cache vouches for is not)
    assert hashlib.md5(changed).hexdigest() in recorded and hashlib.md5(shards[second]).hexdigest() not in recorded
    assert set(recorded) <= {hashlib.md5(changed).hexdigest(), oid}


def _hf_dir(root: Path, shard_bytes: int, seed: int) -> dict[str, bytes]:
    root.mkdir(exist_ok=True)
    (root / "config.json").write_text('{"model_type": "whisper"}')
    return {
        f"model-0000{i}-of-00003.safetensors": write_model(root / f"model-0000{i}-of-00003.safetensors", shard_bytes, seed=seed + i)
        for i in (1, 2, 3)
    }


def test_a_directory_s_large_files_are_sent_while_the_rest_is_hashed_and_the_push_confirms_them(s3_config, seaweed, tmp_path, monkeypatch):
    """Each shard is sent as soon as it is hashed (on the early-upload threads); the push then
    finds them stored and sends only the rest. A send that fails early is redone by the push."""
    import threading

    from cpv_plugins.s3_transport import S3Transport

    real_put = S3Transport.put
    sent: list[tuple[str, str]] = []
    failed_once: set[str] = set()

    def recording_put(self, oid, src, on_bytes):
        thread = threading.current_thread().name
        if thread.startswith("cpv-early-upload") and oid not in failed_once and len(failed_once) < 1:
            failed_once.add(oid)
            raise ConnectionError("the network dropped this early send")
        sent.append((Path(src).name, thread))
        real_put(self, oid, src, on_bytes)

    monkeypatch.setattr(S3Transport, "put", recording_put)
    m = ModelsCheckpointsManage("AI-Convo", "early")
    m.import_model_init()
    shards = _hf_dir(tmp_path / "hf", 9 * 1024 * 1024, seed=40)
    m.upload_model_checkpoint(model_path=tmp_path / "hf")
    early = sorted(name for name, thread in sent if thread.startswith("cpv-early-upload"))
    late = sorted(name for name, thread in sent if not thread.startswith("cpv-early-upload"))
    assert len(failed_once) == 1 and len(early) == 2  # two shards sent early, one early send failed
    manifests = [name for name in late if name.endswith(".dir")]
    assert len(manifests) == 1 and sorted({*early, *late} - {*manifests, "config.json"}) == sorted(shards)
    assert "config.json" in late and len(late) == 3  # the small file, the failed shard, the manifest last
    version = m.tag_model_checkpoint()
    assert m.verify(version, remote=True) == []
    teammate = ModelsCheckpointsManage("AI-Convo", "early", repo_path=tmp_path / "teammate")
    teammate.import_model_init()
    got = Path(teammate.download_model_checkpoint(version, output_dir=tmp_path / "out").model_path)
    assert {name: (got / name).read_bytes() for name in shards} == shards


def test_a_shard_rewritten_before_its_early_send_is_refused_by_the_push_and_never_stored(s3_config, seaweed, tmp_path, monkeypatch):
    from cpv_plugins.dvc_storage import DvcStorage

    m = ModelsCheckpointsManage("AI-Convo", "early-changed")
    m.import_model_init()
    _hf_dir(m.repo_path / "hf", 9 * 1024 * 1024, seed=50)
    m.upload_model_checkpoint(model_path=m.repo_path / "hf")
    head = git(m.repo_path, "rev-parse", "HEAD")
    shards = _hf_dir(m.repo_path / "hf", 9 * 1024 * 1024, seed=60)
    victim = m.repo_path / "hf" / sorted(shards)[0]
    hashed_md5 = hashlib.md5(shards[victim.name]).hexdigest()
    real_send = DvcStorage._send_early

    def training_job_still_writing(self, oid):
        if oid == hashed_md5:
            with open(victim, "ab") as handle:
                handle.write(b"one more step")
        real_send(self, oid)

    monkeypatch.setattr(DvcStorage, "_send_early", training_job_still_writing)
    with pytest.raises(DVCError, match=rf"hf/{victim.name} changed after it was hashed; nothing was uploaded"):
        m.upload_model_checkpoint()
    assert git(m.repo_path, "rev-parse", "HEAD") == head
    assert not any(k.endswith(hashed_md5[2:]) for k in s3_keys(seaweed))


def _crafted_prefix_pointer(m, payload: bytes, keep: int) -> str:
    """A teammate's pointer naming the uploaded version's MD5 with ``keep`` as its size and
    a parts list that covers the first ``keep`` bytes of ``payload`` (committed, tagged v9.0)."""
    import hashlib

    from cpv_plugins.dvc_layout import read_pointer, write_pointer
    from cpv_plugins.part_digests import PartDigests, part_size_for

    md5 = read_pointer(m.repo_path, "model.bin").digest.removeprefix("md5:")
    part = part_size_for(keep)
    digests = tuple(hashlib.sha256(payload[i : min(keep, i + part)]).hexdigest() for i in range(0, keep, part))
    write_pointer(m.repo_path, "model.bin", md5, keep, None, PartDigests(keep, part, digests))
    git(m.repo_path, "commit", "-qam", "crafted")
    git(m.repo_path, "tag", "model/v9.0")
    git(m.repo_path, "push", "-q", "origin", "HEAD:refs/heads/main", "refs/tags/model/v9.0")
    return "v9.0"


def test_a_parts_list_for_a_prefix_cannot_make_a_download_place_a_truncated_file(s3_config, seaweed, tmp_path, monkeypatch):
    from cpv_plugins import part_digests

    monkeypatch.setattr(part_digests, "MIN_PART_SIZE", 1024 * 1024)
    m = ModelsCheckpointsManage("AI-Convo", "prefix-parts")
    m.import_model_init()
    payload = write_model(m.repo_path / "model.bin", 5 * 1024 * 1024, seed=3)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    crafted = _crafted_prefix_pointer(m, payload, 3 * 1024 * 1024 + 5)
    bob = ModelsCheckpointsManage("AI-Convo", "prefix-parts", repo_path=tmp_path / "bob")
    bob.import_model_init()
    with pytest.raises(DVCError, match="its pointer records 3145733 bytes but the stored object has 5242880"):
        bob.download_model_checkpoint(crafted, output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "model.bin").exists()
    problems = bob.verify(crafted, remote=True)
    assert any("records 3145733 bytes but the stored object" in p for p in problems)


def test_a_parts_list_made_for_other_bytes_cannot_vouch_for_them(s3_config, seaweed, tmp_path, monkeypatch):
    """The store's object replaced by other bytes of the same length, with a pointer whose
    parts list describes those bytes: every part matches, the whole MD5 does not."""
    import hashlib

    from cpv_plugins import part_digests

    monkeypatch.setattr(part_digests, "MIN_PART_SIZE", 1024 * 1024)
    m = ModelsCheckpointsManage("AI-Convo", "other-parts")
    m.import_model_init()
    payload = write_model(m.repo_path / "model.bin", 4 * 1024 * 1024, seed=4)
    digest = m.upload_model_checkpoint().digest.removeprefix("md5:")
    other = bytes(b ^ 0x5A for b in payload)
    s3_client(seaweed).put_object(Bucket=S3_BUCKET, Key=f"AI-Convo/other-parts/files/md5/{digest[:2]}/{digest[2:]}", Body=other)
    crafted = _crafted_prefix_pointer(m, other, len(other))
    bob = ModelsCheckpointsManage("AI-Convo", "other-parts", repo_path=tmp_path / "bob")
    bob.import_model_init()
    with pytest.raises(DVCError, match=f"expected md5 {digest}, got {hashlib.md5(other).hexdigest()}"):
        bob.download_model_checkpoint(crafted, output_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "model.bin").exists()


def test_incomplete_multipart_uploads_are_counted_by_du_and_aborted_by_gc(s3_config, seaweed):
    """What `kill -9` during a multipart upload leaves: an upload with a stored part, never
    completed. du reports its bytes; gc aborts it once older than the grace, not before."""
    import json as json_module

    from cpv_core.retention import RetentionPolicy, collect_garbage

    team, model = "AI-Convo", "killed-multipart"
    m = ModelsCheckpointsManage(team, model)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 3000, seed=1)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    client = s3_client(seaweed)
    key = f"{team}/{model}/files/md5/ab/{'c' * 30}"
    upload = client.create_multipart_upload(Bucket=S3_BUCKET, Key=key)["UploadId"]
    client.upload_part(Bucket=S3_BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 70_000)
    usage = json_module.loads(cpv("du", "--json", "-t", team, "--model-name", model).stdout)
    assert usage["incomplete_uploads"] == 1 and usage["incomplete_upload_bytes"] == 70_000
    assert (
        "incomplete uploads (parts the store bills until `cpv gc` aborts them): 1, 68.4 KiB"
        in cpv("du", "-t", team, "--model-name", model).stdout
    )
    both = [m, m.sibling(DataCheckpointsManage)]
    assert collect_garbage(both, RetentionPolicy(keep_last=1), dry_run=False).aborted_uploads == 0  # younger than 24 h
    assert [u["UploadId"] for u in client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=f"{team}/{model}/").get("Uploads", [])] == [
        upload
    ]
    result = collect_garbage(both, RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
    assert (result.aborted_uploads, result.aborted_bytes) == (1, 70_000)
    assert client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=f"{team}/{model}/").get("Uploads", []) == []
    assert m.verify("v0.1", remote=True) == []


def test_verify_reports_damage_only_for_real_damage(s3_config, seaweed):
    m = ModelsCheckpointsManage("AI-Convo", "verify-real")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 3000, seed=1)
    digest = m.upload_model_checkpoint().digest.removeprefix("md5:")
    version = m.tag_model_checkpoint()
    write_model(m.repo_path / "model.bin", 3000, seed=2)  # the workspace no longer holds it; nothing cached
    s3_client(seaweed).delete_object(Bucket=S3_BUCKET, Key=f"AI-Convo/verify-real/files/md5/{digest[:2]}/{digest[2:]}")
    assert m.verify(version) == [f"model.bin: neither cached here nor on the remote (md5 {digest})"]
    result = cpv("verify", version, "-t", "AI-Convo", "--model-name", "verify-real", expect=12)
    assert "DAMAGED model.bin: neither cached here nor on the remote" in result.stdout


def test_a_directory_upload_reports_the_bytes_it_sent_early_and_what_was_already_stored(s3_config, seaweed, tmp_path):
    """Shards sent while the rest was hashed count as sent (they were reported as 1.3 KiB
    in 0.0 s); a re-upload says what the store already had."""
    m = ModelsCheckpointsManage("AI-Convo", "early-bytes")
    m.import_model_init()
    _hf_dir(tmp_path / "hf", 9 * 1024 * 1024, seed=41)
    args = ["-t", "AI-Convo", "--model-name", "early-bytes"]
    first = cpv("model", "upload", str(tmp_path / "hf"), *args).stderr
    line = next(x for x in first.splitlines() if x.startswith("upload hf: "))
    sent = float(line.split("upload hf: ")[1].split(" MiB")[0])
    assert sent >= 27.0, line  # three 9 MiB shards, whether sent early or by the push
    assert "already stored" not in line
    (m.repo_path / "hf" / "config.json").write_text('{"changed": true}')
    again = cpv("model", "upload", *args).stderr
    line = next(x for x in again.splitlines() if x.startswith("upload hf: "))
    assert "MiB already stored" in line and not line.split("upload hf: ")[1].startswith(("27", "28")), line


def test_download_include_fetches_only_the_matching_files_of_a_directory_model(s3_config, seaweed, tmp_path):
    m = ModelsCheckpointsManage("AI-Convo", "include")
    m.import_model_init()
    shards = _hf_dir(tmp_path / "hf", 300_000, seed=50)
    (tmp_path / "hf" / "tokenizer.json").write_text("{}")
    m.upload_model_checkpoint(model_path=tmp_path / "hf")
    version = m.tag_model_checkpoint()
    args = ["-t", "AI-Convo", "--model-name", "include"]
    got = Path(
        cpv(
            "model", "download", version, "--include", "config.json,*-00002-of-00003.safetensors", "-o", str(tmp_path / "o"), *args
        ).stdout.strip()
    )
    assert sorted(p.name for p in got.iterdir()) == ["config.json", "model-00002-of-00003.safetensors"]
    assert (got / "model-00002-of-00003.safetensors").read_bytes() == shards["model-00002-of-00003.safetensors"]
    art = m.download_model_checkpoint(version, tmp_path / "p", include=["*.safetensors"])
    assert sorted(p.name for p in Path(art.model_path).iterdir()) == sorted(shards)
    refused = cpv("model", "download", version, "--include", "*.bin", "-o", str(tmp_path / "none"), *args, expect=2).output
    assert "matches no file of model v0.1" in refused and "tokenizer.json" in refused and not (tmp_path / "none").exists()


def test_a_checkpointer_whose_store_is_unreachable_fails_at_construction_in_one_line(s3_config, seaweed, tmp_path):
    """Before the first epoch, not as a traceback at the second save()."""
    import subprocess
    import sys

    from cpv_core.config import CPVConfig

    CPVConfig().set_config("aws.endpoint_url", "http://127.0.0.1:9")  # nothing listens there
    script = (
        "from cpv_core import Checkpointer\n"
        "from cpv_core.errors import CPVError\n"
        "try:\n"
        "    Checkpointer('AI-Convo', 'unreachable')\n"
        "except CPVError as exc:\n"
        "    print('refused:', exc.message)\n"
        "    raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("refused: the Checkpointer cannot reach what AI-Convo/unreachable is stored on:")
    assert "Traceback" not in done.stderr and len(done.stdout.strip().splitlines()) == 1
