"""The cpv command line: click's runner for every command, a real subprocess for the main flow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cpv_core import hookimpl
from cpv_core.cli import cli, main
from cpv_core.errors import CheckpointNotFoundError, ValidationError
from cpv_core.plugins import get_plugin_manager

from .helpers import tree_state, worktree, write_model

T = ["-t", "AI-Convo", "--model-name", "whisper"]


def run(*args: str, expect: int = 0, cwd: Path | None = None, stdout_only: bool = True) -> str:
    """Run ``cpv ARGS`` through main() (error handling included) in-process;
    return stdout (the results), or everything printed with ``stdout_only=False``."""
    runner = CliRunner()
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        result = runner.invoke(main_wrapper, list(args), catch_exceptions=False)
    finally:
        os.chdir(old)
    assert result.exit_code == expect, f"exit {result.exit_code}: {result.output}"
    return result.stdout if stdout_only and expect == 0 else result.output


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def main_wrapper(ctx: click.Context) -> None:
    main(list(ctx.args))


@pytest.fixture
def workspace(cpv_home, tmp_path) -> Path:
    run("init", "model", "-t", "AI-Convo", "-m", "whisper")
    return cpv_home / "workspaces" / "AI-Convo" / "whisper"


def first_checkpoint(workspace: Path, nfiles: int, metrics: str | None = None) -> None:
    """data/ of ``nfiles`` files and a 1000-byte model, uploaded and combined as checkpoint v0.1."""
    from .helpers import write_data_dir

    write_data_dir(workspace / "data", nfiles)
    write_model(workspace / "model.bin", 1000)
    run("data", "upload", *T)
    run("model", "upload", *T, *(["--metrics", metrics] if metrics else []))
    run("checkpoint", "create", *T)


def test_help_lists_the_seed_commands():
    out = CliRunner().invoke(cli, ["--help"]).output
    for name in ("init", "model", "data", "aws-config", "bitbucket-config", "validate", "plugins", "quickstart", "config"):
        assert name in out
    model_help = CliRunner().invoke(cli, ["model", "--help"]).output
    for name in ("upload", "download", "tag", "list", "revert", "info"):
        assert name in model_help


def test_model_cycle_through_the_cli(workspace, tmp_path):
    first = write_model(workspace / "model.bin", 3000, seed=1)
    run("model", "upload", *T, "--metrics", '{"loss": 0.5}', "-m", "first")
    assert run("model", "tag", *T, "-m", "baseline").strip() == "v0.1"
    metrics_file = tmp_path / "m.json"
    metrics_file.write_text('{"loss": 0.25, "acc": 0.9}')
    src = tmp_path / "new.bin"
    write_model(src, 4000, seed=2)
    run("model", "upload", str(src), *T, "--metrics", str(metrics_file))
    assert run("model", "tag", *T, "--version", "v1.0").strip() == "v1.0"

    listing = json.loads(run("model", "list", *T, "--json"))
    assert [v["version"] for v in listing["versions"]] == ["v0.1", "v1.0"]
    assert listing["versions"][1]["metrics"] == {"loss": 0.25, "acc": 0.9}
    table = run("model", "list", *T)
    assert "VERSION" in table and "v1.0" in table and "loss=0.25" in table

    info = json.loads(run("model", "info", "v0.1", *T, "--json"))
    assert info["version"] == "v0.1" and info["message"] == "baseline" and info["size"] == 3000
    out_dir = tmp_path / "dl"
    path = run("model", "download", "v0.1", *T, "-o", str(out_dir)).strip()
    assert Path(path).read_bytes() == first
    run("model", "revert", "v0.1", *T)
    assert (workspace / "model.bin").read_bytes() == first


def test_team_and_model_come_from_the_current_workspace(workspace):
    write_model(workspace / "model.bin", 1000)
    run("model", "upload", cwd=workspace)
    assert run("model", "tag", cwd=workspace).strip() == "v0.1"
    assert "v0.1" in run("model", "list", cwd=workspace / ".cpv")


def test_dry_run_of_mutating_commands_changes_nothing(workspace, cpv_home):
    write_model(workspace / "model.bin", 1000)
    run("model", "upload", *T)
    run("model", "tag", *T)
    write_model(workspace / "model.bin", 2000)
    run("model", "upload", *T)
    remotes = cpv_home / "local"
    before = tree_state(workspace, remotes)
    for args in (
        ["model", "upload", *T, "--metrics", '{"x": 1}'],
        ["model", "tag", *T],
        ["model", "revert", "v0.1", *T],
        ["model", "download", "v0.1", *T, "-o", str(cpv_home / "x")],
        ["init", "model", "-t", "Other", "-m", "new"],
    ):
        assert "[dry-run]" in run(*args, "--dry-run", stdout_only=False), args
    assert tree_state(workspace, remotes) == before
    assert not (cpv_home / "workspaces" / "Other").exists()


def test_errors_are_one_line_with_a_fix_and_a_documented_exit_code(workspace, capsys):
    out = run("model", "download", "v9.9", *T, expect=CheckpointNotFoundError.exit_code)
    assert "error:" in out and "fix:" in out and "Traceback" not in out
    out = run("model", "tag", *T, "--version", "1.0", expect=ValidationError.exit_code)
    assert "'1.0'" in out
    out = run("model", "upload", *T, "--metrics", "{broken", expect=ValidationError.exit_code)
    assert "not valid JSON" in out
    out = run("init", "model", "-t", "../evil", "-m", "x", expect=ValidationError.exit_code)
    assert "'../evil'" in out


def test_outside_a_workspace_without_names_says_what_to_pass(tmp_path):
    out = run("model", "list", expect=ValidationError.exit_code, cwd=tmp_path)
    assert "--team-name" in out


def test_plugins_and_config_show_and_validate_json(cpv_home):
    plugins = json.loads(run("plugins", "--json"))
    assert {"git_tags", "local", "dvc_s3", "bitbucket_ssh"} <= {p["name"] for p in plugins}
    shown = json.loads(run("config", "show", "--json"))
    assert shown["backends"] == {"storage": "local", "hosting": "local", "versioning": "git-tags"}
    report = json.loads(run("validate", "--json"))
    assert report["ok"] is True and report["checks"]
    run("config", "set", "storage", "dirstore")
    assert json.loads(run("config", "show", "--json"))["backends"]["storage"] == "dirstore"


def test_a_plugin_can_add_a_command():
    class Plugin:
        @hookimpl
        def cpv_register_commands(self, cli):
            @cli.command("hello-plugin")
            def hello():
                click.echo("hello from a plugin")

    get_plugin_manager().register(Plugin(), name="hello")
    try:
        assert "hello from a plugin" in run("hello-plugin")
    finally:
        cli.commands.pop("hello-plugin", None)  # the group is module-global


def test_quickstart_runs_the_whole_cycle():
    out = run("quickstart", stdout_only=False)
    for step in ("uploaded", "tagged v0.3", "versions: v0.1, v0.2, v0.3", "downloaded v0.2", "reverted", "done"):
        assert step in out


def test_main_flow_in_a_real_subprocess(cpv_home, tmp_path):
    cpv = [sys.executable, "-m", "cpv_core.cli"]
    env = dict(os.environ)

    def sh(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*cpv, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)

    assert sh("init", "model", "-t", "T", "-m", "m").returncode == 0
    ws = cpv_home / "workspaces" / "T" / "m"
    data = write_model(ws / "model.bin", 2222)
    assert sh("model", "upload", "--metrics", '{"loss": 1}', cwd=ws).returncode == 0
    tagged = sh("model", "tag", cwd=ws)
    assert tagged.returncode == 0 and tagged.stdout.strip() == "v0.1"
    got = sh("model", "download", "v0.1", "-o", str(tmp_path / "o"), cwd=ws)
    assert Path(got.stdout.strip()).read_bytes() == data
    missing = sh("model", "info", "v3.0", cwd=ws)
    assert missing.returncode == CheckpointNotFoundError.exit_code and "Traceback" not in missing.stderr


def test_data_and_checkpoint_commands(workspace, tmp_path):
    from .helpers import write_data_dir

    write_data_dir(workspace / "data", 6)
    write_model(workspace / "model.bin", 1000)
    run("data", "upload", *T, "-m", "initial data")
    run("model", "upload", *T, "--metrics", '{"loss": 0.3}')
    created = run("checkpoint", "create", *T, "-m", "both")
    assert created.strip() == "checkpoint v0.1: model v0.1, data v0.1"
    listing = json.loads(run("checkpoint", "list", *T, "--json"))
    assert listing["versions"][0]["lineage"] == {"model": "v0.1", "data": "v0.1"}
    info = json.loads(run("checkpoint", "info", "v0.1", *T, "--json"))
    assert info["model"]["metrics"] == {"loss": 0.3}
    assert run("data", "list", *T, "--json").count('"version": "v0.1"') == 1
    part = run("data", "download", "v0.1", *T, "-o", str(tmp_path / "p"), "--sub-path", "test").strip()
    assert Path(part).name == "test" and len(list(Path(part).iterdir())) == 2
    (workspace / "data" / "train" / "sample_0.txt").write_text("changed")
    run("data", "upload", *T)
    run("data", "tag", *T)
    run("checkpoint", "revert", "v0.1", *T)
    assert (workspace / "data" / "train" / "sample_0.txt").read_text() == "sample 0\n"
    write_model(workspace / "model.bin", 1500)
    run("model", "upload", *T)
    tags_before = subprocess.run(["git", "tag", "-l"], cwd=workspace, capture_output=True, text=True).stdout
    assert "[dry-run] create checkpoint version v0.2" in run("checkpoint", "create", *T, "--dry-run", stdout_only=False)
    assert subprocess.run(["git", "tag", "-l"], cwd=workspace, capture_output=True, text=True).stdout == tags_before


def test_diff_of_model_and_data_versions(workspace):
    first_checkpoint(workspace, 6, '{"loss": 0.5, "acc": 0.8}')
    write_model(workspace / "model.bin", 1500)
    (workspace / "data" / "train" / "sample_0.txt").write_text("changed")
    (workspace / "data" / "test" / "new.txt").write_text("new")
    (workspace / "data" / "validation" / "sample_1.txt").unlink()
    run("data", "upload", *T)
    run("model", "upload", *T, "--metrics", '{"loss": 0.25, "acc": 0.8}')
    run("checkpoint", "create", *T)
    d = json.loads(run("diff", "v0.1", "v0.2", *T, "--json"))
    assert d["metrics"]["loss"]["delta"] == -0.25 and d["metrics"]["acc"]["delta"] == 0
    assert d["size"]["delta"] == 500 and d["digest"]["changed"]
    dd = json.loads(run("diff", "v0.1", "v0.2", *T, "--kind", "data", "--json"))
    assert dd["files"] == {"added": ["test/new.txt"], "removed": ["validation/sample_1.txt"], "changed": ["train/sample_0.txt"]}
    text = run("diff", "v0.1", "v0.2", *T)
    assert "loss" in text and "-0.25" in text


METADATA_KEYS = {
    *("kind", "version", "commit", "author", "date", "message", "tag_message", "upload_message"),
    *("metrics", "size", "size_mb", "digest", "path", "lineage", "params", "code"),
}


def test_json_outputs_match_the_documented_schemas(workspace, tmp_path):
    """The key sets documented in docs/cli.md."""
    first_checkpoint(workspace, 3, '{"loss": 1}')
    write_model(workspace / "model.bin", 1100)
    run("model", "upload", *T)
    run("model", "tag", *T)
    listing = json.loads(run("model", "list", *T, "--json"))
    assert set(listing) == {"kind", "team", "model", "versions"}
    assert all(set(v) == METADATA_KEYS | {"stages", "pruned"} for v in listing["versions"])
    assert set(json.loads(run("model", "info", *T, "--json"))) == METADATA_KEYS
    combined = json.loads(run("checkpoint", "info", *T, "--json"))
    assert set(combined) == {"version", "commit", "date", "author", "message", "lineage", "model", "data"}
    assert set(combined["model"]) == METADATA_KEYS and set(combined["lineage"]) == {"model", "data"}
    assert set(json.loads(run("checkpoint", "list", *T, "--json"))) == {"kind", "team", "model", "versions"}
    diff = json.loads(run("diff", "v0.1", "v0.2", *T, "--json"))
    assert set(diff) == {"kind", "a", "b", "metrics", "params", "digest", "size", "files"}
    assert set(diff["metrics"]["loss"]) == {"a", "b", "delta"} and set(diff["files"]) == {"added", "removed", "changed"}
    validate = json.loads(run("validate", "--json"))
    assert set(validate) == {"ok", "checks"} and set(validate["checks"][0]) == {"name", "ok", "detail", "fix"}
    verify = json.loads(run("verify", "v0.1", *T, "--json"))
    assert set(verify) == {"kind", "version", "where", "ok", "problems"} and verify["ok"]
    plugins = json.loads(run("plugins", "--json"))
    assert all(set(p) == {"name", "module", "version", "hooks", "builtin"} for p in plugins)
    assert set(json.loads(run("config", "show", "--json"))) == {"config_file", "settings", "backends", "workspace_root"}


def test_bare_init_and_config_dry_runs(cpv_home, tmp_path):
    assert "[dry-run]" in run("init", "-t", "T", "-m", "bare", "--dry-run", stdout_only=False)
    assert not (cpv_home / "workspaces" / "T").exists()
    run("init", "-t", "T", "-m", "bare")
    assert (cpv_home / "workspaces" / "T" / "bare" / ".cpv" / "workspace.json").exists()
    assert "[dry-run]" in run("aws-config", "--profile", "p", "--dry-run", stdout_only=False)
    assert "[dry-run]" in run("bitbucket-config", "-u", "alice", "--dry-run", stdout_only=False)
    assert "[dry-run]" in run("config", "set", "storage", "dirstore", "--dry-run", stdout_only=False)
    assert not (cpv_home / "config.json").exists() and not (Path(os.environ["HOME"]) / ".ssh").exists()


def imported_after(args: list[str], modules: tuple[str, ...]) -> tuple[str, list[str]]:
    """What ``cpv ARGS`` printed in a fresh interpreter, and which of ``modules`` it imported."""
    code = (
        "import sys; from cpv_core.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        f"print('IMPORTED', *(m for m in {modules!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    printed, _, imported = out.rpartition("IMPORTED")
    return printed, imported.split()


def test_model_list_does_not_import_dvc_boto3_or_s3fs(cpv_home):
    run("init", "model", "-t", "T", "-m", "light")
    _, imported = imported_after(["model", "list", "-t", "T", "--model-name", "light"], ("dvc", "boto3", "botocore", "s3fs", "git"))
    assert imported == []


def test_help_imports_no_backend_library_and_not_importlib_metadata(cpv_home):
    """`cpv --help` stays within its start-up budget: plugins are found by reading their
    entry_points.txt (cpv_core.entry_points), not through importlib.metadata (~45 ms)."""
    printed, imported = imported_after(["--help"], ("importlib.metadata", "email", "dvc", "boto3", "git", "ruamel"))
    assert "mlflow-sync" in printed and imported == []


def test_configuration_commands_through_the_runner(cpv_home, tmp_path):
    home = Path(os.environ["HOME"])
    creds = tmp_path / "credentials"
    creds.write_text("[team]\naws_access_key_id = AKIAX\naws_secret_access_key = secret-value-xyz\n")
    out = run(
        "aws-config",
        "--credential-path",
        str(creds),
        "--profile",
        "team",
        "--bucket",
        "my-bucket",
        "--endpoint-url",
        "http://127.0.0.1:9",
        stdout_only=False,
    )
    assert "profile team" in out and "my-bucket" in out
    run("config", "aws", "--credential-path", str(creds), "--profile", "team", "--bucket", "other-bucket")
    shown = json.loads(run("config", "show", "--json"))
    assert shown["settings"]["aws"]["bucket"] == "other-bucket" and shown["backends"]["storage"] == "dvc-s3"
    assert "secret-value-xyz" not in json.dumps(shown)
    out = run("bitbucket-config", "-k", "id_cli", "-u", "alice", "-w", "ws", stdout_only=False)
    assert "ssh-ed25519" in out and (home / ".ssh" / "id_cli").exists()
    run("config", "bitbucket", "-k", "id_cli", "-u", "alice", "-w", "ws2")
    assert json.loads(run("config", "show", "--json"))["settings"]["bitbucket"]["workspace"] == "ws2"
    report = json.loads(CliRunner().invoke(main_wrapper, ["validate", "--json"]).stdout)
    assert report["ok"] is False and "aws.endpoint" in {c["name"] for c in report["checks"] if not c["ok"]}
    run("validate", expect=4)


def test_dry_run_of_data_and_checkpoint_commands_changes_nothing(workspace, cpv_home):
    first_checkpoint(workspace, 6)
    (workspace / "data" / "train" / "sample_0.txt").write_text("changed")
    run("data", "upload", *T)
    before = tree_state(workspace, cpv_home / "local")
    (workspace / "data" / "test" / "new.txt").write_text("new")
    after_edit = tree_state(workspace, cpv_home / "local")
    for args in (
        ["data", "upload", *T],
        ["data", "revert", "v0.1", *T, "--force"],
        ["checkpoint", "revert", "v0.1", *T, "--force"],
        ["data", "download", "v0.1", *T, "-o", str(cpv_home / "never")],
    ):
        assert "[dry-run]" in run(*args, "--dry-run", stdout_only=False), args
    (workspace / "data" / "test" / "new.txt").unlink()
    assert "[dry-run]" in run("data", "tag", *T, "--dry-run", stdout_only=False)
    assert "[dry-run]" in run("checkpoint", "create", *T, "--dry-run", stdout_only=False)
    assert tree_state(workspace, cpv_home / "local") == before and after_edit != before
    assert not (cpv_home / "never").exists()


def test_tagging_an_uploaded_model_does_not_import_dvc(cpv_home):
    """The clean-tree check answers from a stat cache when model.bin is as uploaded."""
    run("init", "model", "-t", "T", "-m", "fasttag")
    ws = cpv_home / "workspaces" / "T" / "fasttag"
    write_model(ws / "model.bin", 1000)
    run("model", "upload", "-t", "T", "--model-name", "fasttag")
    code = (
        "import sys; from cpv_core.cli import main\n"
        "try:\n    main(['-q', 'model', 'tag', '-t', 'T', '--model-name', 'fasttag'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('DVC', 'dvc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines() == ["v0.1", "DVC False"]
    # a modified file is still noticed (the stat no longer matches: DVC decides)
    write_model(ws / "model.bin", 1000)
    run("model", "tag", "-t", "T", "--model-name", "fasttag", "--version", "v2.0", expect=10)


def test_init_data_and_data_revert_info_through_the_runner(cpv_home, tmp_path):
    from .helpers import write_data_dir

    src = tmp_path / "dataset"
    write_data_dir(src, 6)
    assert run("init", "data", "-t", "T", "-m", "d", "--data-path", str(src)).strip() == str(cpv_home / "workspaces" / "T" / "d")
    ws = cpv_home / "workspaces" / "T" / "d"
    args = ["-t", "T", "--model-name", "d"]
    assert [v["version"] for v in json.loads(run("data", "list", *args, "--json"))["versions"]] == ["v0.1"]  # init data tags it
    (ws / "data" / "train" / "sample_0.txt").write_text("changed")
    run("data", "upload", *args)
    assert run("data", "tag", *args).strip() == "v0.2"
    info = json.loads(run("data", "info", "v0.1", *args, "--json"))
    assert info["kind"] == "data" and info["path"] == "data"
    run("data", "revert", "v0.1", *args)
    assert (ws / "data" / "train" / "sample_0.txt").read_text() == "sample 0\n"


def test_the_options_the_docs_promise_work_where_they_were_missing(workspace, tmp_path):
    """pull/sync --dry-run and --json, plot --json, report --dry-run, checkpoint revert --json,
    version --json, quickstart --dry-run: each does what it says and a dry run changes nothing."""
    from cpv_core import ModelsCheckpointsManage

    first_checkpoint(workspace, 3, metrics='{"loss": 0.5}')
    write_model(workspace / "model.bin", 1000, seed=9)
    run("model", "upload", *T, "--metrics", '{"loss": 0.25}')
    run("model", "tag", *T)
    plot = json.loads(run("model", "plot", "loss", *T, "--json"))
    assert plot == {"metric": "loss", "values": [{"version": "v0.1", "value": 0.5}, {"version": "v0.2", "value": 0.25}]}
    report = tmp_path / "r.html"
    assert "[dry-run] would write" in run("report", "-o", str(report), "--dry-run", *T, stdout_only=False) and not report.exists()
    assert json.loads(run("version", "--json"))["version"]
    reverted = json.loads(run("checkpoint", "revert", "v0.1", *T, "--json"))
    assert reverted["reverted_to"]["version"] == "v0.1" and reverted["commit"]
    bob = ModelsCheckpointsManage("AI-Convo", "whisper", repo_path=tmp_path / "bob")
    bob.import_model_init()
    write_model(bob.repo_path / "model.bin", 1000, seed=11)
    bob.upload_model_checkpoint()
    before = worktree(workspace)
    planned = json.loads(run("pull", *T, "--dry-run", "--json"))
    assert planned == {"updated": ["model.bin"], "dry_run": True}
    assert worktree(workspace) == before  # only the fetch happened
    assert json.loads(run("sync", *T, "--json")) == {"updated": ["model.bin"], "dry_run": False}
    steps = run("quickstart", "--dry-run", stdout_only=False)
    assert "[dry-run] would upload three checkpoints" in steps


def test_quickstart_ends_with_the_three_next_commands(tmp_path):
    out = run("quickstart", "--home", str(tmp_path / "qs"), stdout_only=False).splitlines()
    assert out[-4].startswith("done:") and [line.split()[0:2] for line in out[-3:]] == [["cpv", "init"], ["cpv", "model"], ["cpv", "setup"]]


def test_upload_tags_in_one_step_and_takes_name_value_metrics(workspace):
    write_model(workspace / "model.bin", 1000, seed=1)
    out = run("model", "upload", *T, "--metrics", "loss=0.2,wer=0.04,note=bf16,ok=true", "--tag").splitlines()
    assert out[-1] == "v0.1"
    assert json.loads(run("model", "info", "v0.1", *T, "--json"))["metrics"] == {"loss": 0.2, "wer": 0.04, "note": "bf16", "ok": True}
    write_model(workspace / "model.bin", 1000, seed=2)
    done = json.loads(run("model", "upload", *T, "--version", "v1.0", "--json"))
    assert done["version"] == "v1.0" and done["changed"]
    before = tree_state(workspace)
    write_model(workspace / "model.bin", 1000, seed=3)
    bad = run("model", "upload", *T, "--version", "v1", expect=2)
    assert "is not of the form" in bad
    assert "not NAME=VALUE" in run("model", "upload", *T, "--metrics", "loss=0.2,wer", expect=2)
    assert "gives 'loss' twice" in run("model", "upload", *T, "--metrics", "loss=1,loss=2", expect=2)
    assert {k: v for k, v in tree_state(workspace).items() if not k.endswith("model.bin")} == {
        k: v for k, v in before.items() if not k.endswith("model.bin")
    }  # refused before anything was stored or committed


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet=st.characters(blacklist_characters=",=", blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=12),
        st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False, width=32), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_name_value_pairs_round_trip(pairs):
    from cpv_core.metrics import parse_pairs

    text = ",".join(f"{k}={json.dumps(v)}" for k, v in pairs.items())
    assert parse_pairs(text) == pairs


def test_small_truths_config_set_confirms_show_keeps_the_port_and_help_lists_aliases_once(cpv_home):
    from cpv_core.settings import mask

    said = run("config", "set", "notify.webhook", "https://hooks.example.com:8443/services/T0/s3cr3t", stdout_only=False)
    assert "notify.webhook = https://hooks.example.com:8443/*** (was unset)" in said and "s3cr3t" not in said
    assert "https://hooks.example.com:8443/***" in run("config", "show", stdout_only=False)
    assert mask("http://127.0.0.1/x") == "http://127.0.0.1/***" and mask("http://h:bad/x") == "http://h/***"
    listing = CliRunner().invoke(cli, ["--help"]).output
    names = [line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.split()]
    assert "registry" in names and "models" not in names and "pull" in names and "sync" not in names
    assert "(alias: models)" in listing and "(alias: sync)" in listing
    assert "Alias: `cpv models`" in CliRunner().invoke(cli, ["registry", "--help"]).output
