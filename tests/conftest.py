"""Test isolation: every test gets its own CPV_HOME and HOME; the real
~/.ssh, ~/.aws and ~/.cpv are snapshotted and must be unchanged at the end."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cpv_core.plugins import reset_plugin_manager

from .helpers import S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, write_aws_credentials

REAL_HOME = Path(os.path.expanduser("~"))
GUARDED = [REAL_HOME / ".ssh", REAL_HOME / ".aws", REAL_HOME / ".cpv"]


def snapshot(paths: list[Path]) -> dict[str, str]:
    """Path -> hash of content and mode, for everything under ``paths``."""
    state: dict[str, str] = {}
    for root in paths:
        if not root.exists():
            state[str(root)] = "absent"
            continue
        for p in [root, *root.rglob("*")]:
            st = p.lstat()
            content = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
            state[str(p)] = f"{st.st_mode:o}:{hashlib.sha256(content).hexdigest()}"
    return state


@pytest.fixture(scope="session", autouse=True)
def real_home_untouched():
    """Fail the session if any test touched the real ~/.ssh, ~/.aws or ~/.cpv."""
    before = snapshot(GUARDED)
    yield
    assert snapshot(GUARDED) == before, "a test changed the real ~/.ssh, ~/.aws or ~/.cpv"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """A private CPV_HOME, HOME, git/DVC/AWS config for each test."""
    home = tmp_path / "home"
    home.mkdir()
    cpv_home = tmp_path / "cpv-home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CPV_HOME", str(cpv_home))
    gitconfig = home / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    for var in ("DVC_SITE_CACHE_DIR", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR"):
        d = tmp_path / var.lower()
        d.mkdir()
        monkeypatch.setenv(var, str(d))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / ".aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / ".aws" / "credentials"))
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "CPV_DISABLE_PLUGINS",
        "GIT_SSH_COMMAND",
    ):
        monkeypatch.delenv(var, raising=False)
    reset_plugin_manager()
    yield cpv_home
    reset_plugin_manager()


@pytest.fixture
def cpv_home(isolated_env) -> Path:
    return isolated_env


# --------------------------------------------------------------------------
# real S3 server (SeaweedFS) on loopback
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """One SeaweedFS per test session, credentials enforced, no auto-created buckets."""
    from .servers.seaweedfs import start_seaweedfs

    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, bucket=S3_BUCKET)
    yield server
    server.stop()


@pytest.fixture
def s3_config(seaweed, cpv_home):
    """cpv configured for the real S3 server (storage dvc-s3, hosting local)."""
    from cpv_core.config import CPVConfig

    home = Path(os.environ["HOME"])
    creds = write_aws_credentials(home)
    cfg = CPVConfig()
    cfg.setup_aws_profile(credential_path=creds, aws_profile="cpv-test", bucket=S3_BUCKET, endpoint_url=seaweed.endpoint)
    return cfg


# --------------------------------------------------------------------------
# real OpenSSH server on loopback standing in for Bitbucket
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """One private sshd per session, serving bare repos like Bitbucket."""
    from .servers.sshd import start_sshd

    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def bitbucket_config(sshd, cpv_home):
    """cpv set up for the sshd (hosting bitbucket-ssh, storage local); key authorized."""
    from cpv_core.config import CPVConfig

    cfg = CPVConfig()
    entries = cfg.setup_bitbucket_ssh(
        keygen_filename="id_cpv_test", bitbucket_user="tester", workspace="ai-team", host=sshd.host, port=sshd.port, ssh_user=sshd.user
    )
    sshd.authorize(Path(entries["public_key_path"]).read_text())
    return cfg


# --------------------------------------------------------------------------
# real GCS API (fake-gcs-server) and Azure Blob API (Azurite) on loopback
# --------------------------------------------------------------------------

GCS_BUCKET = "cpv-gcs-test"
AZURE_CONTAINER = "cpv-azure-test"


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    """One fake-gcs-server per session, with the test bucket."""
    from .servers.fake_gcs import start_fake_gcs

    server = start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    server.create_bucket(GCS_BUCKET)
    yield server
    server.stop()


@pytest.fixture
def gcs_config(fake_gcs, cpv_home):
    """cpv configured for the GCS emulator (storage dvc-gs, hosting local)."""
    from cpv_core.config import CPVConfig
    from cpv_core.plugin.credentials import setup_provider

    cfg = CPVConfig()
    setup_provider(cfg, "gcs", {"bucket": GCS_BUCKET, "endpoint_url": fake_gcs.endpoint})
    return cfg


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """One Azurite blob service per session, with the test container."""
    from .servers.azurite import start_azurite

    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    server.create_container(AZURE_CONTAINER)
    yield server
    server.stop()


@pytest.fixture
def azure_config(azurite, cpv_home, monkeypatch):
    """cpv configured for Azurite (storage dvc-azure, hosting local), the connection
    string named by an environment variable."""
    from cpv_core.config import CPVConfig
    from cpv_core.plugin.credentials import setup_provider

    monkeypatch.setenv("CPV_TEST_AZURE", azurite.connection_string)
    cfg = CPVConfig()
    setup_provider(cfg, "azure", {"container": AZURE_CONTAINER, "connection_string": "env:CPV_TEST_AZURE"})
    return cfg


# --------------------------------------------------------------------------
# real git smart-HTTP server (git http-backend behind TLS) on loopback
# --------------------------------------------------------------------------

GIT_TOKEN = "cpvtesttoken-4f1d9a7c2b"


@pytest.fixture(scope="session")
def git_https(tmp_path_factory):
    """One TLS git server per session (self-signed certificate, token required)."""
    from .servers.git_https import start_git_https

    server = start_git_https(tmp_path_factory.mktemp("git-https"), GIT_TOKEN)
    yield server
    server.stop()


@pytest.fixture
def https_git_config(git_https, cpv_home, monkeypatch):
    """cpv set up for hosting ``git`` over HTTPS: the token named by an environment
    variable, the server's CA by path (storage local)."""
    from cpv_core.config import CPVConfig
    from cpv_core.plugin.credentials import setup_provider

    monkeypatch.setenv("CPV_TEST_GIT_TOKEN", GIT_TOKEN)
    cfg = CPVConfig()
    setup_provider(
        cfg,
        "git",
        {"url_template": f"{git_https.base_url}/ai-team/{{repo}}.git", "token": "env:CPV_TEST_GIT_TOKEN", "ca_file": str(git_https.cert)},
    )
    return cfg


@pytest.fixture
def ssh_git_config(sshd, cpv_home, tmp_path):
    """cpv set up for hosting ``git`` over SSH (an ssh:// URL with a port), key by path."""
    from cpv_core.config import CPVConfig
    from cpv_core.plugin.credentials import setup_provider

    from .servers.sshd import keygen

    key = tmp_path / "id_git_test"
    sshd.authorize(keygen(key))
    cfg = CPVConfig()
    setup_provider(
        cfg,
        "git",
        {
            "url_template": f"ssh://{sshd.user}@{sshd.host}:{sshd.port}/ai-team/{{repo}}.git",
            "ssh_key": str(key),
            "known_hosts": str(tmp_path / "known_hosts"),
        },
    )
    return cfg
