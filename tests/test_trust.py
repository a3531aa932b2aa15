"""The trust boundary on the local default: a teammate with push access (or a
tampered store) crafts what cpv reads; every reproduction of the trust issue
is here. Each test asserts a one-line error (or a harmless success) and that
nothing outside the workspace changed (a canary tree with a fake ~/.ssh)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cpv_core import CPVError, DataCheckpointsManage, ModelsCheckpointsManage, ValidationError
from cpv_core.errors import ConfigError, GitError

from .helpers import git, tree_state, write_data_dir, write_model

TEAM, MODEL = "AI-Convo", "whisper"
CPV = [sys.executable, "-m", "cpv_core.cli"]


def cpv(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CPV, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(result: subprocess.CompletedProcess, code: int | None = None) -> str:
    """The error of a failed command: no traceback, an 'error:' line with a fix line."""
    assert result.returncode != 0, result.stdout
    if code is not None:
        assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") or "\nerror: " in result.stderr, result.stderr
    return result.stderr


@pytest.fixture
def canary(tmp_path) -> Path:
    """Files a hostile repository must never touch: a fake ~/.ssh and a thesis."""
    home = Path(os.environ["HOME"])
    (home / ".ssh").mkdir(exist_ok=True)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA me@laptop\n")
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious\n")
    (home / "victim.txt").write_text("do not delete\n")
    return tmp_path


def outside_state(canary: Path) -> dict[str, str]:
    home = Path(os.environ["HOME"])
    return {**tree_state(canary / "thesis"), **tree_state(home / ".ssh"), **tree_state(home / "victim.txt")}


def bare_repo(cpv_home: Path) -> Path:
    return cpv_home / "local" / "git" / TEAM / f"{MODEL}.git"


def store(cpv_home: Path) -> Path:
    return cpv_home / "local" / "storage" / TEAM / MODEL


@pytest.fixture
def victim(cpv_home, tmp_path) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 2048, seed=1)
    m.upload_model_checkpoint(metrics={"loss": 0.5})
    m.tag_model_checkpoint()
    return m


@pytest.fixture
def mallory(victim, cpv_home, tmp_path) -> Path:
    """A plain git clone of the model's repository, as a teammate with push access has."""
    path = tmp_path / "mallory"
    subprocess.run(["git", "clone", "-q", str(bare_repo(cpv_home)), str(path)], check=True)
    git(path, "config", "user.name", "Mallory")
    git(path, "config", "user.email", "m@example.com")
    return path


def push(repo: Path, message: str = "innocent", *refs: str) -> None:
    git(repo, "add", "-A", "-f")
    git(repo, "commit", "-q", "-m", message)
    git(repo, "push", "-q", "origin", "HEAD:refs/heads/main", *refs)


def plant_object(cpv_home: Path, data: bytes, suffix: str = "") -> str:
    """Put ``data`` into the local store as a DVC object (a tampered bucket); returns its md5."""
    md5 = hashlib.md5(data).hexdigest()
    obj = store(cpv_home) / "files" / "md5" / md5[:2] / (md5[2:] + suffix)
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(data)
    return md5


def tag_pointer(mallory: Path, name: str, pointer_file: str, pointer: str, message: str = "") -> None:
    """Commit a crafted pointer and push it as version tag ``name`` (on a side commit, off main)."""
    git(mallory, "checkout", "-q", "--detach")
    (mallory / pointer_file).write_text(pointer)
    git(mallory, "add", "-f", pointer_file)
    git(mallory, "commit", "-q", "-m", "crafted")
    git(mallory, "tag", "-a", name, "-m", message or "cpv-metadata: {}")
    git(mallory, "push", "-q", "origin", f"refs/tags/{name}")
    git(mallory, "checkout", "-q", "main")


# -- 1. workspace.json ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["/abs/thesis", "../../thesis", "data/../../x", ".git/hooks", "", "a\x00b"])
def test_hostile_workspace_json_paths_are_refused_and_touch_nothing(victim, canary, tmp_path, value):
    if value == "/abs/thesis":
        value = str(canary / "thesis")
    meta_path = victim.repo_path / ".cpv" / "workspace.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["data"] = value
    meta_path.write_text(json.dumps(meta))  # as if pulled by hand from a teammate
    src = tmp_path / "new-data"
    write_data_dir(src)
    before = outside_state(canary)
    with pytest.raises(ValidationError, match="workspace.json"):
        DataCheckpointsManage(TEAM, MODEL).upload_data_checkpoint(src)
    assert outside_state(canary) == before


