"""The docs match the code: generated references are current, and every
command the docs show exists."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cpv_core.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.endswith("-reference.md")),
]


def test_generated_reference_pages_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_reference.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def shell_blocks(text: str) -> list[list[str]]:
    """Lines of every ```bash / ```sh / unlabelled fenced block, continuations joined."""
    blocks, current, inside = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            if inside is None:  # the end of a block in another language
                inside = False
            elif inside:
                blocks.append(current)
                current, inside = [], False
            elif line.strip() in {"```", "```bash", "```sh"}:
                inside = True
            else:
                inside = None  # another language: skip until its fence closes
            continue
        if inside is None:
            continue
        if inside:
            if current and current[-1].endswith("\\"):
                current[-1] = current[-1][:-1] + " " + line.strip()
            else:
                current.append(line)
    return blocks


def documented_cpv_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOC_FILES:
        for block in shell_blocks(path.read_text()):
            for line in block:
                line = line.split(" #")[0].strip()
                for part in re.split(r"&&|\|", line):
                    part = part.strip()
                    if part.startswith("cpv ") or part.startswith(".venv/bin/cpv "):
                        found.append((path.name, shlex.split(part.replace(".venv/bin/cpv", "cpv"))[1:]))
    return found


@pytest.mark.parametrize("doc, argv", documented_cpv_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_documented_command_parses(doc, argv, tmp_path):
    """Resolve the command path and parse its options with click (no execution)."""
    cmd: click.Command = cli
    ctx = click.Context(cli, info_name="cpv")
    placeholder_dir, placeholder_file = tmp_path / "dir", tmp_path / "file"
    placeholder_dir.mkdir()
    placeholder_file.write_text("{}")
    args = [str(placeholder_dir if a.endswith("dataset") else placeholder_file) if a.startswith("/path/to/") else a for a in argv]
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        found = cmd.get_command(ctx, name)  # plugin commands are loaded on first lookup
        assert found is not None, f"{doc}: unknown command {name!r} in `cpv {' '.join(argv)}`"
        cmd = found
        ctx = click.Context(cmd, info_name=name, parent=ctx)
    cmd.parse_args(ctx, [a for a in args if a not in {"-v", "--verbose", "-q", "--quiet"}])


def test_every_command_is_in_the_cli_reference():
    text = (ROOT / "docs" / "cli-reference.md").read_text()

    def walk(group: click.Group, prefix: str):
        for name, cmd in group.commands.items():
            yield f"{prefix} {name}"
            if isinstance(cmd, click.Group):
                yield from walk(cmd, f"{prefix} {name}")

    for path in walk(cli, "cpv"):
        assert f"## `{path}`" in text


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert "cpv quickstart" in head[0] and "pip install" in head[0]
    assert head[1].startswith("bash .ci/run")
    assert "pytest" in (ROOT / ".ci" / "run").read_text()


def test_quickstart_local_section_runs(cpv_home, tmp_path):
    """The local-default commands of docs/quickstart.md, executed in order."""
    text = (ROOT / "docs" / "quickstart.md").read_text()
    section = text.split("## 2.")[0]
    weights, better, dataset = tmp_path / "weights.bin", tmp_path / "better.bin", tmp_path / "dataset"
    weights.write_bytes(b"w" * 4096)
    better.write_bytes(b"b" * 5000)
    for split in ("train", "validation", "test"):
        (dataset / split).mkdir(parents=True)
        (dataset / split / "x.txt").write_text(split)
    cwd = tmp_path
    for block in shell_blocks(section)[1:]:
        for line in block:
            line = line.split("  #")[0].strip()
            if not line or line.startswith("#"):
                continue
            line = (
                line.replace("/tmp/", f"{tmp_path}/")
                .replace("/path/to/weights.bin", str(weights))
                .replace("/path/to/better.bin", str(better))
                .replace("/path/to/dataset", str(dataset))
                .replace("~/.cpv", str(cpv_home))
            )
            argv = shlex.split(line)
            if argv[0] == "cd":
                cwd = Path(argv[1])
                (cwd / "metrics.json").write_text('{"loss": 0.1}')  # the file the docs assume
                continue
            if argv[0] == "cp":
                (cwd / argv[2]).write_bytes(Path(argv[1]).read_bytes())
                continue
            assert argv[0] == "cpv", line
            result = subprocess.run([sys.executable, "-m", "cpv_core.cli", *argv[1:]], cwd=cwd, capture_output=True, text=True)
            assert result.returncode == 0, f"{line}: {result.stderr}"


def test_the_readme_python_snippet_runs_as_written(cpv_home, tmp_path):
    """The README's Python block, executed as it is in a fresh CPV_HOME (it failed with
    `model path ... does not exist`)."""
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", code + "\nprint(tag, artifacts.tag)\n"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["v0.1", "v0.1"]


def test_the_readme_says_how_to_reach_cpv_after_its_first_command():
    text = (ROOT / "README.md").read_text()
    use = text.split("## Use it", 1)[1].split("```", 1)[0]
    assert "source .venv/bin/activate" in use and ".venv/bin/cpv" in use


#: the commands that change something (a workspace, a remote, the config, a file): each
#: takes --dry-run; every other command only reads and takes --json (docs/quickstart.md)
CHANGING = {
    "aws-config", "bitbucket-config", "checkpoint create", "checkpoint demote", "checkpoint promote", "checkpoint revert",
    "config aws", "config azure", "config bitbucket", "config gcs", "config git", "azure-config", "gcs-config", "git-config", "config set", "data demote", "data download", "data promote", "data revert",
    "data stage-rules set", "data tag", "data upload", "gc", "init data", "init model", "mlflow-sync", "model demote",
    "model download", "model promote", "model revert", "model stage-rules set", "model tag", "model upload", "pull",
    "data retention set", "model retention set", "data export", "model export",
    "quickstart", "report", "setup", "sync",
}  # fmt: skip


def every_command() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)

    def walk(group: click.Group, prefix: str):
        for name in sorted(group.list_commands(ctx)):
            cmd = group.get_command(ctx, name)
            if isinstance(cmd, click.Group):
                yield from walk(cmd, f"{prefix}{name} ")
            elif cmd is not None:
                yield f"{prefix}{name}", cmd

    return list(walk(cli, ""))


@pytest.mark.parametrize("path, cmd", every_command(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_changing_command_takes_dry_run_and_every_read_command_json(path, cmd):
    """What docs/quickstart.md promises, for every command click knows (plugins' too)."""
    options = {opt for param in cmd.params for opt in getattr(param, "opts", [])}
    if path in CHANGING:
        assert "--dry-run" in options, f"cpv {path} changes something but takes no --dry-run"
    else:
        assert "--json" in options, f"cpv {path} reads but takes no --json (or belongs in CHANGING)"
    text = (ROOT / "docs" / "quickstart.md").read_text()
    assert "Every command that changes something takes `--dry-run`; every read command\ntakes `--json`." in text


def test_no_company_bucket_is_offered_as_a_default():
    """The original design's bucket (vmo-model-checkpoints) is nobody's default: the wizard asks."""
    from cpv_plugins.dvc_s3 import cpv_setup_choices

    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        assert "vmo-model-checkpoints" not in path.read_text(), path.name
    (s3,) = [c for c in cpv_setup_choices() if c.name == "s3"]
    bucket = next(q for q in s3.questions if q.name == "bucket")
    assert bucket.default is None
