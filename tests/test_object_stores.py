"""Storage on Google Cloud Storage (fake-gcs-server) and Azure Blob (Azurite):
plain DVC reads what cpv wrote, gc / du --cost / registry work, and every
failure is one line with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cpv_core import ModelsCheckpointsManage
from cpv_core.config import CPVConfig
from cpv_core.errors import CredentialError, StorageError
from cpv_core.plugin.credentials import setup_provider
from cpv_core.retention import RetentionPolicy, collect_garbage

from .conftest import AZURE_CONTAINER, GCS_BUCKET
from .helpers import git, write_model
from .servers.seaweedfs import free_port
from .test_history import cpv


@dataclass
class Store:
    """One object store under test: its backend name, how to list its keys and what
    a plain DVC user sets to reach it."""

    backend: str
    keys: Callable[[str], list[str]]
    price: float
    dvc_env: dict[str, str]
    dvc_local: dict[str, str]


@pytest.fixture(params=[pytest.param("gcs", marks=pytest.mark.gcs), pytest.param("azure", marks=pytest.mark.azure)])
def store(request) -> Store:
    if request.param == "gcs":
        server = request.getfixturevalue("fake_gcs")
        request.getfixturevalue("gcs_config")
        # gcsfs asks an emulator for the bucket's type over gRPC+TLS (minutes of retries) unless told not to
        no_grpc = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
        return Store(
            "dvc-gs",
            lambda p: server.keys(GCS_BUCKET, p),
            0.020,
            no_grpc,
            {"endpointurl": server.endpoint, "allow_anonymous_login": "true"},
        )
    server = request.getfixturevalue("azurite")
    request.getfixturevalue("azure_config")
    return Store(
        "dvc-azure", lambda p: server.keys(AZURE_CONTAINER, p), 0.018, {"AZURE_STORAGE_CONNECTION_STRING": server.connection_string}, {}
    )


def unique(name: str) -> str:
    return f"{name}-{os.urandom(3).hex()}"


def test_plain_dvc_pulls_what_cpv_pushed(store, tmp_path):
    m = ModelsCheckpointsManage("interop", unique("dvc"))
    m.import_model_init()
    data = write_model(m.repo_path / "model.bin", 2_500_000, seed=7)
    m.upload_model_checkpoint(metrics={"loss": 0.1})
    m.tag_model_checkpoint()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", m.ws.hosting.remote_url(), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", "model/v0.1"], cwd=clone, check=True)
    dvc = [sys.executable, "-m", "dvc"]
    for key, value in store.dvc_local.items():  # what a DVC user sets for their own machine
        subprocess.run([*dvc, "remote", "modify", "--local", "cpv", key, value], cwd=clone, check=True, capture_output=True)
    pulled = subprocess.run([*dvc, "pull", "-q"], cwd=clone, env={**os.environ, **store.dvc_env}, capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "model.bin").read_bytes() == data


def test_registry_gc_and_du_cost_work_on_the_store(store, cpv_home):
    model = unique("retained")
    m = ModelsCheckpointsManage("stores", model)
    m.import_model_init()
    for seed in (1, 2, 3):
        write_model(m.repo_path / "model.bin", 5000, seed=seed)
        m.upload_model_checkpoint(metrics={"loss": 1.0 / seed})
        m.tag_model_checkpoint()
    assert CPVConfig().backend_name("storage") == store.backend
    prefix = f"stores/{model}/files/md5/"
    assert len(store.keys(prefix)) == 3
    registry = json.loads(cpv("registry", "--json").stdout)
    assert any(row.get("team") == "stores" and row.get("model") == model for row in registry["models"])
    cost = json.loads(cpv("du", "--cost", "--json", "-t", "stores", "--model-name", model).stdout)
    assert cost["price_per_gb_month"] == store.price and list(cost["models"].values())[0]["bytes"] == 15000
    result = collect_garbage([m], RetentionPolicy(keep_last=1, grace_hours=0), dry_run=False)
    assert result.pruned["model"] == ["v0.1", "v0.2"] and len(result.deleted) == 2
    assert len(store.keys(prefix)) == 1
    assert m.verify("v0.3", remote=True) == []


def break_config(section: str, key: str, value: object) -> None:
    cfg = CPVConfig()
    entries = dict(cfg.get_config(section))
    entries[key] = value
    cfg.set_section(section, entries)


@pytest.mark.parametrize(
    "section, key, value, error, words",
    [
        pytest.param("gcs", "bucket", "no-such-bucket", StorageError, ["bucket 'no-such-bucket' does not exist", "gcloud storage buckets create"], marks=pytest.mark.gcs),
        pytest.param("gcs", "endpoint_url", "http://127.0.0.1:{port}", StorageError, ["is unreachable", "--gcs-endpoint"], marks=pytest.mark.gcs),
        pytest.param("azure", "container", "no-such-container", StorageError, ["container 'no-such-container' does not exist", "az storage container create"], marks=pytest.mark.azure),
        pytest.param("azure", "connection_string_env", "CPV_TEST_AZURE_UNREACHABLE", StorageError, ["is unreachable"], marks=pytest.mark.azure),
        pytest.param("azure", "connection_string_env", "CPV_TEST_AZURE_WRONG_KEY", CredentialError, ["refused the credentials"], marks=pytest.mark.azure),
        pytest.param("azure", "connection_string_env", "CPV_TEST_AZURE_UNSET", CredentialError, ["CPV_TEST_AZURE_UNSET, which is not set"], marks=pytest.mark.azure),
    ],
)  # fmt: skip
def test_each_failure_is_one_line_with_the_fix_and_nothing_is_half_done(request, section, key, value, error, words, monkeypatch, tmp_path):
    request.getfixturevalue(f"{section}_config")
    name = unique("store")
    changes_the_remote = key in {"bucket", "container"}  # a committed URL cpv would rightly refuse to change later
    if not changes_the_remote:
        ModelsCheckpointsManage("errors", name).import_model_init()
    if section == "azure":
        server = request.getfixturevalue("azurite")
        good = server.connection_string
        monkeypatch.setenv("CPV_TEST_AZURE_UNREACHABLE", good.replace(f":{server.port}/", f":{free_port()}/"))
        monkeypatch.setenv("CPV_TEST_AZURE_WRONG_KEY", good.replace("AccountKey=Eby8", "AccountKey=AAAA"))
    break_config(section, key, value.format(port=free_port()) if isinstance(value, str) else value)
    m = ModelsCheckpointsManage("errors", name)  # the broken configuration, read afresh
    head = None if changes_the_remote else git(m.repo_path, "rev-parse", "HEAD")
    with pytest.raises(error) as caught:
        if changes_the_remote:
            m.import_model_init()
        write_model(m.repo_path / "model.bin", 4000, seed=1)
        m.upload_model_checkpoint()
    message = f"{caught.value.message}\n{caught.value.fix}"
    assert "\n" not in caught.value.message and all(word in message for word in words), message
    assert "Eby8" not in message and "AccountKey" not in message
    if head is not None:
        assert git(m.repo_path, "rev-parse", "HEAD") == head  # no commit names bytes that were not stored


@pytest.mark.gcs
def test_a_malformed_credentials_file_is_refused_at_setup(fake_gcs, cpv_home, tmp_path):
    bad = tmp_path / "key.json"
    bad.write_text('{"type": "service_account", "private_key": "nope"}')
    with pytest.raises(CredentialError, match="is unusable"):
        setup_provider(CPVConfig(), "gcs", {"bucket": GCS_BUCKET, "credentials_path": str(bad)})
    assert CPVConfig().get_config("gcs") is None


@pytest.mark.azure
def test_the_connection_string_is_named_never_stored(azurite, cpv_home):
    out = cpv(
        "setup",
        "--non-interactive",
        "--storage",
        "azure",
        "--azure-container",
        AZURE_CONTAINER,
        "--azure-connection-string",
        azurite.connection_string,
        expect=2,
    ).output
    assert "env:NAME" in out and "Eby8" not in out and "AccountKey" not in out
    assert CPVConfig().get_config("azure") is None
