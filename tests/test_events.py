"""Lifecycle events: listeners hear each version, stage change and upload after the
remote holds it; a failing or hanging listener never fails or undoes a publish.
The webhook notifier is tested against an HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cpv_core import CombinedCheckpointsManage, DataCheckpointsManage, ModelsCheckpointsManage, hookimpl
from cpv_core.config import CPVConfig
from cpv_core.plugins import Plugins, get_plugin_manager

from .helpers import git, write_data_dir, write_model
from .test_history import cpv

TEAM, MODEL = "AI-Convo", "whisper"
T = ["-t", TEAM, "--model-name", MODEL]


def bare(cpv_home: Path) -> Path:
    return cpv_home / "local" / "git" / TEAM / f"{MODEL}.git"


class Recorder:
    """A listener that notes every event and what the remote held when it came."""

    def __init__(self, cpv_home: Path) -> None:
        self.cpv_home = cpv_home
        self.events: list[tuple[str, Any, str]] = []

    def remote_refs(self) -> str:
        return git(bare(self.cpv_home), "for-each-ref", "--format=%(refname)")

    @hookimpl
    def cpv_version_published(self, record):
        self.events.append(("version", record, self.remote_refs()))

    @hookimpl
    def cpv_stage_changed(self, change, config):
        assert isinstance(config, CPVConfig)
        self.events.append(("stage", change, self.remote_refs()))

    @hookimpl
    def cpv_upload_finished(self, upload):
        self.events.append(("upload", upload, git(bare(self.cpv_home), "rev-parse", "main").strip()))


@pytest.fixture
def recorder(cpv_home):
    rec = Recorder(cpv_home)
    get_plugin_manager().register(rec, name="recorder")
    return rec


@pytest.fixture
def m(cpv_home) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    return m


def test_listeners_hear_uploads_versions_and_stages_after_the_remote_has_them(m, recorder, tmp_path):
    listener = next(p for p in Plugins().describe() if p.name == "recorder")
    assert set(listener.hooks) == {"cpv_version_published", "cpv_stage_changed", "cpv_upload_finished"}
    write_model(m.repo_path / "model.bin", 2048, seed=1)
    m.upload_model_checkpoint(metrics={"loss": 0.5}, message="first")
    assert m.tag_model_checkpoint(message="baseline") == "v0.1"
    m.promote("v0.1", "prod", message="ship it")
    m.demote("prod")
    kinds = [kind for kind, _, _ in recorder.events]
    assert kinds == ["upload", "version", "stage", "stage"]

    (_, upload, remote_main) = recorder.events[0]
    assert upload.team == TEAM and upload.model == MODEL and upload.kind == "model" and upload.changed
    assert upload.commit == remote_main  # the commit was pushed before the listener ran
    assert upload.metrics == {"loss": 0.5} and upload.size == 2048 and upload.path == "model.bin"

    (_, record, refs) = recorder.events[1]
    assert "refs/tags/model/v0.1" in refs.split()
    assert (record.kind, record.version, record.message, record.author) == ("model", "v0.1", "baseline", "Test User")
    assert record.metrics == {"loss": 0.5} and record.size == 2048 and record.digest
    store_file = Path(record.source_uri.removeprefix("file://"))
    assert record.source_uri.startswith("file:///") and store_file.read_bytes() == (m.repo_path / "model.bin").read_bytes()

    (_, promoted, refs) = recorder.events[2]
    assert (promoted.stage, promoted.version, promoted.previous, promoted.message) == ("prod", "v0.1", None, "ship it")
    assert any(ref.startswith("refs/tags/stage/model/prod/") for ref in refs.split())
    (_, demoted, _) = recorder.events[3]
    assert (demoted.stage, demoted.version, demoted.previous) == ("prod", None, "v0.1")


def test_data_and_combined_versions_are_published_events_too(cpv_home, recorder, tmp_path):
    src = tmp_path / "training_data"
    write_data_dir(src, 4)
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init(data_path=src)
    write_model(m.repo_path / "model.bin", 1000, seed=2)
    m.upload_model_checkpoint()
    CombinedCheckpointsManage(TEAM, MODEL).tag_model_and_data()
    published = sorted((r.kind, r.version) for kind, r, _ in recorder.events if kind == "version")
    assert published == [("checkpoint", "v0.1"), ("data", "v0.1"), ("model", "v0.1")]
    data = next(r for kind, r, _ in recorder.events if kind == "version" and r.kind == "data")
    assert data.digest.endswith(".dir") and data.source_uri.endswith(".dir")
    DataCheckpointsManage(TEAM, MODEL).promote("v0.1", "staging")
    assert recorder.events[-1][1].kind == "data" and recorder.events[-1][1].stage == "staging"


class Failing:
    @hookimpl
    def cpv_version_published(self, record):
        raise RuntimeError("the notifier is broken")


class Hanging:
    def __init__(self) -> None:
        self.release = threading.Event()

    @hookimpl
    def cpv_version_published(self, record):
        self.release.wait(60)


def test_a_failing_listener_is_logged_by_name_and_the_version_stands(m, recorder, caplog):
    get_plugin_manager().register(Failing(), name="broken-notifier")
    write_model(m.repo_path / "model.bin", 1000, seed=3)
    m.upload_model_checkpoint()
    with caplog.at_level(logging.WARNING, logger="cpv.events"):
        assert m.tag_model_checkpoint() == "v0.1"
    assert "refs/tags/model/v0.1" in recorder.remote_refs().split()
    warning = [r.getMessage() for r in caplog.records if "broken-notifier" in r.getMessage()]
    assert warning == [
        "plugin 'broken-notifier' failed on cpv_version_published (the publish stands): RuntimeError: the notifier is broken"
    ]
    assert [kind for kind, _, _ in recorder.events] == ["upload", "version"]  # the others were still called


def test_a_hanging_listener_delays_the_command_by_the_bound_at_most(m, caplog):
    hanging = Hanging()
    get_plugin_manager().register(hanging, name="slow-listener")
    CPVConfig().set_config("events.timeout", 1)
    m = ModelsCheckpointsManage(TEAM, MODEL)  # reads the config anew
    write_model(m.repo_path / "model.bin", 1000, seed=4)
    m.upload_model_checkpoint()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="cpv.events"):
        assert m.tag_model_checkpoint() == "v0.1"
    elapsed = time.monotonic() - started
    hanging.release.set()
    assert elapsed < 30  # the listener would have held it 60 s
    assert any("'slow-listener' did not finish cpv_version_published within 1.0s" in r.getMessage() for r in caplog.records)
    assert m.read_checkpoint_tag() == ["v0.1"]


def test_events_timeout_must_be_a_known_key_and_a_bad_value_falls_back(cpv_home):
    from cpv_core.events import DEFAULT_TIMEOUT_S, listener_timeout

    cpv("config", "set", "events.timeout", "2.5")
    assert listener_timeout(CPVConfig()) == 2.5
    CPVConfig().set_config("events.timeout", "soon")
    assert listener_timeout(CPVConfig()) == DEFAULT_TIMEOUT_S


# --------------------------------------------------------------------------
# the webhook notifier, against a real HTTP server on loopback
# --------------------------------------------------------------------------


class Hook:
    """An HTTP server on 127.0.0.1 that records JSON posts; ``mode`` is "ok", "500", "hang"
    or "redirect:URL" (answers 307 to URL)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.mode = "ok"
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
                if hook.mode == "hang":
                    hook.release.wait(60)
                if hook.mode.startswith("redirect:"):
                    self.send_response(307)
                    self.send_header("Location", hook.mode.removeprefix("redirect:"))
                    self.end_headers()
                    return
                self.send_response(500 if hook.mode == "500" else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/s3cr3tT0ken"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def test_webhook_posts_slack_compatible_messages_for_versions_and_stages(m, hook, cpv_home):
    cpv("config", "set", "notify.webhook", hook.url)
    write_model(m.repo_path / "model.bin", 1000, seed=5)
    cpv("model", "upload", "--metrics", '{"loss": 0.25, "wer": 0.04}', *T)
    cpv("model", "tag", "-m", "baseline", *T)
    cpv("model", "promote", "v0.1", "--stage", "prod", *T)
    assert [p["path"] for p in hook.posts] == ["/services/T0/B0/s3cr3tT0ken"] * 2
    assert all(p["type"] == "application/json" for p in hook.posts)
    version, stage = (p["body"] for p in hook.posts)
    assert version["text"] == f"{TEAM}/{MODEL}: model v0.1 published by Test User (loss=0.25 wer=0.04): baseline"
    assert version["cpv"]["event"] == "version_published" and version["cpv"]["metrics"] == {"loss": 0.25, "wer": 0.04}
    assert (version["cpv"]["team"], version["cpv"]["model"], version["cpv"]["author"]) == (TEAM, MODEL, "Test User")
    assert stage["text"] == f"{TEAM}/{MODEL}: model v0.1 promoted to prod by Test User"
    assert stage["cpv"]["stage"] == "prod" and stage["cpv"]["version"] == "v0.1"
    shown = cpv("config", "show").output
    port = hook.url.split(":")[2].split("/")[0]
    assert "s3cr3tT0ken" not in shown and f"http://127.0.0.1:{port}/***" in shown  # the host and port, never the path


def test_webhook_url_can_come_from_the_environment(m, hook, monkeypatch):
    monkeypatch.setenv("CPV_TEST_HOOK", hook.url)
    cpv("config", "set", "notify.webhook", "env:CPV_TEST_HOOK")
    m = ModelsCheckpointsManage(TEAM, MODEL)  # reads the config anew
    write_model(m.repo_path / "model.bin", 1000, seed=6)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    assert [p["body"]["cpv"]["version"] for p in hook.posts] == ["v0.1"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cpv_core.cli", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)


@pytest.mark.parametrize("mode", ["500", "hang"])
def test_a_webhook_that_fails_or_hangs_delays_by_the_bound_and_loses_no_version(m, hook, mode):
    hook.mode = mode
    cpv("config", "set", "notify.webhook", hook.url)
    cpv("config", "set", "events.timeout", "2")
    write_model(m.repo_path / "model.bin", 1000, seed=7)
    m.upload_model_checkpoint()
    started = time.monotonic()
    result = run_cli("model", "tag", *T)  # the real CLI, as a user sees it
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "tagged model v0.1" in result.stdout + result.stderr
    if mode == "500":
        assert "plugin 'webhook' failed on cpv_version_published (the publish stands)" in result.stderr
        assert "the webhook at 127.0.0.1 answered HTTP 500" in result.stderr
    else:
        assert "plugin 'webhook' did not finish cpv_version_published within 2.0s" in result.stderr
        assert elapsed < 30  # the server would have held the request 60 s
    assert "s3cr3tT0ken" not in result.stderr + result.stdout
    assert m.read_checkpoint_tag() == ["v0.1"] and len(hook.posts) == 1


def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_it(m, caplog):
    CPVConfig().set_config("notify.webhook", "ftp://example.com/hook/s3cr3tT0ken")
    m = ModelsCheckpointsManage(TEAM, MODEL)  # reads the config anew
    write_model(m.repo_path / "model.bin", 1000, seed=8)
    m.upload_model_checkpoint()
    with caplog.at_level(logging.WARNING, logger="cpv.events"):
        assert m.tag_model_checkpoint() == "v0.1"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "notify.webhook is not an http(s) URL" in messages and "s3cr3tT0ken" not in messages


@pytest.mark.parametrize(
    "pasted",
    [
        "https://hooks.example.com/services/T0/B0/s3cr3tT0ken\n",
        "https://hooks.example.com/ s3cr3tT0ken",
        "https://hooks.example.com/s3cr3t\x1bT0ken",
    ],
)
def test_a_webhook_url_with_white_space_or_control_characters_is_refused_at_config_set(cpv_home, pasted):
    before = CPVConfig().get_config("notify.webhook")
    result = cpv("config", "set", "notify.webhook", pasted, expect=3)
    assert "contains white space or control characters" in result.output
    assert "s3cr3t" not in result.output
    assert CPVConfig().get_config("notify.webhook") == before


def test_a_webhook_follows_no_redirect_and_shows_teammates_markup_literally(m, hook, cpv_home):
    other = Hook()  # where a redirect would send the body (and the secret path's events)
    try:
        hook.mode = f"redirect:{other.url}"
        cpv("config", "set", "notify.webhook", hook.url)
        write_model(m.repo_path / "model.bin", 1000, seed=9)
        m = ModelsCheckpointsManage(TEAM, MODEL)
        m.upload_model_checkpoint()
        result = run_cli("model", "tag", "-m", "<!channel> see <https://evil.example|the docs> & more", *T)
        assert result.returncode == 0, result.stderr
        assert "answered HTTP 307 (a redirect: cpv follows none" in result.stderr
        assert other.posts == [] and "s3cr3tT0ken" not in result.stderr
        text = hook.posts[0]["body"]["text"]
        assert "&lt;!channel&gt; see &lt;https://evil.example|the docs&gt; &amp; more" in text
        assert "<!channel>" not in text and hook.posts[0]["body"]["mrkdwn"] is False
    finally:
        other.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/services/s3cr3tT0ken", "http://127.0.0.1:1x/services/s3cr3tT0ken"])
def test_no_error_of_a_post_carries_the_webhook_url(url):
    from cpv_plugins.webhook import post

    with pytest.raises(RuntimeError) as raised:
        post(url, {"text": "x"}, timeout=2)
    assert "s3cr3tT0ken" not in str(raised.value) and "the webhook at 127.0.0.1" in str(raised.value)