def test_a_new_member_cloning_a_hostile_workspace_json_gets_a_clear_error(victim, mallory, canary, tmp_path):
    meta = json.loads((mallory / ".cpv" / "workspace.json").read_text())
    meta["files"]["model"] = str(canary / "thesis" / "chapter1.tex")
    (mallory / ".cpv" / "workspace.json").write_text(json.dumps(meta))
    push(mallory)
    before = outside_state(canary)
    result = cpv("init", "model", "-t", TEAM, "-m", MODEL, "-r", str(tmp_path / "member-b"))
    assert "workspace.json" in one_line_error(result, 2)
    assert outside_state(canary) == before and not (tmp_path / "member-b").exists()


# -- 2, 3, 10. manifests, sub-paths and pointer hashes --------------------------------------


def test_manifest_entries_that_escape_the_output_are_refused(victim, mallory, cpv_home, canary, tmp_path):
    payload = b"#!/bin/sh\necho owned\n"
    md5 = plant_object(cpv_home, payload)
    for n, rel in enumerate(["../../../x.sh", "/tmp/x.sh", "ok/../../x.sh", "a\x00b"]):
        manifest = json.dumps([{"md5": md5, "relpath": rel}]).encode()
        dir_md5 = plant_object(cpv_home, manifest, ".dir")
        tag_pointer(
            mallory,
            f"data/v9.{n}",
            "data.dvc",
            f"outs:\n- md5: {dir_md5}.dir\n  size: {len(payload)}\n  nfiles: 1\n  hash: md5\n  path: data\n",
        )
        out = tmp_path / "out" / "deep" / "er"
        before = outside_state(canary)
        result = cpv("data", "download", f"v9.{n}", "-o", str(out), cwd=victim.repo_path)
        assert "manifest entry" in one_line_error(result, 2)
        assert outside_state(canary) == before
        assert not list(tmp_path.rglob("x.sh")) and not Path("/tmp/x.sh").exists()


def test_a_swapped_manifest_on_the_store_is_detected(cpv_home, tmp_path):
    d = DataCheckpointsManage(TEAM, MODEL)
    src = tmp_path / "src"
    write_data_dir(src)
    d.import_data_init(src)  # uploads and tags data v0.1
    pointer = (d.repo_path / "data.dvc").read_text()
    dir_md5 = pointer.split("md5: ")[1].split(".dir")[0]
    for path in (
        store(cpv_home) / "files" / "md5" / dir_md5[:2] / f"{dir_md5[2:]}.dir",
        d.repo_path / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / f"{dir_md5[2:]}.dir",
    ):
        path.chmod(0o644)
        path.write_text(json.dumps([{"md5": "0" * 32, "relpath": "evil"}]))
    problems = d.verify("v0.1", remote=True)
    assert problems and "does not match its hash" in problems[0]
    with pytest.raises(CPVError, match="does not match its hash"):
        d.download_data_checkpoint("v0.1", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("evil"))


@pytest.mark.parametrize("sub", ["..", "../README.md", "/etc", "train/../..", "nosuch"])
def test_sub_path_must_name_an_entry_of_the_version(cpv_home, tmp_path, sub):
    d = DataCheckpointsManage(TEAM, MODEL)
    src = tmp_path / "src"
    write_data_dir(src)
    d.import_data_init(src)  # uploads and tags data v0.1
    out = tmp_path / "dl" / "out"
    out.mkdir(parents=True)
    (tmp_path / "dl" / "README.md").write_text("mine\n")
    before = tree_state(tmp_path / "dl", d.repo_path / ".dvc" / "cache")
    result = cpv("data", "download", "v0.1", "-o", str(out), "--sub-path", sub, "--force", cwd=d.repo_path)
    err = one_line_error(result, 2)
    if sub == "nosuch":
        assert "test, train, validation" in err
    assert tree_state(tmp_path / "dl", d.repo_path / ".dvc" / "cache") == before
    assert oct(os.stat(d.repo_path / ".dvc" / "cache").st_mode & 0o777) != "0o600"


