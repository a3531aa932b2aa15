"""The bitbucket-ssh hosting and SSH credentials against a real OpenSSH server."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from cpv_core import CredentialError, ModelsCheckpointsManage, RepositoryError, ValidationError
from cpv_core.config import CPVConfig
from cpv_plugins.bitbucket_ssh import BLOCK_BEGIN, BitbucketSettings

from .helpers import git, write_model

pytestmark = pytest.mark.ssh


def home() -> Path:
    return Path(os.environ["HOME"])


def test_setup_writes_key_and_one_managed_block(bitbucket_config, sshd):
    key = home() / ".ssh" / "id_cpv_test"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    config = home() / ".ssh" / "config"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert config.read_text().count(BLOCK_BEGIN) == 1
    # other content survives, and a second setup leaves one block
    config.write_text("Host other\n  HostName example.com\n\n" + config.read_text() + "\nHost after\n  Port 2222\n")
    CPVConfig().setup_bitbucket_ssh(
        keygen_filename="id_cpv_test", bitbucket_user="tester", workspace="ai-team", host=sshd.host, port=sshd.port, ssh_user=sshd.user
    )
    text = config.read_text()
    assert text.count(BLOCK_BEGIN) == 1
    assert "Host other" in text and "Host after" in text and f"Port {sshd.port}" in text
    saved = json_config()
    assert saved["bitbucket"]["key_path"] == str(key) and "PRIVATE" not in (Path(os.environ["CPV_HOME"]) / "config.json").read_text()
    assert CPVConfig().backend_name("hosting") == "bitbucket-ssh"


def json_config() -> dict:
    import json

    return json.loads((Path(os.environ["CPV_HOME"]) / "config.json").read_text())


def test_ssh_command_uses_the_key_explicitly_and_never_disables_host_checks(bitbucket_config):
    cmd = BitbucketSettings(bitbucket_config.get_config("bitbucket")).ssh_command()
    assert "IdentitiesOnly=yes" in cmd and "BatchMode=yes" in cmd and "StrictHostKeyChecking=accept-new" in cmd
    assert "StrictHostKeyChecking=no" not in cmd and "id_cpv_test" in cmd


def test_validate_passes_then_fails_for_the_right_reason(bitbucket_config, sshd):
    report = bitbucket_config.validate_credentials()
    assert report.ok, report.to_dict()
    key = home() / ".ssh" / "id_cpv_test"
    key.chmod(0o644)
    failed = bitbucket_config.validate_credentials().failed()
    assert [c.name for c in failed] == ["bitbucket.key"] and "chmod 600" in failed[0].fix
    key.chmod(0o600)
    sshd.replace_host_key()
    failed = bitbucket_config.validate_credentials().failed()
    assert [c.name for c in failed] == ["bitbucket.host_key"], failed
    # trust the new key again (as a user would after checking it) for the next checks
    subprocess.run(
        ["ssh-keygen", "-R", f"[{sshd.host}]:{sshd.port}", "-f", str(home() / ".ssh" / "known_hosts")], check=True, capture_output=True
    )
    assert bitbucket_config.validate_credentials().ok
    sshd.stop()
    try:
        failed = bitbucket_config.validate_credentials().failed()
        assert [c.name for c in failed] == ["bitbucket.host"]
    finally:
        sshd.start()


def test_unknown_key_is_refused(bitbucket_config, sshd, tmp_path):
    cfg = CPVConfig()
    cfg.setup_bitbucket_ssh(
        keygen_filename=str(tmp_path / "unauthorized_key"), workspace="ai-team", host=sshd.host, port=sshd.port, ssh_user=sshd.user
    )
    failed = cfg.validate_credentials().failed()
    assert [c.name for c in failed] == ["bitbucket.auth"]


def test_missing_repository_names_what_to_create(bitbucket_config, sshd, cpv_home):
    m = ModelsCheckpointsManage("AI-Convo", "not-created")
    with pytest.raises(RepositoryError) as err:
        m.import_model_init()
    assert "ai-team/ai-convo-not-created" in err.value.message
    assert "ai-convo-not-created" in err.value.fix
    assert not (cpv_home / "workspaces" / "AI-Convo").exists()


def test_model_workflow_over_ssh_between_two_members(bitbucket_config, sshd, tmp_path):
    bare = sshd.create_repo("ai-team", "ai-convo-whisper")
    a = ModelsCheckpointsManage("AI-Convo", "whisper")
    a.import_model_init()
    data = write_model(a.repo_path / "model.bin", 20_000)
    a.upload_model_checkpoint(metrics={"loss": 0.3})
    assert a.tag_model_checkpoint() == "v0.1"
    assert "model/v0.1" in git(bare, "tag", "-l")
    assert git(bare, "log", "--oneline", "main").count("\n") == 2

    b = ModelsCheckpointsManage("AI-Convo", "whisper", repo_path=tmp_path / "member-b")
    b.import_model_init()
    assert b.read_checkpoint_tag() == ["v0.1"]
    art = b.download_model_checkpoint("v0.1", output_dir=tmp_path / "dl")
    assert Path(art.model_path).read_bytes() == data

    write_model(b.repo_path / "model.bin", 30_000)
    b.upload_model_checkpoint(metrics={"loss": 0.2})
    assert b.tag_model_checkpoint() == "v0.2"
    assert a.read_checkpoint_tag() == ["v0.1", "v0.2"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": "evil.example.com\n  ProxyCommand sh"},
        {"port": "22 -oProxyCommand=x"},
        {"port": 70000},
        {"ssh_user": "git\nHost *"},
        {"workspace": "../other"},
        {"keygen_filename": "key\nProxyCommand x"},
        {"repo_template": "{nope}"},
    ],
)
def test_hostile_bitbucket_settings_are_refused_before_anything_is_written(cpv_home, kwargs):
    args = {"keygen_filename": "id_x", "bitbucket_user": "tester", "workspace": "ws"}
    args.update(kwargs)
    with pytest.raises((ValidationError, CredentialError)):
        CPVConfig().setup_bitbucket_ssh(**args)
    assert not (home() / ".ssh" / "config").exists()
    assert not (cpv_home / "config.json").exists()


def _master(settings: BitbucketSettings, sshd, command: str) -> subprocess.CompletedProcess:
    import shlex

    return subprocess.run(
        [*shlex.split(settings.ssh_command()), "-O", command, "-p", str(sshd.port), f"{sshd.user}@{sshd.host}"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_ssh_connection_sharing_reuses_one_connection(bitbucket_config, sshd):
    """ControlMaster by default: the git commands leave one shared master connection behind
    (in a private directory, one per key), and every command returns (a master holding
    git's stderr open would hang it). `false` turns it off."""
    settings = BitbucketSettings(bitbucket_config.get_config("bitbucket"))
    control = settings.control_path()
    assert control is not None and "ControlMaster=auto" in settings.ssh_command()
    assert stat.S_IMODE(control.parent.stat().st_mode) == 0o700 and control.parent.stat().st_uid == os.getuid()
    other_key = BitbucketSettings({**bitbucket_config.get_config("bitbucket"), "key_path": "/elsewhere/id_other"})
    assert other_key.control_path() != control  # never another identity's connection
    sshd.create_repo("ai-team", "ai-convo-shared")
    m = ModelsCheckpointsManage("AI-Convo", "shared")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    assert m.tag_model_checkpoint() == "v0.1"
    assert m.read_checkpoint_tag() == ["v0.1"]
    check = _master(settings, sshd, "check")
    assert check.returncode == 0 and "Master running" in check.stderr
    _master(settings, sshd, "exit")
    bitbucket_config.set_config("bitbucket.connection_sharing", "false")
    assert "ControlMaster" not in BitbucketSettings(bitbucket_config.get_config("bitbucket")).ssh_command()


def test_a_dead_shared_connection_never_hangs_a_command(bitbucket_config, sshd):
    """A master killed with SIGKILL, or a socket nobody listens on, is found refused;
    ssh removes it and connects anew, and the command completes."""
    import re
    import signal
    import socket
    import time

    bitbucket_config.set_config("bitbucket.connection_sharing", "true")
    settings = BitbucketSettings(bitbucket_config.get_config("bitbucket"))
    control = settings.control_path()
    assert control is not None
    sshd.create_repo("ai-team", "ai-convo-stale")
    m = ModelsCheckpointsManage("AI-Convo", "stale")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    pid = int(re.search(r"pid=(\d+)", _master(settings, sshd, "check").stderr).group(1))
    os.kill(pid, signal.SIGKILL)  # the master dies; its socket stays behind
    time.sleep(0.2)
    assert control.is_socket()
    started = time.monotonic()
    assert m.tag_model_checkpoint() == "v0.1"
    _master(settings, sshd, "exit")
    control.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(control))  # bound, never listening: refused like a dead master's
    listener.close()
    write_model(m.repo_path / "model.bin", 2000)
    m.upload_model_checkpoint()
    assert m.tag_model_checkpoint() == "v0.2"
    assert time.monotonic() - started < 30
    assert "Master running" in _master(settings, sshd, "check").stderr
    _master(settings, sshd, "exit")


