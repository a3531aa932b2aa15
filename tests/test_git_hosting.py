"""Hosting ``git``: any git server by URL template, over HTTPS (git http-backend
behind TLS with a token check) and SSH (the test sshd on its own port), set up
in one `cpv setup`, with the secret rules held and each failure one line."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpv_core.config import CPVConfig
from cpv_core.domain.names import repository_name
from cpv_core.errors import ValidationError
from cpv_plugins.git_url import PRESETS, check_template, create_fix, parse_location, preset_template, render

from .conftest import AZURE_CONTAINER, GCS_BUCKET, GIT_TOKEN
from .helpers import git, write_model
from .test_history import cpv


def secrets_absent(*places: str | bytes) -> None:
    for place in places:
        text = place.decode(errors="replace") if isinstance(place, bytes) else place
        assert GIT_TOKEN not in text


@pytest.mark.https
@pytest.mark.gcs
def test_a_team_on_an_https_git_host_and_gcs_sets_up_in_one_command_and_works(git_https, fake_gcs, cpv_home, monkeypatch, tmp_path):
    monkeypatch.setenv("CPV_TEST_GIT_TOKEN", GIT_TOKEN)
    git_https.create_repo("ai-team/ai-whisper.git")
    setup = cpv(
        "setup", "--non-interactive",
        "--storage", "gcs", "--gcs-bucket", GCS_BUCKET, "--gcs-endpoint", fake_gcs.endpoint,
        "--hosting", "git", "--git-url-template", f"{git_https.base_url}/ai-team/{{repo}}.git",
        "--git-token", "env:CPV_TEST_GIT_TOKEN", "--git-ca-file", str(git_https.cert),
    ).output  # fmt: skip
    assert "ok   gcs.bucket" in setup and "ok   git.host" in setup
    cfg = CPVConfig()
    assert (cfg.backend_name("storage"), cfg.backend_name("hosting")) == ("dvc-gs", "git")
    assert cfg.get_config("git.token_env") == "CPV_TEST_GIT_TOKEN"

    outputs = [setup, cpv("init", "model", "-t", "ai", "-m", "whisper").output]
    from cpv_core import ModelsCheckpointsManage

    m = ModelsCheckpointsManage("ai", "whisper")
    data = write_model(m.repo_path / "model.bin", 300_000, seed=3)
    outputs.append(cpv("model", "upload", "-t", "ai", "--model-name", "whisper", "--metrics", '{"loss": 0.5}').output)
    outputs.append(cpv("model", "tag", "-t", "ai", "--model-name", "whisper").output)
    outputs.append(cpv("validate", "-t", "ai", "--model-name", "whisper").output)
    outputs.append(cpv("model", "list", "-t", "ai", "--model-name", "whisper", "--json").output)
    out = tmp_path / "out"
    cpv("model", "download", "-t", "ai", "--model-name", "whisper", "v0.1", "-o", str(out))
    assert (out / "model.bin").read_bytes() == data
    assert "model/v0.1" in git(git_https.root / "ai-team" / "ai-whisper.git", "tag", "-l")
    assert any(key.startswith("ai/whisper/files/md5/") for key in fake_gcs.keys(GCS_BUCKET, "ai/whisper/"))
    # the token is in no file, no URL, no history and no output
    secrets_absent(
        *outputs,
        (m.repo_path / ".git" / "config").read_bytes(),
        (cpv_home / "config.json").read_bytes(),
        git(m.repo_path, "log", "-p", "--all"),
        (m.repo_path / ".dvc" / "config").read_bytes(),
    )
    assert git_https.base_url in (m.repo_path / ".git" / "config").read_text()


@pytest.mark.ssh
@pytest.mark.azure
def test_a_team_on_an_ssh_git_host_and_azure_works_end_to_end(sshd, azurite, cpv_home, monkeypatch, tmp_path):
    from .servers.sshd import keygen

    key = tmp_path / "id_gitlab"
    sshd.authorize(keygen(key))
    sshd.create_repo("group", "ai-speech")
    monkeypatch.setenv("CPV_TEST_AZURE", azurite.connection_string)
    cpv(
        "setup", "--non-interactive",
        "--storage", "azure", "--azure-container", AZURE_CONTAINER, "--azure-connection-string", "env:CPV_TEST_AZURE",
        "--hosting", "git", "--git-preset", "gitlab", "--git-owner", "group", "--git-host", f"{sshd.host}:{sshd.port}",
        "--git-ssh-key", str(key),
    )  # fmt: skip
    cfg = CPVConfig()
    assert cfg.get_config("git.url_template") == f"ssh://git@{sshd.host}:{sshd.port}/group/{{repo}}.git"
    cfg.set_config("git.url_template", f"ssh://{sshd.user}@{sshd.host}:{sshd.port}/group/{{repo}}.git")  # the test sshd's own login
    assert "AccountKey" not in (cpv_home / "config.json").read_text()
    source = tmp_path / "source"
    (source / "train").mkdir(parents=True)
    (source / "train" / "a.txt").write_text("one\n")
    cpv("init", "data", "-t", "ai", "-m", "speech", "-d", str(source))
    (source / "train" / "b.txt").write_text("two\n")
    out = tmp_path / "out"
    cpv("data", "download", "-t", "ai", "--model-name", "speech", "v0.1", "-o", str(out))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.txt")) == ["data/train/a.txt"]
    assert "data/v0.1" in git(sshd.root / "group" / "ai-speech.git", "tag", "-l")


@pytest.mark.https
def test_a_missing_repository_is_reported_with_the_hosts_own_fix_line(https_git_config, git_https):
    CPVConfig().set_config("git.preset", "gitlab")
    out = cpv("validate", "-t", "ai", "--model-name", "missing", expect=4).output
    assert "FAIL git.repository" in out and "glab repo create ai-team/ai-missing --private" in out
    init = cpv("init", "model", "-t", "ai", "-m", "missing", expect=7).output
    assert "does not exist" in init and "glab repo create ai-team/ai-missing" in init


@pytest.mark.https
def test_wrong_unset_token_and_an_untrusted_certificate_are_one_line_each(https_git_config, git_https, monkeypatch):
    git_https.create_repo("ai-team/ai-auth.git")
    monkeypatch.setenv("CPV_TEST_GIT_TOKEN", "not-the-token")
    out = cpv("validate", "-t", "ai", "--model-name", "auth", expect=4).output
    assert "FAIL git.auth" in out and "refused the credentials" in out and "$CPV_TEST_GIT_TOKEN" in out
    assert "not-the-token" not in out
    monkeypatch.delenv("CPV_TEST_GIT_TOKEN")
    out = cpv("validate", "-t", "ai", "--model-name", "auth", expect=4).output
    assert "environment variable CPV_TEST_GIT_TOKEN, which is not set" in out
    monkeypatch.setenv("CPV_TEST_GIT_TOKEN", GIT_TOKEN)
    CPVConfig().set_config("git.ca_file", None)
    out = cpv("validate", "-t", "ai", "--model-name", "auth", expect=4).output
    assert "FAIL git.tls" in out and "--git-ca-file" in out


def test_presets_fill_the_template_for_each_host():
    assert preset_template("github", "ssh", "acme", None) == "git@github.com:acme/{repo}.git"
    assert preset_template("github", "https", "acme", None) == "https://github.com/acme/{repo}.git"
    assert preset_template("gitlab", "ssh", "group/sub", "gitlab.example.com") == "git@gitlab.example.com:group/sub/{repo}.git"
    assert preset_template("gitea", "https", "org", "gitea.example.com:3000") == "https://gitea.example.com:3000/org/{repo}.git"
    assert preset_template("bitbucket-cloud", "ssh", "ws", None) == "git@bitbucket.org:ws/{repo}.git"
    assert preset_template("bitbucket-dc", "https", "PROJ", "bb.example.com") == "https://bb.example.com/scm/PROJ/{repo}.git"
    assert set(PRESETS) == {"github", "gitlab", "gitea", "bitbucket-cloud", "bitbucket-dc"}
    assert "gh repo create acme/ai-whisper" in create_fix("git@github.com:acme/ai-whisper.git", None, "ai", "whisper")
    with pytest.raises(ValidationError, match="gitea.example.com:99999"):
        preset_template("gitea", "https", "org", "gitea.example.com:99999")


@pytest.mark.parametrize(
    "template",
    [
        "https://user:secret@github.com/org/{repo}.git",
        "https://ghp_abcdefabcdefabcdefabcdefabcdefabcdef@github.com/org/{repo}.git",
        "ext::ssh -oProxyCommand=touch%20x {repo}",
        "-oProxyCommand=x:{repo}",
        "ssh://-oProxyCommand=x@host/{repo}.git",
        "http://git.example.com/{repo}.git",
        "https://github.com/{team.__class__}/{repo}.git",
        "https://github.com/org/{repo!r}.git",
        "https://github.com/org/fixed.git",
        "file:///srv/{repo}.git",
    ],
)
def test_a_template_that_could_leak_a_secret_or_run_a_command_is_refused(template, cpv_home):
    with pytest.raises(ValidationError) as caught:
        check_template(template)
    assert "secret" not in caught.value.message and "ghp_" not in caught.value.message
    out = cpv("setup", "--non-interactive", "--hosting", "git", "--git-url-template", template, expect=2).output
    assert "ghp_" not in out and CPVConfig().get_config("git") is None


names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_template_text_is_refused_or_makes_a_safe_url(text):
    try:
        template = check_template(text)
    except ValidationError:
        return
    url = render(template, "team", "model")
    where = parse_location(url)
    assert "::" not in url and not url.startswith("-") and not where.host.startswith("-")
    assert where.scheme in {"ssh", "https"}


@settings(max_examples=100, deadline=None)
@given(names, names)
def test_every_model_gets_its_own_url(team, model):
    url = render("git@github.com:org/{repo}.git", team, model)
    assert url == f"git@github.com:org/{repository_name(team, model)}.git"
    assert parse_location(url).path == f"org/{team.lower()}-{model.lower()}.git"


def test_the_token_reaches_git_only_through_the_environment(https_git_config):
    from cpv_plugins.git_hosting import GitSettings

    env = GitSettings(CPVConfig().get_config("git")).environment()
    assert GIT_TOKEN not in json.dumps(env) and "$CPV_TEST_GIT_TOKEN" in env["GIT_CONFIG_VALUE_1"]
    helper = env["GIT_CONFIG_VALUE_1"][1:]
    answer = subprocess.run(["sh", "-c", helper + " get"], capture_output=True, text=True, env={**os.environ}).stdout
    assert answer == f"username=cpv\npassword={GIT_TOKEN}\n"


def test_git_config_entries_the_user_gives_in_the_environment_are_kept(https_git_config, monkeypatch):
    from cpv_plugins.git_hosting import GitSettings

    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "http.proxy")
    env = GitSettings(CPVConfig().get_config("git")).environment()
    assert env["GIT_CONFIG_COUNT"] == "3" and "GIT_CONFIG_KEY_0" not in env
    assert (env["GIT_CONFIG_KEY_1"], env["GIT_CONFIG_VALUE_1"]) == ("credential.helper", "")
    assert "$CPV_TEST_GIT_TOKEN" in env["GIT_CONFIG_VALUE_2"]