def test_a_pointer_hash_that_is_a_path_deletes_nothing(victim, mallory, canary, tmp_path):
    bad = "../../../../" + str(Path(os.environ["HOME"]) / "victim.txt").lstrip("/")
    tag_pointer(mallory, "model/v9.9", "model.bin.dvc", f"outs:\n- md5: {bad}\n  size: 14\n  hash: md5\n  path: model.bin\n")
    before = outside_state(canary)
    for args in (
        ["model", "download", "v9.9", "-o", str(tmp_path / "o")],
        ["model", "revert", "v9.9", "--force"],
        ["verify", "v9.9"],
        ["model", "info", "v9.9"],
    ):
        result = cpv(*args, cwd=victim.repo_path)
        if args[1] == "info":  # info reads the tag's metadata only: it lists the version, harmlessly
            assert result.returncode == 0, result.stderr
            continue
        assert "not a content hash" in one_line_error(result, 2)
    assert outside_state(canary) == before


@pytest.mark.parametrize(
    "pointer, code",
    [
        ("outs: 5\n", 2),
        ("outs:\n- md5: %s\n  size: .inf\n", 2),
        ("outs:\n- md5: %s\n  size: -1\n", 2),
        ("[1, 2\n", 2),
        ("outs:\n- 7\n", 2),
        ("a: &a [*a]\n", 5),
    ],
)
def test_malformed_pointers_are_one_line_errors(victim, mallory, tmp_path, pointer, code):
    tag_pointer(mallory, "model/v8.0", "model.bin.dvc", pointer.replace("%s", "0" * 32))
    result = cpv("model", "download", "v8.0", "-o", str(tmp_path / "o"), cwd=victim.repo_path)
    one_line_error(result, code)
    assert cpv("model", "list", cwd=victim.repo_path).returncode == 0


# -- 4, 5, 13, 14. tag messages, metrics and what is printed ----------------------------------


def test_a_tag_message_cannot_forge_versions_or_metadata(victim):
    write_model(victim.repo_path / "model.bin", 2048, seed=2)
    victim.upload_model_checkpoint()
    forged_record = "\x1erefs/tags/model/v7.7\x1f" + "a" * 40 + "\x1f\x1fMallory\x1f2020-01-01\x1f2020-01-01\x1fforged\x1e"
    fake_meta = '\ncpv-metadata: {"digest": "md5:' + "f" * 32 + '", "metrics": {"loss": 0}}\n'
    assert victim.tag_model_checkpoint(message="release" + forged_record + fake_meta) == "v0.2"
    records = victim.list_checkpoints()
    assert [r.version for r in records] == ["v0.1", "v0.2"]
    assert all(r.author != "Mallory" for r in records)
    assert records[1].digest != "md5:" + "f" * 32 and records[1].metrics == {}
    assert records[1].message == ("release" + forged_record + fake_meta).strip()
    write_model(victim.repo_path / "model.bin", 2048, seed=3)
    victim.upload_model_checkpoint()
    assert victim.tag_model_checkpoint() == "v0.3"


def test_large_metrics_tag_and_oversized_or_deep_ones_are_refused(victim, tmp_path):
    big = {f"m{i}": float(i) for i in range(12000)}  # ~200 KiB: over the old argv limit
    write_model(victim.repo_path / "model.bin", 2048, seed=2)
    victim.upload_model_checkpoint(metrics=big)
    assert victim.tag_model_checkpoint() == "v0.2"
    assert victim.get_model_metadata("v0.2").metrics == big
    before = tree_state(victim.repo_path)
    deep: dict = {}
    node = deep
    for _ in range(3000):
        node["a"] = {}
        node = node["a"]
    for metrics in ({"x": "y" * (2 * 1024 * 1024)}, deep, {"n": 10**5000}):
        with pytest.raises(ValidationError):
            victim.upload_model_checkpoint(metrics=metrics)
    for text in ('{"a":' * 3000 + "1" + "}" * 3000, '{"n": ' + "9" * 5000 + "}"):
        metrics_file = tmp_path / "m.json"
        metrics_file.write_text(text)
        one_line_error(cpv("model", "upload", "--metrics", str(metrics_file), cwd=victim.repo_path), 2)
    assert tree_state(victim.repo_path) == before


