"""What cpv records is what happened (#15): messages that show, no phantom commits or
versions, the user's own git identity, one meaning per flag, hints in the caller's
language, and output people and scripts can read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.cli import main
from cpv_core.errors import VersionExistsError, WorkspaceDirtyError

from .helpers import git, upload_model, write_data_dir, write_model

T = ["-t", "AI-Convo", "--model-name", "whisper"]


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.pass_context
def entry(ctx: click.Context) -> None:
    main(list(ctx.args))


def cpv(*args: str, expect: int = 0, cwd: Path | None = None) -> Result:
    """``cpv ARGS`` through main() (its error reporting and exit codes), in-process."""
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(entry, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)
    assert result.exit_code == expect, f"exit {result.exit_code}: {result.output}"
    return result


@pytest.fixture
def m(cpv_home) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage("AI-Convo", "whisper")
    m.import_model_init()
    return m


def commits(m: ModelsCheckpointsManage) -> int:
    return int(git(m.repo_path, "rev-list", "--count", "HEAD"))


def test_a_version_shows_its_upload_messages_when_its_tag_has_none(m):
    upload_model(m, 1, message="baseline")
    upload_model(m, 2, message="longer warm-up")
    m.tag_model_checkpoint()
    meta = m.get_model_metadata("v0.1")
    assert meta.message == "baseline; longer warm-up" and meta.tag_message == "" and meta.upload_message == meta.message
    upload_model(m, 3, message="lr 3e-4")
    m.tag_model_checkpoint(message="release candidate")
    meta = m.get_model_metadata("v0.2")
    assert meta.message == "release candidate" and meta.upload_message == "lr 3e-4"  # only the uploads since v0.1
    listing = cpv("model", "list", *T).stdout
    assert "baseline; longer warm-up" in listing and "release candidate" in listing
    info = cpv("model", "info", "--version", "v0.2", *T).stdout
    assert "message  release candidate" in info and "uploads  lr 3e-4" in info


def test_an_unchanged_upload_makes_no_commit_but_new_metrics_are_recorded(m):
    upload_model(m, 1)
    m.tag_model_checkpoint()
    before = commits(m)
    result = cpv("model", "upload", "-m", "same bytes", *T)
    assert "unchanged (same as v0.1)" in result.stderr and "message was not recorded" in result.stderr
    assert commits(m) == before
    assert not m.upload_model_checkpoint(metrics={"wer": 0.04}).changed  # re-evaluated weights: a real need
    assert commits(m) == before + 1 and m.get_model_metadata().metrics == {}
    assert '"wer": 0.04' in (m.repo_path / "metrics.log").read_text()


def test_identical_content_gets_no_new_version_unless_allowed(m):
    upload_model(m, 1)
    m.tag_model_checkpoint()
    upload_model(m, 2)
    m.tag_model_checkpoint()
    m.revert_model_checkpoint("v0.1")
    with pytest.raises(VersionExistsError, match="identical to v0.1") as err:
        m.tag_model_checkpoint()
    assert "allow_duplicate=True" in err.value.fix
    cli_err = cpv("model", "tag", *T, expect=9)
    assert "identical to v0.1" in cli_err.stderr and "--allow-duplicate" in cli_err.stderr and "allow_duplicate=" not in cli_err.stderr
    assert cpv("model", "tag", "--allow-duplicate", *T).stdout.strip() == "v0.3"
    assert m.tag_model_checkpoint(version_tag="v1.0") == "v1.0"  # naming a version explicitly is a deliberate promotion


def test_reverting_to_the_current_state_commits_nothing(m):
    upload_model(m, 1)
    m.tag_model_checkpoint()
    before = commits(m)
    result = cpv("model", "revert", "v0.1", *T)
    assert "already at model v0.1; nothing to revert" in result.stderr
    assert commits(m) == before


def test_the_users_git_identity_is_read_at_each_commit(cpv_home, monkeypatch, caplog):
    gitconfig = Path(os.environ["GIT_CONFIG_GLOBAL"])
    gitconfig.write_text("[init]\n\tdefaultBranch = main\n")  # a fresh HOME: no identity anywhere
    m = ModelsCheckpointsManage("AI-Convo", "whisper")
    m.import_model_init()
    assert "[user]" not in (m.repo_path / ".git" / "config").read_text()  # nothing frozen into the workspace
    assert "git config --global user.name" in caplog.text
    subprocess.run(["git", "config", "--global", "user.name", "Alice ML"], check=True)
    subprocess.run(["git", "config", "--global", "user.email", "alice@example.com"], check=True)
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    assert git(m.repo_path, "log", "-1", "--format=%an <%ae>").strip() == "Alice ML <alice@example.com>"
    assert m.get_model_metadata("v0.1").author.startswith("Alice ML")


def test_a_frozen_fallback_identity_from_0_1_is_forgotten(m):
    from cpv_plugins.gitutil import default_identity

    name, email = default_identity()
    git(m.repo_path, "config", "user.name", name)
    git(m.repo_path, "config", "user.email", email)
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    assert git(m.repo_path, "log", "-1", "--format=%an").strip() == "Test User"
    local = subprocess.run(["git", "config", "--local", "--get", "user.name"], cwd=m.repo_path, capture_output=True, text=True)
    assert local.returncode == 1 and local.stdout == ""
    assert "[user]" not in (m.repo_path / ".git" / "config").read_text()  # removed in one rewrite: a kill leaves both or neither
    for key, value in (("user.name", name), ("user.email", email), ("user.signingkey", "ABC123")):
        git(m.repo_path, "config", key, value)
    write_model(m.repo_path / "model.bin", 1001)
    m.upload_model_checkpoint()
    assert git(m.repo_path, "config", "--local", "--get-regexp", r"^user\.").split() == [
        "user.signingkey",
        "ABC123",
    ]  # the user's own key stays
    git(m.repo_path, "config", "--unset", "user.signingkey")
    for value in (name, name):  # a key given twice was never cpv's: left alone, and commits still work
        git(m.repo_path, "config", "--add", "user.name", value)
    git(m.repo_path, "config", "user.email", email)
    write_model(m.repo_path / "model.bin", 1002)
    m.upload_model_checkpoint()
    assert git(m.repo_path, "config", "--local", "--get-all", "user.name").split() == [name, name]


def test_init_data_uploads_and_tags_the_first_data_version(cpv_home, tmp_path):
    src = tmp_path / "dataset"
    write_data_dir(src)
    result = cpv("init", "data", "-t", "T", "--model-name", "d", "--data-path", str(src), "--json")
    report = json.loads(result.stdout)
    assert report["data_version"] == "v0.1" and Path(report["path"]).is_dir()
    assert "tagged data v0.1" in result.stderr
    assert DataCheckpointsManage("T", "d").read_checkpoint_tag() == ["v0.1"]


def test_dash_m_is_the_message_on_workspace_commands_and_says_so(m, tmp_path):
    write_model(m.repo_path / "model.bin", 1000)
    outside = cpv("model", "upload", "-t", "AI-Convo", "-m", "whisper", expect=2, cwd=tmp_path)
    assert "--model-name" in outside.stderr and "-m is the message" in outside.stderr
    inside = cpv("model", "upload", "-m", "whisper", expect=2, cwd=m.repo_path)
    assert "model's name" in inside.stderr and "--model-name whisper" in inside.stderr
    assert git(m.repo_path, "rev-list", "--count", "HEAD").strip() == "1"  # nothing was uploaded
    cpv("model", "upload", "-m", "first weights", cwd=m.repo_path)


def test_hints_name_only_what_exists_in_the_callers_language(m):
    upload_model(m, 1)
    m.tag_model_checkpoint()
    write_model(m.repo_path / "model.bin", 1000, seed=2)
    with pytest.raises(WorkspaceDirtyError) as err:
        m.tag_model_checkpoint()
    assert "upload_model_checkpoint()" in err.value.fix and "force" not in err.value.fix
    tag = cpv("model", "tag", *T, expect=10)
    assert "`cpv model upload`" in tag.stderr and "force" not in tag.stderr  # tag has no --force
    revert = cpv("model", "revert", "v0.1", *T, expect=10)
    assert "pass --force" in revert.stderr and "force=True" not in revert.stderr
    with pytest.raises(WorkspaceDirtyError) as err:
        m.revert_model_checkpoint("v0.1")
    assert "pass force=True" in err.value.fix and "--force" not in err.value.fix


def test_version_and_late_verbosity_flags(m):
    from cpv_core import __version__

    assert cpv("version").stdout.strip() == f"cpv {__version__}"
    assert cpv("-V").stdout.strip() == f"cpv {__version__}"
    write_model(m.repo_path / "model.bin", 1000)
    quiet = cpv("model", "upload", *T, "-q")
    assert quiet.stderr == "" and "uploaded" in quiet.stdout


def test_output_has_headers_human_sizes_and_no_python_reprs(m):
    write_model(m.repo_path / "model.bin", 1024)
    m.upload_model_checkpoint(metrics={"loss": 0.1, "acc": {"top1": 0.9}, "ok": True, "note": None})
    m.tag_model_checkpoint()
    table = cpv("model", "list", *T).stdout
    assert "acc.top1=0.9 loss=0.1 note=null ok=true" in table and "1.0 KiB" in table
    assert "{" not in table and "None" not in table and "True" not in table
    assert cpv("plugins").stdout.splitlines()[0].split()[:2] == ["PLUGIN", "VERSION"]


def test_every_result_command_speaks_json(m, tmp_path):
    write_model(m.repo_path / "model.bin", 1000)
    up = json.loads(cpv("model", "upload", *T, "--json").stdout)
    assert up["kind"] == "model" and up["digest"].startswith("md5:") and up["changed"] is True
    assert json.loads(cpv("model", "tag", *T, "--json").stdout) == {"kind": "model", "version": "v0.1", "dry_run": False}
    down = json.loads(cpv("model", "download", "v0.1", *T, "-o", str(tmp_path / "o"), "--json").stdout)
    assert Path(down["model_path"]).read_bytes() == (m.repo_path / "model.bin").read_bytes() and down["tag"] == "v0.1"
    upload_model(m, 9)
    rev = json.loads(cpv("model", "revert", "v0.1", *T, "--json").stdout)
    assert rev["reverted_to"]["version"] == "v0.1" and len(rev["commit"]) == 40
    write_data_dir(m.repo_path / "data")
    cpv("data", "upload", *T)
    created = json.loads(cpv("checkpoint", "create", *T, "--json").stdout)
    assert created == {"checkpoint": "v0.1", "model": "v0.1", "data": "v0.1", "dry_run": False}
    init = json.loads(cpv("init", "model", "-t", "AI-Convo", "-m", "whisper", "--json").stdout)
    assert init["path"] == str(m.repo_path)


def test_the_cli_module_still_runs_as_a_script():
    out = subprocess.run([sys.executable, "-m", "cpv_core.cli", "version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("cpv ")


def test_status_compares_the_workspace_with_its_versions_and_the_remote(m, cpv_home, tmp_path):
    upload_model(m, 1)
    st = json.loads(cpv("status", *T, "--json").stdout)
    assert st["ahead"] == 0 and st["behind"] == 0
    assert st["targets"] == [
        {
            "kind": "model",
            "path": "model.bin",
            "state": "unchanged",
            "committed": st["targets"][0]["committed"],
            "version": None,
            "latest": None,
            "changes": {},
            "upstream_changed": False,
        }
    ]
    assert "`cpv model tag` gives the uploaded model.bin a version" in cpv("status", *T).stderr
    m.tag_model_checkpoint()
    # a teammate publishes a new upload: this workspace is behind
    other = ModelsCheckpointsManage("AI-Convo", "whisper", repo_path=tmp_path / "other")
    other.import_model_init()
    write_model(other.repo_path / "model.bin", 1000, seed=2)
    other.upload_model_checkpoint()
    write_model(m.repo_path / "model.bin", 1000, seed=3)  # and a local change
    result = cpv("status", *T)
    assert "0 commit(s) ahead, 1 behind the remote" in result.stdout
    assert result.stdout.splitlines()[1].split()[:3] == ["KIND", "PATH", "STATE"]
    assert "model  model.bin  modified  v0.1" in result.stdout
    # a pull would be refused (it would replace the unsaved change): the hint says what works
    assert "`cpv pull` brings" not in result.stderr
    assert "a teammate uploaded a newer model.bin and yours has changes never uploaded: `cpv model upload` keeps yours" in result.stderr
    assert json.loads(cpv("status", *T, "--json").stdout)["targets"][0]["upstream_changed"] is True


def test_a_refused_pull_changes_nothing_and_the_upload_it_suggests_works(m, cpv_home, tmp_path):
    upload_model(m, 1)
    m.tag_model_checkpoint()
    other = ModelsCheckpointsManage("AI-Convo", "whisper", repo_path=tmp_path / "other")
    other.import_model_init()
    write_model(other.repo_path / "model.bin", 1000, seed=2)
    other.upload_model_checkpoint()
    mine = write_model(m.repo_path / "model.bin", 1000, seed=3)  # changed here, never uploaded
    head = git(m.repo_path, "rev-parse", "HEAD")
    out = cpv("pull", *T, expect=10).output
    assert "model.bin has changes that were never uploaded and a teammate uploaded a newer version" in out
    assert "nothing was changed" in out and "`cpv model upload`" in out and "model.bin.mine && cpv pull" in out
    assert git(m.repo_path, "rev-parse", "HEAD") == head and (m.repo_path / "model.bin").read_bytes() == mine
    with pytest.raises(WorkspaceDirtyError, match="nothing was changed"):
        m.pull()
    cpv("model", "upload", *T)  # what the refusal suggested: yours, on top of theirs
    assert (m.repo_path / "model.bin").read_bytes() == mine
    assert git(m.repo_path, "rev-list", "--count", "HEAD").strip() == str(int(git(other.repo_path, "rev-list", "--count", "HEAD")) + 1)


def test_status_names_the_files_that_changed(cpv_home, tmp_path):
    src = tmp_path / "dataset"
    write_data_dir(src)
    d = DataCheckpointsManage("T", "d")
    d.import_data_init(src)
    data = d.repo_path / "data"
    (data / "train" / "sample_0.txt").write_text("changed\n")
    (data / "test" / "new.txt").write_text("new\n")
    (data / "validation" / "sample_1.txt").unlink()
    st = json.loads(cpv("status", "-t", "T", "--model-name", "d", "--json").stdout)
    (target,) = st["targets"]
    assert target["state"] == "modified"
    assert target["changes"] == {"test/new.txt": "added", "train/sample_0.txt": "modified", "validation/sample_1.txt": "removed"}
    text = cpv("status", "-t", "T", "--model-name", "d").stdout
    assert "  added    data/test/new.txt" in text and "  removed  data/validation/sample_1.txt" in text


def test_shell_completion_offers_version_names(m):
    upload_model(m, 1)
    m.tag_model_checkpoint()
    upload_model(m, 2)
    m.tag_model_checkpoint(version_tag="v1.0")
    env = dict(os.environ, _CPV_COMPLETE="bash_complete", COMP_WORDS="cpv model download v", COMP_CWORD="3")
    script = "from cpv_core.cli import cli; cli(prog_name='cpv')"
    done = subprocess.run([sys.executable, "-c", script], cwd=m.repo_path, env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["plain,v1.0", "plain,v0.1"], done.stderr
    env["COMP_WORDS"] = "cpv diff --kind data "
    env["COMP_CWORD"] = "4"
    none = subprocess.run([sys.executable, "-c", script], cwd=m.repo_path, env=env, capture_output=True, text=True)
    assert none.stdout.split() == [] and none.stderr == ""  # no data versions: nothing, and never a traceback


def test_config_set_refuses_unknown_keys_and_backends_listing_the_choices(cpv_home):
    bad_backend = cpv("config", "set", "storage", "s3", expect=3)
    assert "'s3' is not provided" in bad_backend.stderr and "dvc-s3" in bad_backend.stderr and "local" in bad_backend.stderr
    typo = cpv("config", "set", "aws.bucekt", "x", expect=3)
    assert "'aws.bucekt' is not a cpv setting" in typo.stderr and "aws.bucket" in typo.stderr
    assert not (cpv_home / "config.json").exists()
    cpv("config", "set", "aws.bucket", "my-bucket")
    cpv("config", "set", "storage", "dirstore")  # a third-party plugin's backend and its own key
    cpv("config", "set", "dirstore.root", "/srv/objects")


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch, capsys):
    from cpv_core import terminal

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(terminal.sys, "stderr", Tty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert terminal.colour_wanted(err=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not terminal.colour_wanted(err=True)
    assert not terminal.colour_wanted(err=False)  # pytest's captured stdout is no terminal


def test_a_sub_path_download_reports_the_bytes_it_placed(cpv_home, tmp_path):
    src = tmp_path / "dataset"
    write_data_dir(src)
    d = DataCheckpointsManage("T", "d")
    d.import_data_init(src)
    script = "from cpv_core.cli import main; main()"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "data",
            "download",
            "v0.1",
            "-t",
            "T",
            "--model-name",
            "d",
            "--sub-path",
            "test",
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    placed = sum(f.stat().st_size for f in (tmp_path / "o" / "test").rglob("*") if f.is_file())
    assert f"download data/test: {placed} B in" in done.stderr and " 0 B " not in done.stderr


def test_the_seed_data_revert_restores_the_directory(cpv_home, tmp_path):
    src = tmp_path / "dataset"
    write_data_dir(src)
    d = DataCheckpointsManage("T", "d")
    d.import_data_init(src)
    sample = d.repo_path / "data" / "train" / "sample_0.txt"
    original = sample.read_text()
    sample.write_text("changed\n")
    d.upload_data_checkpoint()
    meta = d.revert_data_checkpoint("v0.1")
    assert meta.version == "v0.1" and sample.read_text() == original
    assert git(d.repo_path, "status", "--porcelain") == ""


def test_the_identity_is_the_one_git_itself_finds(cpv_home, monkeypatch, tmp_path, caplog):
    """A global config named by GIT_CONFIG_GLOBAL outside HOME, with the identity behind
    an includeIf (a work identity per directory): cpv asks git, not a config parser."""
    work = tmp_path / "elsewhere" / "work.inc"
    work.parent.mkdir()
    work.write_text("[user]\n\tname = Work Me\n\temail = me@work.example\n")
    gitconfig = tmp_path / "elsewhere" / "gitconfig"
    gitconfig.write_text(f'[init]\n\tdefaultBranch = main\n[includeIf "gitdir:{cpv_home / "workspaces"}/"]\n\tpath = {work}\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    m = ModelsCheckpointsManage("AI-Convo", "whisper")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    assert git(m.repo_path, "log", "-1", "--format=%an <%ae>").strip() == "Work Me <me@work.example>"
    assert "git config --global user.name" not in caplog.text


@settings(max_examples=20, deadline=None)
@given(
    blobs=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    asks=st.lists(st.sampled_from(["f0", "f1", "f2", "f3", "nope", "sub"]), min_size=1, max_size=8),
)
def test_reading_many_files_at_once_answers_as_reading_each(tmp_path_factory, blobs, asks):
    """read_files (one `git cat-file --batch`) parses any content, newlines and all,
    and answers exactly what read_file does, missing files and trees included."""
    from cpv_core.backends import BackendContext
    from cpv_core.config import CPVConfig
    from cpv_plugins.git_tags import GitTagsVersioning

    repo = tmp_path_factory.mktemp("batch")
    git(repo, "init", "-q")
    for i, blob in enumerate(blobs):
        (repo / f"f{i}").write_bytes(blob)
    (repo / "sub").mkdir()
    (repo / "sub" / "x").write_bytes(b"x")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "blobs")
    v = GitTagsVersioning(BackendContext(config=CPVConfig(), team="T", model="m", workspace=repo))
    requests = [("HEAD", name) for name in asks]
    assert v.read_files(requests) == [v.read_file(rev, path) for rev, path in requests]
    assert v.read_files([("HEAD", "f0")]) == [blobs[0]]


def test_new_metrics_for_the_same_bytes_are_one_line_and_a_version_to_tag(m):
    upload_model(m, 1, metrics={"wer": 0.05})
    assert m.tag_model_checkpoint() == "v0.1"
    result = cpv("model", "upload", "--metrics", '{"wer": 0.04}', *T)
    assert "model.bin unchanged (new metrics recorded)" in result.stdout and "uploaded" not in result.output
    assert "model.bin unchanged; new metrics recorded as" in result.stderr and "`cpv model tag` makes them a version" in result.stderr
    assert cpv("model", "tag", *T).stdout.strip() == "v0.2"  # the same bytes, evaluated anew
    assert m.get_model_metadata("v0.2").metrics == {"wer": 0.04}
    with pytest.raises(VersionExistsError, match="already version v0.2"):
        m.tag_model_checkpoint()


def test_an_upload_that_was_rebased_on_a_teammates_names_the_commit_it_published(m, tmp_path):
    upload_model(m, 1)
    bob = ModelsCheckpointsManage("AI-Convo", "whisper", repo_path=tmp_path / "bob")
    bob.import_model_init()
    upload_model(m, 2)  # Alice publishes first; Bob has not fetched
    write_model(bob.repo_path / "model.bin", 1000, seed=3)
    result = bob.upload_model_checkpoint()
    published = git(bob.repo_path, "rev-parse", "HEAD").strip()
    assert result.commit == published == git(m.repo_path, "ls-remote", "origin", "refs/heads/main").split()[0]


def test_the_identity_git_takes_from_the_environment_is_the_versions_author(cpv_home, monkeypatch, caplog):
    """CI systems and clusters set GIT_AUTHOR_*/GIT_COMMITTER_* and no user.* config: git
    records them, so cpv must too (it warned and recorded its fallback identity)."""
    Path(os.environ["GIT_CONFIG_GLOBAL"]).write_text("[init]\n\tdefaultBranch = main\n")  # no user.* anywhere
    for var, value in {
        "GIT_AUTHOR_NAME": "CI Runner",
        "GIT_AUTHOR_EMAIL": "ci@example.com",
        "GIT_COMMITTER_NAME": "CI Runner",
        "GIT_COMMITTER_EMAIL": "ci@example.com",
    }.items():
        monkeypatch.setenv(var, value)
    m = ModelsCheckpointsManage("AI-Convo", "whisper")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    assert (
        git(m.repo_path, "log", "-1", "--format=%an <%ae> / %cn <%ce>").strip() == "CI Runner <ci@example.com> / CI Runner <ci@example.com>"
    )
    assert m.get_model_metadata("v0.1").author.startswith("CI Runner")
    assert "git has no user.name" not in caplog.text
    monkeypatch.delenv("GIT_AUTHOR_EMAIL")
    monkeypatch.delenv("GIT_COMMITTER_EMAIL")
    monkeypatch.setenv("EMAIL", "ci-mail@example.com")  # git's last source for an address
    write_model(m.repo_path / "model.bin", 1000, seed=4)
    m.upload_model_checkpoint()
    assert git(m.repo_path, "log", "-1", "--format=%an <%ae>").strip() == "CI Runner <ci-mail@example.com>"


def test_hints_for_what_does_not_exist_yet_speak_the_callers_language(cpv_home):
    from cpv_core import CombinedCheckpointsManage
    from cpv_core.errors import CheckpointNotFoundError, RepositoryError

    with pytest.raises(RepositoryError) as err:
        ModelsCheckpointsManage("AI-Convo", "whisper").get_model_metadata()
    assert "import_model_init()" in err.value.fix and "`cpv" not in err.value.fix
    m = ModelsCheckpointsManage("AI-Convo", "whisper")
    m.import_model_init()
    with pytest.raises(CheckpointNotFoundError) as err:
        m.get_model_metadata()
    assert "upload_model_checkpoint()" in err.value.fix and "`cpv" not in err.value.fix
    shown = cpv("model", "info", *T, expect=8).stderr
    assert "`cpv model upload`" in shown and "()" not in shown
    with pytest.raises(CheckpointNotFoundError) as err:
        CombinedCheckpointsManage("AI-Convo", "whisper").revert_model_and_data("v0.1")
    assert "tag_model_and_data()" in err.value.fix and "`cpv" not in err.value.fix
    shown = cpv("checkpoint", "revert", "v0.1", *T, expect=8).stderr
    assert "`cpv checkpoint create`" in shown and "tag_model_and_data()" not in shown


def test_params_and_the_training_code_are_recorded_with_the_version(cpv_home, tmp_path, monkeypatch):
    """--params records hyperparameters apart from metrics (info, diff, report); an upload
    run inside the training code's git repository records its commit, branch and dirty flag."""
    code = tmp_path / "train-code"
    code.mkdir()
    git(code, "init", "-q", "-b", "exp/lr-sweep")
    (code / "train.py").write_text("print('train')\n")
    git(code, "add", "train.py")
    git(code, "commit", "-qm", "training code")
    head = git(code, "rev-parse", "HEAD").strip()
    monkeypatch.chdir(code)
    m = ModelsCheckpointsManage("AI-Convo", "whisper")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000, seed=1)
    m.upload_model_checkpoint(metrics={"loss": 0.5}, params={"lr": 0.001, "batch": 32})
    assert m.tag_model_checkpoint() == "v0.1"
    meta = m.get_model_metadata("v0.1")
    assert meta.params == {"lr": 0.001, "batch": 32} and meta.metrics == {"loss": 0.5}
    assert meta.code == {"commit": head, "branch": "exp/lr-sweep", "dirty": False}
    (code / "train.py").write_text("print('changed')\n")  # an uncommitted change to the code
    write_model(m.repo_path / "model.bin", 1000, seed=2)
    cpv("model", "upload", *T, "--metrics", "loss=0.4", "--params", "lr=0.0005,batch=32", "--tag")
    info = cpv("model", "info", "v0.2", *T).stdout
    assert "params   batch=32 lr=0.0005" in info and f"code     {head[:10]} on exp/lr-sweep (uncommitted changes)" in info
    diff = json.loads(cpv("diff", "v0.1", "v0.2", *T, "--json").stdout)
    assert diff["params"]["lr"] == {"a": 0.001, "b": 0.0005, "delta": 0.0005 - 0.001}
    assert "param lr" in cpv("model", "diff", "v0.1", "v0.2", *T).stdout
    monkeypatch.chdir(m.repo_path)  # inside the workspace: that is not training code
    write_model(m.repo_path / "model.bin", 1000, seed=3)
    m.upload_model_checkpoint()
    assert m.tag_model_checkpoint() == "v0.3" and m.get_model_metadata("v0.3").code == {}