def test_validate_with_a_model_checks_that_models_repository(bitbucket_config, sshd):
    from click.testing import CliRunner

    from cpv_core.cli import cli

    def validate(*args: str) -> tuple[int, dict]:
        import json

        result = CliRunner().invoke(cli, ["validate", "--json", *args])
        return result.exit_code, json.loads(result.stdout)

    code, report = validate("-t", "AI-Convo", "--model-name", "unborn")
    failed = [c for c in report["checks"] if not c["ok"]]
    assert code == 4 and [c["name"] for c in failed] == ["bitbucket.repository"], report
    assert "ai-team/ai-convo-unborn" in failed[0]["detail"]
    sshd.create_repo("ai-team", "ai-convo-unborn")
    code, report = validate("-t", "AI-Convo", "--model-name", "unborn")
    assert code == 0 and "bitbucket.repository" in {c["name"] for c in report["checks"]}, report


def test_the_registry_reads_a_model_over_ssh_without_its_workspace(bitbucket_config, sshd, tmp_path):
    """With Bitbucket hosting the models come from this machine's workspaces (no API over
    SSH lists repositories); each is read from a mirror fetched over SSH, not the workspace."""
    import json
    import shutil

    from .test_history import cpv

    sshd.create_repo("ai-team", "ai-convo-registry")
    m = ModelsCheckpointsManage("AI-Convo", "registry")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 2000)
    m.upload_model_checkpoint(metrics={"loss": 0.3})
    m.tag_model_checkpoint()
    m.promote("v0.1", "prod")
    other = ModelsCheckpointsManage("AI-Convo", "registry", repo_path=tmp_path / "other")
    other.import_model_init()
    write_model(other.repo_path / "model.bin", 2000, seed=9)
    other.upload_model_checkpoint()
    other.tag_model_checkpoint()  # v0.2, which m's workspace has not fetched
    shutil.rmtree(other.repo_path)
    (entry,) = json.loads(cpv("registry", "--json").stdout)["models"]
    assert (entry["team"], entry["model"], entry["latest"]["model"]) == ("AI-Convo", "registry", "v0.2")
    assert entry["stages"] == {"model": {"prod": "v0.1"}} and not entry["error"]


