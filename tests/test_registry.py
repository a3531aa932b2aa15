"""The registry view: every team/model of the configured remotes, read without a workspace."""

from __future__ import annotations

import json
import shutil

from cpv_core import ModelsCheckpointsManage
from cpv_core.config import CPVConfig
from cpv_core.plugins import Plugins

from .helpers import write_model
from .test_history import cpv


def publish(team: str, model: str, versions: int, stage: str | None = None) -> ModelsCheckpointsManage:
    m = ModelsCheckpointsManage(team, model)
    m.import_model_init()
    for seed in range(versions):
        write_model(m.repo_path / "model.bin", 1000, seed=seed + hash(team) % 100)
        m.upload_model_checkpoint(metrics={"loss": 1 / (seed + 1)})
        m.tag_model_checkpoint()
    if stage:
        m.promote("v0.1", stage)
    return m


def test_the_registry_lists_three_teams_with_no_workspace_at_all(cpv_home, tmp_path):
    publish("AI-Convo", "whisper", 2, stage="prod")
    publish("Vision", "detector", 1)
    publish("Search", "ranker", 3, stage="staging")
    shutil.rmtree(cpv_home / "workspaces")  # nothing local: only the remotes
    assert Plugins().enumerate_models(CPVConfig()) == [("AI-Convo", "whisper"), ("Search", "ranker"), ("Vision", "detector")]
    listing = json.loads(cpv("registry", "--json").stdout)["models"]
    by_name = {(e["team"], e["model"]): e for e in listing}
    assert by_name[("AI-Convo", "whisper")]["latest"]["model"] == "v0.2"
    assert by_name[("AI-Convo", "whisper")]["stages"] == {"model": {"prod": "v0.1"}}
    assert by_name[("Search", "ranker")]["versions"]["model"] == 3 and by_name[("Vision", "detector")]["updated"]
    table = cpv("models").stdout
    assert "TEAM" in table and "prod=v0.1" in table and "ranker" in table
    assert not (cpv_home / "workspaces").exists()  # no workspace was made: only private mirrors


def test_list_and_info_of_a_model_with_no_local_workspace(cpv_home, tmp_path):
    publish("AI-Convo", "whisper", 2, stage="prod")
    shutil.rmtree(cpv_home / "workspaces")
    T = ["-t", "AI-Convo", "--model-name", "whisper"]
    listing = json.loads(cpv("model", "list", "--json", *T, cwd=tmp_path).stdout)["versions"]
    assert [v["version"] for v in listing] == ["v0.1", "v0.2"] and listing[0]["stages"] == ["prod"]
    info = json.loads(cpv("model", "info", "prod", "--json", *T, cwd=tmp_path).stdout)
    assert info["version"] == "v0.1" and info["metrics"] == {"loss": 1.0}
    assert not (cpv_home / "workspaces").exists()


def test_an_unreachable_model_is_listed_with_its_error_and_hides_nothing(cpv_home):
    publish("AI-Convo", "whisper", 1)
    publish("Vision", "detector", 1)
    broken = cpv_home / "local" / "git" / "Vision" / "detector.git"
    (broken / "objects").rename(broken / "objects-away")
    listing = json.loads(cpv("registry", "--json").stdout)["models"]
    by_name = {(e["team"], e["model"]): e for e in listing}
    assert by_name[("AI-Convo", "whisper")]["latest"]["model"] == "v0.1"
    assert by_name[("Vision", "detector")]["error"]


def test_a_mirror_a_killed_run_left_half_made_is_made_again(cpv_home):
    publish("AI-Convo", "whisper", 1)
    half = cpv_home / "registry" / "AI-Convo" / "whisper"
    half.mkdir(parents=True)
    (half / "objects").mkdir()  # git init was killed before it wrote HEAD
    listing = json.loads(cpv("registry", "--json").stdout)["models"]
    assert listing[0]["latest"]["model"] == "v0.1" and not listing[0]["error"]


def test_a_model_made_before_hosting_was_switched_is_read_through_its_own_backends(cpv_home):
    """docs: a workspace keeps the backends it was created with. `cpv setup` later moved
    hosting elsewhere: the registry must still read the model from its own host, and a model
    it cannot read gets its error on a line of its own, never inside the STAGES column."""
    publish("AI-Convo", "whisper", 2, stage="prod")
    publish("Vision", "detector", 1)
    broken = cpv_home / "local" / "git" / "Vision" / "detector.git"
    (broken / "objects").rename(broken / "objects-away")
    CPVConfig().set_config("hosting", "bitbucket-ssh")  # now the default for new models; not set up at all
    listing = {(e["team"], e["model"]): e for e in json.loads(cpv("registry", "--json").stdout)["models"]}
    assert listing[("AI-Convo", "whisper")]["error"] == "" and listing[("AI-Convo", "whisper")]["stages"] == {"model": {"prod": "v0.1"}}
    table = cpv("registry").stdout.splitlines()
    row = next(line for line in table if "detector" in line and "unreadable" in line)
    assert len(row) < 120 and "error" not in row
    below = [line for line in table if line.startswith("Vision/detector: ")]
    assert len(below) == 1 and table.index(below[0]) > table.index(row)
