"""MLflow sync against a real MLflow tracking and registry store (SQLite, no server):
versions become model versions with their metrics and the stored bytes as source,
stages become aliases, and `cpv mlflow-sync` brings over what a failed sync missed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.config import CPVConfig

from .helpers import write_data_dir, write_model
from .test_history import cpv

TEAM, MODEL = "AI-Convo", "whisper"
T = ["-t", TEAM, "--model-name", MODEL]
NAME = f"{TEAM}.{MODEL}"


@pytest.fixture
def mlflow_uri(cpv_home, tmp_path) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cpv("config", "set", "mlflow.tracking_uri", uri)
    cpv("config", "set", "events.timeout", "120")  # creating the database takes seconds on a busy machine
    return uri


def by_cpv_version(client: MlflowClient, name: str) -> dict[str, object]:
    return {mv.tags["cpv.version"]: mv for mv in client.search_model_versions(f"name='{name}'")}


def test_versions_and_stages_are_mirrored_into_the_mlflow_registry(mlflow_uri, tmp_path):
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    for seed, loss in ((1, 0.5), (2, 0.25)):
        write_model(m.repo_path / "model.bin", 3000, seed=seed)
        m.upload_model_checkpoint(metrics={"loss": loss, "note": "bf16"})
        m.tag_model_checkpoint(message=f"epoch {seed}")
    m.promote("v0.2", "prod")
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    versions = by_cpv_version(client, NAME)
    assert sorted(versions) == ["v0.1", "v0.2"]
    v2 = versions["v0.2"]
    assert v2.description == "epoch 2" and v2.tags["cpv.author"] == "Test User" and v2.tags["cpv.kind"] == "model"
    assert (
        v2.source.startswith("file:///")
        and Path(v2.source.removeprefix("file://")).read_bytes() == (m.repo_path / "model.bin").read_bytes()
    )
    run = client.get_run(v2.run_id)
    assert run.data.metrics == {"loss": 0.25} and run.data.tags["metric.note"] == "bf16"
    assert client.get_experiment(run.info.experiment_id).name == f"cpv/{TEAM}/{MODEL}"
    assert client.get_model_version_by_alias(NAME, "prod").version == v2.version
    m.promote("v0.1", "prod", force=True)
    assert client.get_model_version_by_alias(NAME, "prod").version == versions["v0.1"].version
    m.demote("prod")
    assert "prod" not in client.get_registered_model(NAME).aliases


def test_a_failed_sync_loses_nothing_and_mlflow_sync_catches_up(mlflow_uri, tmp_path):
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 2000, seed=1)
    m.upload_model_checkpoint(metrics={"loss": 0.4})
    m.tag_model_checkpoint()
    # MLflow unreachable: its directory is gone; the publish stands
    CPVConfig().set_config("mlflow.tracking_uri", f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    m = ModelsCheckpointsManage(TEAM, MODEL)
    write_model(m.repo_path / "model.bin", 2000, seed=2)
    m.upload_model_checkpoint(metrics={"loss": 0.3})
    assert m.tag_model_checkpoint() == "v0.2"
    m.promote("v0.2", "staging")
    d = DataCheckpointsManage(TEAM, MODEL)
    write_data_dir(d.repo_path / "data", 3)
    d.upload_data_checkpoint()
    d.tag_data_checkpoint()
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    assert sorted(by_cpv_version(client, NAME)) == ["v0.1"]

    cpv("config", "set", "mlflow.tracking_uri", mlflow_uri)
    out = cpv("mlflow-sync", *T).output
    assert out.strip().endswith(f"MLflow: 3 version(s) and 1 stage(s) of {TEAM}/{MODEL} mirrored")
    assert sorted(by_cpv_version(client, NAME)) == ["v0.1", "v0.2"]
    assert sorted(by_cpv_version(client, f"{NAME}.data")) == ["v0.1"]
    assert client.get_model_version_by_alias(NAME, "staging").tags["cpv.version"] == "v0.2"
    cpv("mlflow-sync", *T)  # again: nothing is registered twice
    assert len(client.search_model_versions(f"name='{NAME}'")) == 2


def test_mlflow_sync_without_a_tracking_uri_says_how_to_set_one(cpv_home, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ModelsCheckpointsManage(TEAM, MODEL).import_model_init()
    out = cpv("mlflow-sync", *T, expect=3).output
    assert "MLflow sync is off: no tracking URI" in out and "cpv config set mlflow.tracking_uri URI" in out


def test_metric_names_mlflow_refuses_are_mapped_and_recorded(mlflow_uri):
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 2000, seed=3)
    metrics = {"recall@10": 0.8, "wer@test!": 0.1, "recall_10": 0.7, "acc": {"top 1": 0.9}, "a/../b": 1, "split:val": "dev"}
    m.upload_model_checkpoint(metrics=metrics)
    m.tag_model_checkpoint()
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    (mv,) = by_cpv_version(client, NAME).values()
    run = client.get_run(mv.run_id)
    assert run.data.metrics == {"recall_10": 0.7, "recall_10_2": 0.8, "wer_test_": 0.1, "acc.top 1": 0.9, "a/_/b": 1.0}
    assert run.data.tags["metric.split_val"] == "dev"
    assert json.loads(run.data.tags["cpv.metric_names"]) == {
        "recall_10_2": "recall@10",
        "wer_test_": "wer@test!",
        "a/_/b": "a/../b",
        "split_val": "split:val",
    }


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=6, unique=True))
def test_every_mapped_name_is_one_mlflow_accepts_and_they_stay_distinct(names):
    from mlflow.utils.validation import _validate_metric_name, _validate_tag_name

    from cpv_plugins.mlflow_sync import split_metrics

    numeric, other, renamed = split_metrics({name: i for i, name in enumerate(names)})
    assert len(numeric) == len(names) and not other
    for name in numeric:
        _validate_metric_name(name)
        _validate_tag_name(name)
    assert all(renamed.get(n, n) in names for n in numeric)


def test_mlflow_sync_skips_and_reports_a_version_mlflow_refuses_and_leaves_no_orphan_run(mlflow_uri, tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    CPVConfig().set_config("mlflow.tracking_uri", f"sqlite:///{tmp_path / 'missing' / 'x.db'}")  # off while versions are made
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    for seed in (1, 2):
        write_model(m.repo_path / "model.bin", 2000, seed=seed)
        m.upload_model_checkpoint(metrics={"loss": 1.0 / seed})
        m.tag_model_checkpoint()
    m.promote("v0.2", "prod")
    cpv("config", "set", "mlflow.tracking_uri", mlflow_uri)
    real = MlflowClient.create_model_version

    def refuse_v01(self, name, *args, tags=None, **kwargs):
        if (tags or {}).get("cpv.version") == "v0.1":
            raise MlflowException("the registry refused this version for a test")
        return real(self, name, *args, tags=tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_model_version", refuse_v01)
    out = cpv("mlflow-sync", *T, expect=1).output
    assert "MLflow: not mirrored: model v0.1: the registry refused this version for a test" in out
    assert f"MLflow: 1 version(s) and 1 stage(s) of {TEAM}/{MODEL} mirrored" in out
    assert "Traceback" not in out
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    assert sorted(by_cpv_version(client, NAME)) == ["v0.2"]
    assert client.get_model_version_by_alias(NAME, "prod").tags["cpv.version"] == "v0.2"
    experiment = client.get_experiment_by_name(f"cpv/{TEAM}/{MODEL}")
    assert [r.info.run_name for r in client.search_runs([experiment.experiment_id])] == ["model v0.2"]  # v0.1's run was deleted
    monkeypatch.setattr(MlflowClient, "create_model_version", real)
    cpv("mlflow-sync", *T)
    assert sorted(by_cpv_version(client, NAME)) == ["v0.1", "v0.2"]


def test_params_become_mlflow_params_and_the_code_origin_run_tags(mlflow_uri):
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 2000, seed=5)
    m.upload_model_checkpoint(metrics={"loss": 0.3}, params={"lr": 0.001, "optim": {"name": "adamw"}, "seed@run": 7})
    m.tag_model_checkpoint()
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    (mv,) = by_cpv_version(client, NAME).values()
    run = client.get_run(mv.run_id)
    assert run.data.params == {"lr": "0.001", "optim.name": "adamw", "seed_run": "7"} and run.data.metrics == {"loss": 0.3}