def test_a_shared_connection_whose_server_went_silent_is_replaced_and_the_command_completes(bitbucket_config, sshd):
    """The server side of the shared master is frozen (as after a network change): the next
    command waits for the keepalive to give the master up (20 s), then connects anew and
    completes; it never hangs."""
    import re
    import signal
    import time

    import psutil

    settings = BitbucketSettings(bitbucket_config.get_config("bitbucket"))
    sshd.create_repo("ai-team", "ai-convo-silent")
    m = ModelsCheckpointsManage("AI-Convo", "silent")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 1000)
    m.upload_model_checkpoint()
    master = psutil.Process(int(re.search(r"pid=(\d+)", _master(settings, sshd, "check").stderr).group(1)))
    (local_port,) = {c.laddr.port for c in master.net_connections("tcp") if c.raddr and c.raddr.port == sshd.port}
    frozen = [
        p
        for p in psutil.Process(sshd.process.pid).children(recursive=True)
        if any(c.raddr and c.raddr.port == local_port for c in p.net_connections("tcp"))
    ]
    assert frozen, "no sshd process serves the shared connection"
    frozen += [child for p in frozen for child in p.children(recursive=True)]
    for p in frozen:
        p.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert m.tag_model_checkpoint() == "v0.1"
        waited = time.monotonic() - started
    finally:
        for p in frozen:
            p.send_signal(signal.SIGCONT)
    assert waited < 45, waited  # 45 s and more was the old keepalive's window alone
    assert m.read_checkpoint_tag() == ["v0.1"]


def test_validate_of_a_model_says_each_failure_once(bitbucket_config, sshd):
    """The credentials' check and the model's repository check fail for the same reason
    (a changed host key): one FAIL line, not two."""
    from .test_history import cpv

    sshd.create_repo("ai-team", "ai-convo-once")
    assert bitbucket_config.validate_credentials().ok  # the host key is now known
    sshd.replace_host_key()
    try:
        out = cpv("validate", "-t", "AI-Convo", "--model-name", "once", expect=4).stdout
        assert [line.split()[1] for line in out.splitlines() if line.startswith("FAIL")] == ["bitbucket.host_key"], out
    finally:
        subprocess.run(
            ["ssh-keygen", "-R", f"[{sshd.host}]:{sshd.port}", "-f", str(home() / ".ssh" / "known_hosts")], check=True, capture_output=True
        )
