"""Stages with promotion rules, and selectors wherever a version is accepted."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpv_core import ModelsCheckpointsManage
from cpv_core.errors import CheckpointNotFoundError, ValidationError, VersionExistsError
from cpv_core.stage_rules import RULES_FILE, parse_gate, parse_rules

from .helpers import git, write_model
from .test_history import cpv

TEAM, MODEL = "AI-Convo", "whisper"
T = ["-t", TEAM, "--model-name", MODEL]
RULES = {"order": ["dev", "staging", "prod"], "require_previous": True, "gates": {"prod": ["wer < 0.05", "loss <= 0.3"]}}


@pytest.fixture
def m(cpv_home) -> ModelsCheckpointsManage:
    """Three versions: v0.1 (wer 0.08), v0.2 (wer 0.04, best), v0.3 (wer 0.061)."""
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    for seed, (wer, loss, acc) in enumerate([(0.08, 0.5, 0.7), (0.04, 0.2, 0.9), (0.061, 0.25, 0.8)], start=1):
        write_model(m.repo_path / "model.bin", 1000, seed=seed)
        m.upload_model_checkpoint(metrics={"wer": wer, "loss": loss, "acc": {"top1": acc}})
        m.tag_model_checkpoint()
    return m


def test_promote_demote_and_the_history_of_every_change(m):
    assert m.stages() == {}
    event = m.promote("v0.1", "prod", message="first release")
    assert event is not None and event.version == "v0.1" and event.number == 1
    m.promote("v0.2", "prod")
    m.promote("v0.2", "staging")
    assert m.stages() == {"prod": "v0.2", "staging": "v0.2"}
    assert m.promote("v0.2", "prod") is None  # already there: nothing recorded
    m.demote("prod", message="rollback drill")
    assert m.stages() == {"staging": "v0.2"}
    history = m.stage_history("prod")
    assert [(e.number, e.version, e.message) for e in history] == [
        (1, "v0.1", "first release"),
        (2, "v0.2", ""),
        (3, None, "rollback drill"),
    ]
    assert all(e.author and e.date for e in history)


def test_rules_refuse_with_the_rule_and_the_value_and_force_is_recorded(m, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    cpv("model", "stage-rules", "set", str(rules), *T)
    assert git(m.repo_path, "log", "-1", "--format=%s").strip() == "Set stage rules"
    assert json.loads(cpv("model", "stage-rules", "show", "--json", *T).stdout) == RULES

    out = cpv("model", "promote", "v0.3", "--stage", "prod", *T, expect=2).output
    assert "wer=0.061 is not < 0.05" in out and "never held the previous stage staging" in out and "--force" in out
    with pytest.raises(ValidationError, match="is not one of the model's stages"):
        m.promote("v0.2", "production")
    m.promote("v0.2", "dev")
    m.promote("v0.2", "staging")
    assert cpv("model", "promote", "v0.2", "--stage", "prod", *T).stdout.strip() == "prod v0.2"
    cpv("model", "promote", "v0.3", "--stage", "prod", "--force", "-m", "hotfix", *T)
    last = m.stage_history("prod")[-1]
    assert last.version == "v0.3" and last.message == "hotfix"
    assert "wer=0.061 is not < 0.05" in last.forced and "it never held the previous stage staging" in last.forced
    history = json.loads(cpv("model", "stages", "--history", "--json", *T).stdout)["history"]
    assert [h["forced"] for h in history if h["stage"] == "prod"][-1] == list(last.forced)
    assert "hotfix" in cpv("model", "stages", "--history", *T).stdout


def test_selectors_work_in_every_command(m, tmp_path):
    m.promote("v0.1", "prod")
    assert m.get_model_metadata("prod").version == "v0.1"
    assert m.get_model_metadata("latest").version == "v0.3"
    assert m.get_model_metadata("best:wer").version == "v0.2"
    assert m.get_model_metadata("best:acc.top1:max").version == "v0.2"
    assert m.get_model_metadata("best:loss").version == "v0.2"
    got = m.download_model_checkpoint("prod", output_dir=tmp_path / "prod")
    assert got.tag == "v0.1"
    assert json.loads(cpv("model", "info", "prod", "--json", *T).stdout)["version"] == "v0.1"
    assert json.loads(cpv("diff", "prod", "best:wer", "--json", *T).stdout)["b"] == "v0.2"
    m.revert_model_checkpoint("best:wer")
    assert m.get_model_metadata(None).version == "v0.3"  # revert makes a commit, not a version
    listing = json.loads(cpv("model", "list", "--stage", "prod", "--json", *T).stdout)["versions"]
    assert [v["version"] for v in listing] == ["v0.1"] and listing[0]["stages"] == ["prod"]
    table = cpv("model", "list", *T).stdout
    assert "STAGES" in table and "prod" in table
    ordered = json.loads(cpv("model", "list", "--sort", "wer", "--filter", "wer<0.07", "--json", *T).stdout)["versions"]
    assert [v["version"] for v in ordered] == ["v0.2", "v0.3"]


@pytest.mark.parametrize(
    ("selector", "error", "text"),
    [
        ("staging", CheckpointNotFoundError, "no model version holds stage staging"),
        ("best:bleu", CheckpointNotFoundError, "records the metric bleu"),
        ("best:wer:sideways", ValidationError, "is not best:METRIC"),
        ("v1", ValidationError, "is not of the form"),
        ("Prod!", ValidationError, "is not a version, a stage or a selector"),
    ],
)
def test_a_selector_that_names_nothing_says_what_exists(m, selector, error, text):
    with pytest.raises(error, match=text):
        m.get_model_metadata(selector)


def test_two_members_changing_a_stage_at_once_end_with_one_winner(m, tmp_path, monkeypatch):
    import cpv_core.stages as stages_module

    bob = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    real_fetch = stages_module.fetch_versions
    calls = {"n": 0}

    def fetch_late(ws, *, required):  # bob's view is taken just before alice's change lands
        calls["n"] += 1
        if calls["n"] > 1:
            real_fetch(ws, required=required)

    bob.ws.versioning.fetch()
    m.promote("v0.1", "prod")  # alice lands first; bob's fetch was just before it
    monkeypatch.setattr(stages_module, "fetch_versions", fetch_late)
    with pytest.raises(VersionExistsError, match="promoted v0.1 to prod first"):
        bob.promote("v0.2", "prod")
    monkeypatch.setattr(stages_module, "fetch_versions", real_fetch)
    assert bob.stages() == {"prod": "v0.1"}
    assert not [t for t in git(bob.repo_path, "tag", "-l").split() if t.startswith("stage/") and t.endswith("/2")]


def test_stage_records_from_the_repository_are_data(m, caplog):
    m.promote("v0.1", "prod")
    # a hand-made tag in the stage namespace with metadata cpv never writes
    git(m.repo_path, "tag", "-a", "stage/model/prod/2", "-m", 'x\n\ncpv-metadata: {"action": "promote", "version": "../../etc"}', "HEAD")
    assert m.ws.versioning.list_stage_events("model")[-1].number == 1
    assert "ignoring stage record stage/model/prod/2" in caplog.text


def test_teammates_rules_arrive_with_pull_and_bad_rules_are_a_clear_error(m, tmp_path):
    bob = ModelsCheckpointsManage(TEAM, MODEL, repo_path=tmp_path / "bob")
    bob.import_model_init()
    m.set_stage_rules(RULES)
    bob.pull()
    assert bob.stage_rules().order == ("dev", "staging", "prod")
    (m.repo_path / ".cpv" / "stages.json").write_text('{"order": ["prod"], "gates": {"prod": ["__import__(\'os\') < 1"]}}')
    git(m.repo_path, "commit", "-qam", "hand-edited rules")
    with pytest.raises(ValidationError, match="is not a gate"):
        m.promote("v0.2", "prod")
    with pytest.raises(ValidationError, match="unknown key"):
        m.set_stage_rules({"order": ["prod"], "gatez": {}})


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_gate_parsing_never_evaluates_and_never_crashes(text):
    try:
        gate = parse_gate(text, "gate")
    except ValidationError:
        return
    assert gate.op in {"<", "<=", ">", ">=", "==", "!="} and str(gate).startswith(gate.metric)


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=12,
    )
)
def test_rules_parsing_takes_any_json_and_only_raises_validation_errors(value):
    try:
        rules = parse_rules(json.dumps(value))
    except ValidationError:
        return
    assert parse_rules(json.dumps(rules.to_dict())) == rules


def test_combined_checkpoints_have_stages_too(cpv_home, tmp_path):
    from cpv_core import CombinedCheckpointsManage, DataCheckpointsManage

    from .helpers import write_data_dir

    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    src = tmp_path / "dataset"
    write_data_dir(src)
    DataCheckpointsManage(TEAM, MODEL).upload_data_checkpoint(data_path=src)
    write_model(m.repo_path / "model.bin", 1000, seed=1)
    m.upload_model_checkpoint(metrics={"wer": 0.04})
    c = CombinedCheckpointsManage(TEAM, MODEL)
    c.tag_model_and_data()
    assert c.promote("v0.1", "prod") is not None
    assert c.stages() == {"prod": "v0.1"}
    assert json.loads(cpv("checkpoint", "stages", "--json", *T).stdout)["stages"][0]["version"] == "v0.1"
    cpv("checkpoint", "demote", "--stage", "prod", "-m", "retired", *T)
    assert c.stages() == {} and c.stage_history("prod")[-1].message == "retired"
    assert m.stages() == {}  # the model's own stages are a separate sequence


def test_a_kill_between_writing_and_committing_the_rules_is_rolled_back_by_the_next_command(m, tmp_path, caplog):
    """Crash rule: `stage-rules set` killed after writing .cpv/stages.json and before its
    commit leaves a journal; the next command puts the file back as committed and says so."""
    import subprocess
    import sys

    from cpv_core.faults import KILL_ENV, KILLED_EXIT

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"order": ["dev", "prod"]}))
    env = {**os.environ, KILL_ENV: "stage-rules.written"}
    killed = subprocess.run(
        [sys.executable, "-m", "cpv_core.cli", "model", "stage-rules", "set", str(rules), *T], capture_output=True, env=env, timeout=120
    )
    assert killed.returncode == KILLED_EXIT
    written = m.repo_path / RULES_FILE
    assert written.is_file()  # the half-done write is there, uncommitted
    assert git(m.repo_path, "log", "-1", "--format=%s").strip() != "Set stage rules"
    cpv("model", "list", *T)
    assert "an interrupted stage rules was rolled back" in caplog.text
    assert not written.exists() and git(m.repo_path, "status", "--porcelain").strip() == ""
    cpv("model", "stage-rules", "set", str(rules), *T)  # and running it again completes
    assert json.loads(cpv("model", "stage-rules", "show", "--json", *T).output)["order"] == ["dev", "prod"]


def test_stages_are_listed_in_the_rules_order(m, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"order": ["dev", "staging", "prod"]}))
    cpv("model", "stage-rules", "set", str(rules), *T)
    for version, stage in (("v0.1", "prod"), ("v0.2", "staging"), ("v0.3", "dev")):
        cpv("model", "promote", version, "--stage", stage, "--force", *T)
    listed = [row["stage"] for row in json.loads(cpv("model", "stages", "--json", *T).stdout)["stages"]]
    assert listed == ["dev", "staging", "prod"]


def test_a_stray_stage_record_cannot_satisfy_require_previous(m, tmp_path, caplog):
    """A hand-pushed `stage/model/staging/999999` naming v0.2 is not one of cpv's records:
    it neither holds staging nor counts as v0.2 having held it for the prod rule."""
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"order": ["staging", "prod"], "require_previous": True}))
    cpv("model", "stage-rules", "set", str(rules), *T)
    stray = 'x\n\ncpv-metadata: {"action": "promote", "version": "v0.2"}'
    git(m.repo_path, "tag", "-a", "stage/model/staging/999999", "-m", stray, "HEAD")
    git(m.repo_path, "push", "-q", "origin", "refs/tags/stage/model/staging/999999")
    out = cpv("model", "promote", "v0.2", "--stage", "prod", *T, expect=2).output
    assert "never held the previous stage staging" in out
