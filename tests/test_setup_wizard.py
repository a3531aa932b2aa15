"""`cpv setup`, driven as a person would: in a real pseudo-terminal (pexpect),
against the test SeaweedFS and sshd; and with flags only, as CI would."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from cpv_core import hookimpl
from cpv_core.backends import SettingInfo, SetupChoice, SetupQuestion
from cpv_core.config import CPVConfig
from cpv_core.plugins import Plugins, get_plugin_manager

from .helpers import S3_BUCKET, S3_SECRET_KEY, write_aws_credentials
from .test_history import cpv

TIMEOUT = 60


def spawn_setup(*args: str) -> pexpect.spawn:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return pexpect.spawn(sys.executable, ["-m", "cpv_core.cli", "setup", *args], env=env, encoding="utf-8", timeout=TIMEOUT)


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0))


def config_bytes(cpv_home: Path) -> bytes | None:
    path = cpv_home / "config.json"
    return path.read_bytes() if path.exists() else None


def test_pressing_enter_throughout_configures_the_local_default(cpv_home):
    child = spawn_setup()
    child.expect_exact("local      a directory on this machine")
    child.expect_exact("Storage (local/azure/gcs/s3) [local]:")
    child.sendline("")
    child.expect_exact("Hosting (local/bitbucket/git) [local]:")
    child.sendline("")
    child.expect_exact("storage: local (no settings)")
    child.expect_exact("Write this configuration to")
    child.sendline("y")
    child.expect_exact("checking the configuration (cpv validate):")
    child.expect(r"ok\s+local\s+no remote credentials configured")
    child.expect_exact("next:")
    child.expect_exact("cpv init model -t TEAM -m MODEL")
    assert finish(child) == 0
    cfg = CPVConfig()
    assert (cfg.backend_name("storage"), cfg.backend_name("hosting")) == ("local", "local")
    cpv("init", "model", "-t", "AI-Convo", "-m", "whisper")  # the next step works


def test_s3_and_bitbucket_against_the_test_servers_end_with_a_passing_validate(cpv_home, seaweed, sshd):
    home = Path(os.environ["HOME"])
    creds = write_aws_credentials(home)
    child = spawn_setup()
    child.expect_exact("Storage (local/azure/gcs/s3) [local]:")
    child.sendline("s3")
    child.expect_exact("(cpv stores only this path, never the keys)")
    child.expect(r"AWS credentials file \[.*credentials\]:")
    child.sendline(str(creds))
    child.expect_exact("Profile in that file [default]:")
    child.sendline("nobody")  # not in the file: said, and asked again
    child.expect_exact("profile 'nobody' is not in")
    child.expect_exact("Profile in that file [default]:")
    child.sendline("cpv-test")
    child.expect_exact("S3 bucket (it must exist; objects go under {team}/{model}/): ")  # no default bucket: asked
    child.sendline("Bad_Bucket")
    child.expect_exact("bucket name 'Bad_Bucket' is not a valid S3 bucket name")
    child.expect_exact("S3 bucket (it must exist")
    child.sendline(S3_BUCKET)
    child.expect_exact("Endpoint URL (empty for AWS itself):")
    child.sendline(seaweed.endpoint)
    child.expect_exact("Region [us-east-1]:")
    child.sendline("")
    child.expect_exact("Hosting (local/bitbucket/git) [local]:")
    child.sendline("bitbucket")
    child.expect_exact("Bitbucket user:")
    child.sendline("tester")
    child.expect_exact("Workspace (or project) holding the repositories [tester]:")
    child.sendline("ai-team")
    child.expect_exact("SSH key (a name under ~/.ssh or a path; created if missing, reused if present) [id_ed25519_bitbucket]:")
    child.sendline("id_cpv_wizard")
    child.expect_exact("SSH host [altssh.bitbucket.org]:")
    child.sendline(sshd.host)
    child.expect_exact("SSH port [443]:")
    child.sendline(str(sshd.port))
    child.expect_exact("SSH login user [git]:")
    child.sendline(sshd.user)
    child.expect_exact("Write this configuration to")
    child.sendline("y")
    child.expect_exact(f"storage: S3 bucket {S3_BUCKET} at {seaweed.endpoint}")
    child.expect_exact("its public half:")
    child.expect_exact("Add the public key above to Bitbucket")
    public = (home / ".ssh" / "id_cpv_wizard.pub").read_text()
    sshd.authorize(public)  # what the person does in Bitbucket's settings
    child.sendline("")
    child.expect_exact("checking the configuration (cpv validate):")
    child.expect_exact("next:")
    checks = child.before
    for check in ("aws.credentials_file", "aws.keys", "aws.endpoint", "bitbucket.key", "bitbucket.host", "bitbucket.auth"):
        assert re.search(rf"ok\s+{re.escape(check)}\s", checks), checks
    assert "FAIL" not in checks
    assert finish(child) == 0
    cfg = CPVConfig()
    assert (cfg.backend_name("storage"), cfg.backend_name("hosting")) == ("dvc-s3", "bitbucket-ssh")
    assert cfg.get_config("aws.endpoint_url") == seaweed.endpoint and cfg.get_config("bitbucket.workspace") == "ai-team"
    assert S3_SECRET_KEY not in (cpv_home / "config.json").read_text()  # only the file's path is stored
    cpv("validate")


def test_ctrl_c_at_a_question_leaves_the_previous_configuration_untouched(cpv_home, tmp_path):
    cpv("config", "set", "local.root", str(tmp_path / "remotes"))
    before = config_bytes(cpv_home)
    child = spawn_setup()
    child.expect_exact("Storage (local/azure/gcs/s3) [local]:")
    child.sendline("s3")
    child.expect(r"AWS credentials file \[")
    child.sendintr()
    child.expect_exact("setup interrupted: the configuration was not changed")
    assert finish(child) == 130
    assert config_bytes(cpv_home) == before


def s3_flags(seaweed) -> list[str]:
    """`cpv setup` flags for the test SeaweedFS (the credentials file written in the test HOME)."""
    creds = write_aws_credentials(Path(os.environ["HOME"]))
    return ["--storage", "s3", "--s3-credential-path", str(creds), "--s3-profile", "cpv-test", "--s3-bucket", S3_BUCKET,
            "--s3-endpoint-url", seaweed.endpoint]  # fmt: skip


def test_non_interactive_setup_takes_every_answer_from_flags(cpv_home, seaweed):
    out = cpv(
        "setup",
        "--non-interactive",
        *s3_flags(seaweed),
        "--hosting",
        "local",
    ).output
    assert "ok   aws.endpoint" in out and "next:" in out
    assert CPVConfig().backend_name("storage") == "dvc-s3"
    # back to the local default: the S3 settings go, so nothing stale is validated
    out = cpv("setup", "--non-interactive", "--storage", "local").output
    assert "storage: the aws settings were removed (local replaces them)" in out
    assert CPVConfig().get_config("aws") is None and CPVConfig().backend_name("storage") == "local"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--hosting", "bitbucket"], 2, "--bitbucket-user"),
        (["--storage", "s3", "--s3-credential-path", "/nonexistent/credentials"], 4, "--s3-credential-path"),
        (["--storage", "dirstore"], 2, "Invalid value for '--storage'"),
    ],
)
def test_a_missing_or_wrong_flag_is_named_and_nothing_is_written(cpv_home, args, code, message):
    cpv("config", "set", "events.timeout", "3")
    before = config_bytes(cpv_home)
    out = cpv("setup", "--non-interactive", *args, expect=code).output
    assert message in out
    assert config_bytes(cpv_home) == before


def test_a_failure_while_writing_puts_the_configuration_back(cpv_home, seaweed):
    home = Path(os.environ["HOME"])
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "half_key").write_text("private half only\n")  # its .pub is missing: the Bitbucket step fails
    cpv("config", "set", "events.timeout", "3")
    before = json.loads(config_bytes(cpv_home) or b"{}")
    out = cpv(
        "setup",
        "--non-interactive",
        *s3_flags(seaweed),
        "--hosting",
        "bitbucket",
        "--bitbucket-user",
        "tester",
        "--bitbucket-key",
        "half_key",
        expect=4,
    ).output
    assert "half_key exists but" in out
    assert json.loads(config_bytes(cpv_home) or b"{}") == before  # the S3 step written before it was undone


def test_a_dry_run_shows_the_plan_and_writes_nothing(cpv_home):
    before = config_bytes(cpv_home)
    out = cpv("setup", "--non-interactive", "--dry-run", "--hosting", "bitbucket", "--bitbucket-user", "tester").output
    assert "[dry-run] would configure storage: local (no settings)" in out
    assert "[dry-run] would configure hosting: bitbucket (user tester, workspace tester, key id_ed25519_bitbucket" in out
    assert config_bytes(cpv_home) == before and not (Path(os.environ["HOME"]) / ".ssh").exists()


class DemoPlugin:
    """A third-party plugin: a setting of its own and a storage answer for `cpv setup`."""

    @hookimpl
    def cpv_settings(self):
        return [SettingInfo("demo.root", "where the demo store keeps objects"), SettingInfo("demo.hook_url", "a secret URL", secret=True)]

    @hookimpl
    def cpv_setup_choices(self):
        def apply(config, answers):
            config.set_config("demo.root", answers["root"])
            return [f"demo store at {answers['root']}"]

        return [
            SetupChoice("storage", "demo", "local", "the demo store", questions=(SetupQuestion("root", "Root", "/srv/demo"),), apply=apply)
        ]


def test_a_plugin_adds_its_own_settings_and_setup_answers(cpv_home):
    get_plugin_manager().register(DemoPlugin(), name="demo")
    demo = next(p for p in Plugins().describe() if p.name == "demo")
    assert set(demo.hooks) == {"cpv_settings", "cpv_setup_choices"}
    cpv("config", "set", "demo.root", "/tmp/x")  # a declared key is accepted ...
    assert "'demo.rot' is not a cpv setting" in cpv("config", "set", "demo.rot", "/tmp/x", expect=3).output  # ... a typo is not
    cpv("config", "set", "demo.hook_url", "https://hooks.example.com/T/s3cr3t")
    assert "s3cr3t" not in cpv("config", "show").output
    out = cpv("setup", "--non-interactive", "--storage", "demo", "--demo-root", "/srv/objects").output
    assert "demo store at /srv/objects" in out and CPVConfig().get_config("demo.root") == "/srv/objects"