def test_crafted_tag_metadata_and_log_lines_never_break_listing_or_tagging(victim, mallory):
    for n, meta in enumerate(
        ['{"metrics": "abc"}', '{"metrics": {"loss": 1e999}}', '{"lineage": 5, "size": "big"}', "[1]", '{"digest": "../../x"}']
    ):
        git(mallory, "tag", "-a", f"model/v5.{n}", "-m", f"x\n\ncpv-metadata: {meta}")
        git(mallory, "push", "-q", "origin", f"refs/tags/model/v5.{n}")
    with open(mallory / "metrics.log", "a") as log:
        log.write('{"kind":"model","metrics":5}\n' + '{"a":' * 3000 + "1" + "}" * 3000 + "\n" + "[1,2]\nnot json\n")
    push(mallory)
    result = cpv("model", "list", cwd=victim.repo_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "v5.0" in result.stdout and "ignoring malformed metadata" in result.stderr
    write_model(victim.repo_path / "model.bin", 2048, seed=4)
    victim.upload_model_checkpoint(metrics={"loss": 0.1})
    assert victim.tag_model_checkpoint() == "v5.5"
    assert victim.get_model_metadata("v5.5").metrics == {"loss": 0.1}


def test_control_characters_are_printed_escaped(victim):
    write_model(victim.repo_path / "model.bin", 2048, seed=2)
    victim.upload_model_checkpoint(metrics={"\x1b[31mred": 1, "ok": "\x1b]8;;http://evil\x07link"})
    victim.tag_model_checkpoint(message="\x1b[2J\x1b]0;owned\x07\nv9.9  forged row")
    for args in (["model", "list"], ["model", "info", "v0.2"], ["diff", "v0.1", "v0.2"]):
        result = cpv(*args, cwd=victim.repo_path)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout
        assert "\\e[2J" in result.stdout or args[0] == "diff"
    listing = cpv("model", "list", cwd=victim.repo_path).stdout.splitlines()
    assert len(listing) == 3  # header + two versions: the newline in the message forged no row


# -- 6. one repository, one storage prefix -----------------------------------------------------


def test_repo_path_with_another_team_or_model_is_refused(victim):
    for team, model in (("ai-convo", MODEL), (TEAM, "other")):
        result = cpv("model", "upload", "-t", team, "--model-name", model, "-r", str(victim.repo_path))
        assert "holds AI-Convo/whisper" in one_line_error(result, 2)


# -- 9, 11, 12. what incoming commits may change ----------------------------------------------


@pytest.mark.parametrize("attack", ["model-file", "model-symlink", "dvc-config", "workspace-json", "keep-dir"])
def test_incoming_commits_may_only_touch_what_cpv_shares(victim, mallory, canary, attack):
    home = Path(os.environ["HOME"])
    if attack == "model-file":
        (mallory / "model.bin").write_bytes(b"mallory's weights")
    elif attack == "model-symlink":
        (mallory / "model.bin").symlink_to(home / "victim.txt")
    elif attack == "dvc-config":
        (mallory / ".dvc" / "config").write_text("[core]\n    remote = cpv\n[cache]\n    dir = /tmp/elsewhere\n    type = symlink\n")
    elif attack == "workspace-json":
        meta = json.loads((mallory / ".cpv" / "workspace.json").read_text())
        meta["files"]["data"] = str(canary / "thesis")
        (mallory / ".cpv" / "workspace.json").write_text(json.dumps(meta))
    else:  # a symlinked data dir and a fake recovery backup that would plant a key
        (mallory / "data").symlink_to(home)
        keep = mallory / ".data.cpv-keep" / ".ssh"
        keep.mkdir(parents=True)
        (keep / "authorized_keys").write_text("ssh-ed25519 MALLORY\n")
    push(mallory)
    trained = write_model(victim.repo_path / "model.bin", 4096, seed=7)
    before = outside_state(canary)
    with pytest.raises(GitError, match="cpv accepts only pointer files"):
        victim.upload_model_checkpoint(metrics={"loss": 0.1})
    assert (victim.repo_path / "model.bin").read_bytes() == trained and not (victim.repo_path / "model.bin").is_symlink()
    assert outside_state(canary) == before
    assert not (victim.repo_path / "data").is_symlink() and not Path("/tmp/elsewhere").exists()


def test_a_committed_dvc_config_or_dvcignore_is_refused_on_clone(victim, mallory, tmp_path):
    (mallory / ".dvc" / "config").write_text("[core]\n    remote = cpv\n[cache]\n    dir = /tmp/elsewhere\n")
    push(mallory)
    result = cpv("init", "model", "-t", TEAM, "-m", MODEL, "-r", str(tmp_path / "b"))
    assert "cache.dir" in one_line_error(result, 5)
    git(mallory, "revert", "--no-edit", "HEAD")
    (mallory / ".dvcignore").write_text("*.txt\n")
    push(mallory)
    result = cpv("init", "model", "-t", TEAM, "-m", MODEL, "-r", str(tmp_path / "c"))
    assert ".dvcignore" in one_line_error(result, 5)


def test_recovery_ignores_backups_it_did_not_make_and_never_writes_through_links(victim, canary):
    home = Path(os.environ["HOME"])
    keep = victim.repo_path / ".data.cpv-keep" / ".ssh"
    keep.mkdir(parents=True)
    (keep / "authorized_keys").write_text("ssh-ed25519 MALLORY\n")
    (victim.repo_path / "data").symlink_to(home)
    old = victim.repo_path / ".model.bin.cpv-old"
    old.write_text("not mine")
    before = outside_state(canary)
    write_model(victim.repo_path / "model.bin", 2048, seed=5)
    victim.upload_model_checkpoint()  # takes the lock, runs recovery
    assert outside_state(canary) == before
    with pytest.raises(ValidationError, match="symbolic link"):
        DataCheckpointsManage(TEAM, MODEL).upload_data_checkpoint()
    assert outside_state(canary) == before


# -- 15. data directories with special entries -------------------------------------------------


@pytest.mark.parametrize("special", ["outside-link", "loops", "fifo", "git-dir", "dvcignore"])
def test_special_entries_in_data_directories_are_refused_before_any_write(cpv_home, canary, tmp_path, special):
    d = DataCheckpointsManage(TEAM, MODEL)
    d.import_data_init()
    src = tmp_path / "src"
    write_data_dir(src)
    if special == "outside-link":
        (src / "train" / "secret").symlink_to(Path(os.environ["HOME"]) / ".ssh" / "authorized_keys")
    elif special == "loops":
        (src / "train" / "a").symlink_to(src / "validation")
        (src / "validation" / "b").symlink_to(src / "train")
    elif special == "fifo":
        os.mkfifo(src / "test" / "pipe")
    elif special == "git-dir":
        (src / "train" / ".git").mkdir()
        (src / "train" / ".git" / "HEAD").write_text("ref: x\n")
    else:
        (src / ".dvcignore").write_text("*.txt\n")
    before = tree_state(d.repo_path)
    with pytest.raises(ValidationError):
        d.upload_data_checkpoint(src)
    assert tree_state(d.repo_path) == before


def test_a_fifo_in_the_store_is_reported_not_waited_for(victim, cpv_home, tmp_path):
    md5 = victim.get_model_metadata("v0.1").digest.removeprefix("md5:")
    for root in (store(cpv_home), victim.repo_path / ".dvc" / "cache"):
        obj = root / "files" / "md5" / md5[:2] / md5[2:]
        obj.chmod(0o644)
        obj.unlink()
        os.mkfifo(obj)
    result = cpv("verify", "v0.1", "--remote", cwd=victim.repo_path, timeout=30)
    assert result.returncode == 12 and "not a regular file" in result.stdout
    result = cpv("model", "download", "v0.1", "-o", str(tmp_path / "o"), cwd=victim.repo_path, timeout=30)
    one_line_error(result, 2)


# -- 8. the small ones ----------------------------------------------------------------------------


def test_version_components_are_bounded_and_a_version_at_the_ceiling_wedges_nothing(victim, caplog):
    from cpv_core.versions import MAX_COMPONENT, Version

    write_model(victim.repo_path / "model.bin", 2048, seed=2)
    victim.upload_model_checkpoint()
    assert victim.tag_model_checkpoint("v999999.999999") == "v999999.999999"
    write_model(victim.repo_path / "model.bin", 2048, seed=3)
    victim.upload_model_checkpoint()
    assert victim.tag_model_checkpoint() == "v0.2"  # numbering goes on from the highest version it can
    assert "numbering does not go on from it" in caplog.text
    with pytest.raises(ValidationError, match="is not of the form"):
        victim.tag_model_checkpoint("v1000000.0")
    with pytest.raises(ValidationError, match="no minor version after"):
        Version(0, MAX_COMPONENT).bump_minor()
    with pytest.raises(ValidationError, match="no major version after"):
        Version(MAX_COMPONENT, 0).bump_major()
    assert victim.read_checkpoint_tag() == ["v0.1", "v0.2", "v999999.999999"]


def test_lock_timeout_that_is_not_a_number_is_a_clear_error(victim):
    result = cpv("model", "list", cwd=victim.repo_path, env={"CPV_LOCK_TIMEOUT": "abc"})
    assert "CPV_LOCK_TIMEOUT" in one_line_error(result, 3)


def test_credential_path_must_be_a_small_regular_file(cpv_home):
    result = cpv("aws-config", "--credential-path", "/dev/zero", "--profile", "p", timeout=30)
    assert "not a regular file" in one_line_error(result, 4)


@pytest.mark.parametrize(
    "value", ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"]
)
def test_secret_looking_values_are_refused_under_any_key(cpv_home, value):
    for key in ("aws.key", "notes", "bitbucket.workspace"):
        result = cpv("config", "set", key, value)
        assert "looks like a secret" in one_line_error(result, 3)
        assert value not in result.stderr
    assert not (cpv_home / "config.json").exists() or value not in (cpv_home / "config.json").read_text()


def test_cpv_home_and_local_remotes_are_private_and_local_root_is_absolute(cpv_home, tmp_path, monkeypatch):
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    for path in (cpv_home, cpv_home / "local", store(cpv_home), bare_repo(cpv_home)):
        assert path.stat().st_mode & 0o777 == 0o700, path
    monkeypatch.chdir(tmp_path)
    assert cpv("config", "set", "local.root", "rel-remotes", cwd=tmp_path).returncode == 0
    assert json.loads((cpv_home / "config.json").read_text())["local"]["root"] == str(tmp_path / "rel-remotes")
    config = json.loads((cpv_home / "config.json").read_text())
    config["local"]["root"] = "relative/dir"
    (cpv_home / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="relative path"):
        ModelsCheckpointsManage("T", "m").import_model_init()


# -- 7. bitbucket-config ---------------------------------------------------------------------------


def bitbucket_setup(**options):
    from cpv_core.config import CPVConfig

    return CPVConfig().setup_bitbucket_ssh(bitbucket_user="tester", workspace="ai-team", host="127.0.0.1", port=2222, **options)


def test_bitbucket_config_chmods_only_directories_it_creates(cpv_home, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    bitbucket_setup(keygen_filename=str(shared / "id_x"))
    assert (shared / "id_x").exists() and shared.stat().st_mode & 0o7777 == 0o1777
    bitbucket_setup(keygen_filename=str(tmp_path / "new" / "keys" / "id_y"))
    assert (tmp_path / "new" / "keys").stat().st_mode & 0o777 == 0o700


def test_a_symlinked_ssh_config_stays_a_symlink_and_a_broken_block_is_left_alone(cpv_home, tmp_path):
    ssh = Path(os.environ["HOME"]) / ".ssh"
    ssh.mkdir(exist_ok=True)
    real = tmp_path / "dotfiles" / "ssh_config"
    real.parent.mkdir()
    real.write_text("Host mine\n  Port 22\n")
    (ssh / "config").symlink_to(real)
    bitbucket_setup(keygen_filename="id_cpv")
    assert (ssh / "config").is_symlink() and "Host bitbucket-cpv" in real.read_text() and "Host mine" in real.read_text()
    from cpv_plugins.bitbucket_ssh import BLOCK_BEGIN

    broken = "Host mine\n" + BLOCK_BEGIN + "\nHost bitbucket-cpv\nHost after\n  Port 1\n"
    real.write_text(broken)
    with pytest.raises(ConfigError, match="incomplete or repeated cpv block"):
        bitbucket_setup(keygen_filename="id_cpv")
    assert real.read_text() == broken


@pytest.mark.parametrize("link", [".dvc/cache", ".dvc/tmp", ".cpv"])
def test_committed_links_for_cpv_s_own_directories_are_refused(victim, canary, tmp_path, link):
    """A teammate commits .dvc/cache (or .dvc/tmp, .cpv) as a link to the victim's home;
    a new member's clone must not write a byte through it."""
    import shutil

    home = Path(os.environ["HOME"])
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(victim.repo_path), str(clone)], check=True)
    target = clone / link
    if target.exists():
        shutil.rmtree(target)
    target.symlink_to(home)
    before = outside_state(canary)
    write_model(clone / "model.bin", 1000, seed=8)
    with pytest.raises(CPVError, match="symbolic link" if link != ".cpv" else "no cpv workspace"):
        m = ModelsCheckpointsManage(TEAM, MODEL, repo_path=clone)
        m.upload_model_checkpoint()
    assert outside_state(canary) == before
    assert not (home / "files").exists() and not (home / "lock").exists()
