"""Retention rules (issue #33, "retention that decides"): parsed as data, each version's
fate with its reasons, applied by `cpv gc --policy` through the safe gc."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpv_core import ModelsCheckpointsManage
from cpv_core.domain.retention_rules import BestRule, RetentionRules, VersionFacts, fates, parse_retention
from cpv_core.errors import ValidationError

from .helpers import git

DAY = 86400.0
NOW = 1_800_000_000.0


def facts(*rows: tuple[str, float, dict]) -> list[VersionFacts]:
    return [VersionFacts(v, NOW - age_days * DAY, metrics) for v, age_days, metrics in rows]


def kept(decided: dict[str, list[str]]) -> list[str]:
    return [v for v, why in decided.items() if why]


def test_each_rule_keeps_what_it_says_and_says_why():
    versions = facts(
        ("v0.1", 30, {"loss": 0.9, "epoch": 1}),
        ("v0.2", 29.5, {"loss": 0.5, "epoch": 1}),
        ("v0.3", 20, {"loss": 0.7, "epoch": 2}),
        ("v0.4", 10, {"loss": 0.6, "epoch": 3}),
        ("v0.5", 2, {"loss": 0.8, "epoch": 4}),
        ("v0.6", 1, {"loss": 0.95, "epoch": 5}),
    )
    assert kept(fates(versions, RetentionRules(keep_last=2), set(), NOW)) == ["v0.5", "v0.6"]
    best = fates(versions, RetentionRules(keep_best=(BestRule("loss", 2),)), set(), NOW)
    assert kept(best) == ["v0.2", "v0.4"] and best["v0.2"] == ["2 best by loss (min)"]
    assert kept(fates(versions, RetentionRules(keep_best=(BestRule("loss", 1, "max"),)), set(), NOW)) == ["v0.6"]
    assert kept(fates(versions, RetentionRules(keep_days=5), set(), NOW)) == ["v0.5", "v0.6"]
    # older than 5 days: the newest of each epoch; younger: everything
    thinned = fates(versions, RetentionRules(keep_days=5, thin="epoch"), set(), NOW)
    assert kept(thinned) == ["v0.2", "v0.3", "v0.4", "v0.5", "v0.6"] and thinned["v0.2"] == ["newest of its epoch (1.0)"]
    by_day = fates(versions, RetentionRules(thin="day"), set(), NOW)  # v0.1 (08:00) and v0.2 (20:00) share a UTC day
    assert "v0.1" not in kept(by_day) and {"v0.2", "v0.3", "v0.4", "v0.5", "v0.6"} <= set(kept(by_day))
    staged = fates(versions, RetentionRules(keep_last=1), {"v0.1"}, NOW)
    assert staged["v0.1"] == ["holds a stage"] and kept(fates(versions, RetentionRules(keep_last=1, keep_stages=False), {"v0.1"}, NOW)) == [
        "v0.6"
    ]


def test_a_tie_keeps_the_newer_version():
    versions = facts(("v0.1", 3, {"loss": 0.5}), ("v0.2", 2, {"loss": 0.5}), ("v0.3", 1, {"acc": 1}))
    assert kept(fates(versions, RetentionRules(keep_best=(BestRule("loss", 1),)), set(), NOW)) == ["v0.2"]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[]", "JSON object"),
        ('{"keep_last": -1}', "keep_last"),
        ('{"keep_last": true}', "keep_last"),
        ('{"keep_lats": 3}', "unknown key"),
        ('{"keep_best": [{"metric": "../x", "k": 1}]}', "metric"),
        ('{"keep_best": [{"metric": "wer", "k": 1, "mode": "median"}]}', "mode"),
        ('{"keep_days": "7"}', "keep_days"),
        ('{"thin": "week"}', "thin"),
        ('{"keep_stages": true}', "keep no version"),
    ],
)
def test_bad_rules_are_refused_naming_the_key(text, problem):
    with pytest.raises(ValidationError, match=problem):
        parse_retention(text.encode(), "rules.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=st.dictionaries(st.sampled_from(["keep_stages", "keep_last", "keep_best", "keep_days", "thin", "other"]), json_values, max_size=4)
)
def test_any_document_parses_to_rules_or_one_validation_error(doc):
    try:
        rules = parse_retention(json.dumps(doc).encode(), "fuzz")
    except ValidationError:
        return
    assert parse_retention(json.dumps(rules.to_dict()).encode(), "again") == rules  # what is kept reads back the same


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(st.floats(0, 100), st.floats(-10, 10) | st.none()), max_size=12),
    last=st.integers(0, 5),
    k=st.integers(0, 5),
    days=st.none() | st.floats(0, 50),
    thin=st.none() | st.sampled_from(["day", "epoch"]),
)
def test_fates_keep_at_least_what_each_rule_alone_keeps(rows, last, k, days, thin):
    versions = [
        VersionFacts(f"v0.{i + 1}", NOW - age * DAY, {} if loss is None else {"loss": loss, "epoch": i // 3})
        for i, (age, loss) in enumerate(rows)
    ]
    rules = RetentionRules(keep_last=last, keep_best=(BestRule("loss", k),), keep_days=days, thin=thin)
    decided = fates(versions, rules, set(), NOW)
    assert set(decided) == {v.version for v in versions}
    assert set(kept(decided)) >= {v.version for v in versions[len(versions) - last :]} if last else True
    assert len([v for v in versions if "loss" in v.metrics and any("best" in why for why in decided[v.version])]) == min(
        k, sum("loss" in v.metrics for v in versions)
    )


# -- through gc, on the local default ------------------------------------------------------------


def _versions(m: ModelsCheckpointsManage, losses: list[float]) -> None:
    for epoch, loss in enumerate(losses):
        (m.repo_path / "model.bin").write_bytes(os.urandom(20_000))
        m.upload_model_checkpoint(metrics={"loss": loss, "epoch": epoch})
        m.tag_model_checkpoint()


def test_gc_policy_applies_the_committed_rules_and_dry_run_says_each_fate(cpv_home, tmp_path):
    from click.testing import CliRunner

    from cpv_core.cli import cli

    m = ModelsCheckpointsManage("T", "ret")
    m.import_model_init()
    _versions(m, [0.9, 0.3, 0.7, 0.8, 0.6])
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"keep_last": 1, "keep_best": [{"metric": "loss", "k": 1}]}))
    runner = CliRunner()
    said = runner.invoke(cli, ["model", "retention", "set", str(rules), "-t", "T", "--model-name", "ret"], catch_exceptions=False)
    assert said.exit_code == 0, said.output
    assert git(m.repo_path, "log", "-1", "--format=%s").strip() == "Set retention rules"
    assert m.retention_rules().keep_last == 1
    plan = runner.invoke(cli, ["gc", "--policy", "--grace", "0", "--dry-run", "-t", "T", "--model-name", "ret"], catch_exceptions=False)
    assert plan.exit_code == 0, plan.output
    assert "model v0.2: kept: 1 best by loss (min)" in plan.output
    assert "model v0.5: kept: one of the last 1" in plan.output
    assert "model v0.1: pruned: no rule keeps it" in plan.output and "a month at $" in plan.output
    done = runner.invoke(cli, ["gc", "--policy", "--grace", "0", "--yes", "-t", "T", "--model-name", "ret"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    from cpv_core.ops.retention import version_objects

    present = {o.oid for o in m.ws.storage.inventory()}
    for record in m.records():
        objects = set(version_objects(m, record.ref))
        assert (objects <= present) == (record.version in {"v0.2", "v0.5"}), record.version


def test_a_hostile_rules_file_stops_gc_and_deletes_nothing(cpv_home):
    m = ModelsCheckpointsManage("T", "hostile")
    m.import_model_init()
    _versions(m, [0.5, 0.4])
    (m.repo_path / ".cpv" / "retention.json").write_text('{"keep_last": "all of them"}')
    git(m.repo_path, "add", ".cpv/retention.json")
    git(m.repo_path, "commit", "-q", "-m", "teammate's rules")
    before = {o.oid for o in m.ws.storage.inventory()}
    from cpv_core.ops.retention import RetentionPolicy, collect_garbage

    with pytest.raises(ValidationError, match="keep_last"):
        collect_garbage([m], RetentionPolicy(use_rules=True, grace_hours=0), dry_run=False)
    assert {o.oid for o in m.ws.storage.inventory()} == before


def test_the_checkpointer_applies_the_rules_during_the_run(cpv_home, tmp_path):
    """A run of five epochs with keep=: after it, the best and the last two are kept, the
    others marked pruned and their bytes gone from the store (each save waits for the
    previous upload, so the order is fixed)."""
    from cpv_core import Checkpointer
    from cpv_core.ops.retention import version_objects

    keep = {"keep_last": 2, "keep_best": [{"metric": "loss", "k": 1}]}
    with Checkpointer("T", "run", tag=True, keep=keep) as ck:
        for loss in (0.5, 0.2, 0.6, 0.7, 0.8):
            (tmp_path / "ckpt.bin").write_bytes(os.urandom(30_000))
            ck.save(tmp_path / "ckpt.bin", metrics={"loss": loss})
            ck.wait()
    assert ck.versions == ["v0.1", "v0.2", "v0.3", "v0.4", "v0.5"]
    assert sorted(ck.pruned) == ["v0.1", "v0.3"]
    m = ModelsCheckpointsManage("T", "run")
    present = {o.oid for o in m.ws.storage.inventory()}
    for record in m.records():
        assert (set(version_objects(m, record.ref)) <= present) == (record.version in {"v0.2", "v0.4", "v0.5"}), record.version
    with pytest.raises(ValidationError, match="keep_last"):
        Checkpointer("T", "run", keep={"keep_last": "all"})
    with pytest.raises(ValidationError, match="not rules of plain values"):
        Checkpointer("T", "run", keep={"keep_days": object()})


@pytest.mark.s3
def test_the_rules_prune_on_s3_too(s3_config):
    from cpv_core.ops.retention import RetentionPolicy, collect_garbage, version_objects

    m = ModelsCheckpointsManage("T", "rules-s3")
    m.import_model_init()
    _versions(m, [0.4, 0.9, 0.5])
    m.set_retention_rules({"keep_best": [{"metric": "loss", "k": 1}], "keep_last": 1})
    result = collect_garbage([m], RetentionPolicy(use_rules=True, grace_hours=0), dry_run=False)
    assert result.pruned["model"] == ["v0.2"] and result.fates["model"]["v0.1"] == ["1 best by loss (min)"]
    present = {o.oid for o in m.ws.storage.inventory()}
    for record in m.records():
        assert (set(version_objects(m, record.ref)) <= present) == (record.version != "v0.2"), record.version
