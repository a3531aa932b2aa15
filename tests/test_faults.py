"""Team-safe and fault-tolerant: concurrent versions, interruptions, integrity,
hostile input and secrets, against the real S3 server and sshd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cpv_core import ModelsCheckpointsManage, ValidationError
from cpv_core.errors import DVCError, WorkspaceLockedError
from cpv_core.faults import KILL_ENV, KILLED_EXIT

from .helpers import S3_BUCKET, S3_SECRET_KEY, git, s3_client, s3_keys, tree_state, write_model

CPV = [sys.executable, "-m", "cpv_core.cli"]


def upload_and_tag(ws: Path, run: int) -> subprocess.Popen:
    """A member's `cpv model upload --metrics '{"run": N}' && cpv model tag`, started in the background."""
    cli = f"{sys.executable} -m cpv_core.cli"
    script = f"{cli} model upload --metrics '{{\"run\": {run}}}' && {cli} model tag"
    return subprocess.Popen(["bash", "-c", script], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cpv(*args: str, cwd: Path | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([*CPV, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def new_model(team: str, model: str, size: int = 0, **kwargs) -> ModelsCheckpointsManage:
    """An initialised workspace, with ``size`` random bytes in model.bin when size > 0."""
    m = ModelsCheckpointsManage(team, model, **kwargs)
    m.import_model_init()
    if size:
        write_model(m.repo_path / "model.bin", size)
    return m


def write_large(path: Path, chunks: int = 24) -> str:
    """``chunks`` x 8 MiB of random bytes (big enough to interrupt); returns their MD5."""
    import hashlib

    digest = hashlib.md5()
    with open(path, "wb") as f:
        for _ in range(chunks):
            chunk = os.urandom(8 * 1024 * 1024)
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


@pytest.fixture
def remote(s3_config, bitbucket_config, sshd):
    team, model = f"team-{uuid.uuid4().hex[:8]}", "model"
    bare = sshd.create_repo("ai-team", f"{team}-{model}")
    return team, model, bare


@pytest.mark.s3
@pytest.mark.ssh
@pytest.mark.slow
def test_concurrent_auto_tagging_gives_distinct_consecutive_versions(remote, tmp_path):
    team, model, bare = remote
    n = 4
    first = new_model(team, model, repo_path=tmp_path / "ws0")
    workspaces = [first.repo_path]
    for i in range(1, n):
        m = new_model(team, model, repo_path=tmp_path / f"ws{i}")
        workspaces.append(m.repo_path)
    for i, ws in enumerate(workspaces):
        write_model(ws / "model.bin", 10_000 + i, seed=i)
    procs = [upload_and_tag(ws, i) for i, ws in enumerate(workspaces)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    versions = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert versions == [f"v0.{i}" for i in range(1, n + 1)]
    tags = git(bare, "tag", "-l", "model/*").split()
    assert sorted(tags) == [f"model/v0.{i}" for i in range(1, n + 1)]
    commits = {git(bare, "rev-list", "-n1", t).strip() for t in tags}
    assert len(commits) == n  # every version points at its own commit
    # each version's metadata names the run that created it
    runs = {ModelsCheckpointsManage(team, model, repo_path=workspaces[0]).get_model_metadata(v).metrics["run"] for v in versions}
    assert runs == set(range(n))


def test_explicit_duplicate_version_is_a_clear_error(cpv_home):
    m = new_model("T", "dup")
    write_model(m.repo_path / "model.bin", 100)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint(version_tag="v1.0")
    write_model(m.repo_path / "model.bin", 200)
    m.upload_model_checkpoint()
    result = cpv("model", "tag", "--version", "v1.0", cwd=m.repo_path, check=False)
    assert result.returncode == 9 and "already exists on the remote: model v1.0" in result.stderr


def test_second_process_waits_then_fails_clearly_and_a_killed_holder_frees_the_lock(cpv_home):
    m = new_model("T", "locked")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire(); "
                "print('locked', flush=True); time.sleep(600)"
            ),
            str(m.repo_path / ".cpv" / "lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    write_model(m.repo_path / "model.bin", 100)
    env = dict(os.environ, CPV_LOCK_TIMEOUT="1")
    # waits, says so, then gives up (timeout= only guards against a hang)
    result = subprocess.run([*CPV, "model", "upload"], cwd=m.repo_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == WorkspaceLockedError.exit_code
    assert "waiting up to 1 s" in result.stderr and "in use by another cpv process" in result.stderr
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    cpv("model", "upload", cwd=m.repo_path)
    assert cpv("model", "tag", cwd=m.repo_path).stdout.strip() == "v0.1"


@pytest.mark.s3
@pytest.mark.ssh
def test_sigkill_during_upload_then_rerun_completes(remote, seaweed, tmp_path):
    team, model, bare = remote
    m = new_model(team, model)
    write_large(m.repo_path / "model.bin")
    proc = subprocess.Popen(
        [*CPV, "model", "upload", "--metrics", '{"loss": 0.1}'], cwd=m.repo_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "model/" not in git(bare, "tag", "-l")  # no version can point at incomplete data
    cpv("model", "upload", "--metrics", '{"loss": 0.1}', cwd=m.repo_path)
    assert cpv("model", "tag", cwd=m.repo_path).stdout.strip() == "v0.1"
    assert git(m.repo_path, "status", "--porcelain") == ""
    other = new_model(team, model, repo_path=tmp_path / "other")
    art = other.download_model_checkpoint("v0.1", output_dir=tmp_path / "dl")
    assert Path(art.model_path).read_bytes() == (m.repo_path / "model.bin").read_bytes()


@pytest.mark.s3
@pytest.mark.ssh
def test_sigkill_during_download_leaves_no_partial_file(remote, tmp_path):
    team, model, _ = remote
    m = new_model(team, model)
    write_large(m.repo_path / "model.bin")
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    other = new_model(team, model, repo_path=tmp_path / "other")
    out = tmp_path / "out"
    # killed (os._exit, as kill -9: no cleanup) once the first part is on disk, however fast the transfer
    killed = subprocess.run(
        [*CPV, "model", "download", "v0.1", "-o", str(out)],
        cwd=other.repo_path,
        env={**os.environ, KILL_ENV: "download.part-written"},
        capture_output=True,
    )
    assert killed.returncode == KILLED_EXIT
    assert not (out / "model.bin").exists()
    art = other.download_model_checkpoint("v0.1", output_dir=out)  # a re-run completes and cleans up
    assert Path(art.model_path).stat().st_size == 24 * 8 * 1024 * 1024
    assert [p.name for p in out.iterdir()] == ["model.bin"]


@pytest.mark.s3
@pytest.mark.ssh
def test_corrupted_remote_object_is_reported_and_nothing_is_placed(remote, seaweed, tmp_path):
    team, model, _ = remote
    m = new_model(team, model, 50_000)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    assert m.verify("v0.1", remote=True) == []
    (key,) = s3_keys(seaweed, prefix=f"{team}/{model}/files/")
    client = s3_client(seaweed)
    body = bytearray(client.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read())
    body[1234] ^= 0xFF
    client.put_object(Bucket=S3_BUCKET, Key=key, Body=bytes(body))

    problems = m.verify("v0.1", remote=True)
    assert len(problems) == 1 and key.split("/", 2)[-1] in problems[0] and "corrupt" in problems[0]
    other = new_model(team, model, repo_path=tmp_path / "other")
    before = tree_state(other.repo_path)
    with pytest.raises(DVCError) as err:
        other.download_model_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert key.split("/")[-1] in err.value.message and "corrupt" in err.value.message
    assert not (tmp_path / "out" / "model.bin").exists()
    assert tree_state(other.repo_path) == before
    result = cpv("verify", "v0.1", "--remote", cwd=m.repo_path, check=False)
    assert result.returncode == 12 and "DAMAGED" in result.stdout


HOSTILE_NAMES = [
    "../escape",
    "-rf",
    "--upload-pack=touch /tmp/pwned",
    "a/b",
    "a b",
    "x\nInjected",
    ".hidden",
    "con",
    "x" * 65,
    "ext::sh -c touch% /tmp/pwned",
    "HEAD",
    "name.lock",
]
HOSTILE_TAGS = ["--force", "-v0.1", "v1.0;rm -rf", "v1.0\n", "refs/tags/v1.0", "v1.0:refs/heads/main", "../v1.0", "v1.0.0"]


@pytest.mark.s3
@pytest.mark.ssh
def test_hostile_names_and_tags_are_rejected_before_any_io(remote, seaweed, sshd, cpv_home):
    team, model, _ = remote
    m = new_model(team, model, 1000)
    m.upload_model_checkpoint()
    state = lambda: (tree_state(cpv_home, sshd.root), sorted(s3_keys(seaweed)))  # noqa: E731
    before = state()
    for bad in HOSTILE_NAMES:
        with pytest.raises(ValidationError) as err:
            ModelsCheckpointsManage(bad, "model").import_model_init()
        assert "characters from" in err.value.fix
        with pytest.raises(ValidationError):
            ModelsCheckpointsManage(team, bad).import_model_init()
        result = cpv("init", "model", "-t", team, "-m", bad, check=False)
        assert result.returncode == 2
    for bad in HOSTILE_TAGS:
        with pytest.raises(ValidationError):
            m.tag_model_checkpoint(version_tag=bad)
        with pytest.raises(ValidationError):
            m.download_model_checkpoint(bad)
        with pytest.raises(ValidationError):
            m.revert_model_checkpoint(bad)
    assert state() == before
    assert not Path("/tmp/pwned").exists()


def test_hostile_remote_urls_are_refused():
    from cpv_plugins.gitutil import validate_remote_url

    for url in ("--upload-pack=evil", "-oProxyCommand=x", "ext::sh -c evil", "EXT::x", "fd::17"):
        with pytest.raises(ValidationError):
            validate_remote_url(url)
    assert validate_remote_url("ssh://git@host:443/ws/repo.git")


@pytest.mark.s3
@pytest.mark.ssh
def test_canary_secret_never_leaks(remote, seaweed, cpv_home, tmp_path):
    team, model, bare = remote
    m = new_model(team, model, 3000)
    runs = [
        cpv("-v", "model", "upload", "--metrics", '{"loss": 1}', cwd=m.repo_path),
        cpv("-v", "model", "tag", cwd=m.repo_path),
        cpv("-v", "validate"),
        cpv("config", "show", "--json"),
    ]
    # a forced failure, verbose: the bucket does not exist
    cpv("config", "set", "aws.bucket", "missing-bucket-x")
    write_model(m.repo_path / "model.bin", 3100)
    failed = cpv("-v", "model", "upload", cwd=m.repo_path, check=False)
    assert failed.returncode != 0 and "missing-bucket-x" in failed.stderr
    runs.append(failed)
    for r in runs:
        assert S3_SECRET_KEY not in r.stdout + r.stderr
    for root in (cpv_home, m.repo_path, bare):
        for p in root.rglob("*"):
            if p.is_file():
                assert S3_SECRET_KEY.encode() not in p.read_bytes(), p
    objects = git(m.repo_path, "log", "-p", "--all") + git(bare, "log", "-p", "--all")
    assert S3_SECRET_KEY not in objects
    for tag in git(bare, "tag", "-l").split():
        assert S3_SECRET_KEY not in git(bare, "cat-file", "-p", tag)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_upload_never_loses_the_model_file(cpv_home, sig):
    """DVC moves the file into its cache and copies it back; an interruption in
    between must not leave the workspace without the user's model."""
    import hashlib

    m = new_model("T", "interrupted")
    expected = write_large(m.repo_path / "model.bin", 25)
    proc = subprocess.Popen([*CPV, "model", "upload"], cwd=m.repo_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until_it_holds_the_lock(m.repo_path, proc)  # a signal during Python's own start-up tests nothing of cpv's
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT and proc.returncode != 0:
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
        assert (m.repo_path / "model.bin").exists()
    cpv("model", "upload", cwd=m.repo_path)  # re-running completes (and repairs after SIGKILL)
    assert hashlib.md5((m.repo_path / "model.bin").read_bytes()).hexdigest() == expected
    assert not [p.name for p in m.repo_path.iterdir() if p.name.endswith((".cpv-keep", ".tmp", ".cpv-tmp"))]
    assert cpv("model", "tag", cwd=m.repo_path).stdout.strip() == "v0.1"


def wait_until_it_holds_the_lock(workspace: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Return once ``proc`` holds the workspace lock (cpv's main() is running)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(workspace / ".cpv" / "lock"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return
        lock.release()
        time.sleep(0.02)
    raise AssertionError("the upload never took the workspace lock")


SOAK_MEMBERS = 8
SOAK_ROUNDS = int(os.environ.get("CPV_SOAK_ROUNDS", "10"))


def test_soak_eight_members_upload_and_tag_at_once_repeatedly(remote, tmp_path):
    """8 members upload and tag the same model at the same moment, round after
    round, over the real sshd: every exit 0, 8 distinct versions per round, and
    every version holds exactly the bytes its member uploaded (no lost update).
    In an atomic push the refs that did not fail themselves are reported
    'atomic transaction failed'; that is a race and must be retried."""
    import hashlib

    team, model, bare = remote
    workspaces = [new_model(team, model, repo_path=tmp_path / f"ws{i}").repo_path for i in range(SOAK_MEMBERS)]
    expected: dict[int, str] = {}
    seen: set[str] = set()
    for round_ in range(SOAK_ROUNDS):
        procs = []
        for i, ws in enumerate(workspaces):
            run = round_ * SOAK_MEMBERS + i
            data = write_model(ws / "model.bin", 5_000 + run, seed=run)
            expected[run] = hashlib.md5(data).hexdigest()
            procs.append(upload_and_tag(ws, run))
        outputs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for p, (_, err) in zip(procs, outputs) if p.returncode != 0]
        versions = {out.strip().splitlines()[-1] for out, _ in outputs}
        assert len(versions) == SOAK_MEMBERS and not versions & seen
        seen |= versions
    reader = ModelsCheckpointsManage(team, model, repo_path=workspaces[0])
    records = reader.list_checkpoints()
    assert {r.version for r in records} == seen
    for record in records:
        assert record.digest == f"md5:{expected[record.metrics['run']]}", record.version
