"""Storage cost: `cpv du --cost` prices what is actually stored, per version, model
and team, counting an object shared by several versions once."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpv_core import DataCheckpointsManage, ModelsCheckpointsManage
from cpv_core.cost import GB, monthly, storage_cost

from .helpers import write_model
from .test_history import cpv

TEAM = "AI-Convo"


def two_data_versions(model: str) -> DataCheckpointsManage:
    """Data v0.1 of four 1000-byte files, then v0.2 with one of them changed:
    three file objects are shared by both versions."""
    d = DataCheckpointsManage(TEAM, model)
    d.import_data_init()
    data = d.repo_path / "data"
    data.mkdir(exist_ok=True)
    for i in range(4):
        (data / f"f{i}.bin").write_bytes(bytes([i]) * 1000)
    d.upload_data_checkpoint()
    d.tag_data_checkpoint()
    (data / "f0.bin").write_bytes(b"x" * 1000)
    d.upload_data_checkpoint()
    d.tag_data_checkpoint()
    return d


def test_du_cost_counts_shared_objects_once_per_version_model_and_team(cpv_home):
    two_data_versions("whisper")
    m = ModelsCheckpointsManage(TEAM, "bert")
    m.import_model_init()
    write_model(m.repo_path / "model.bin", 5000, seed=1)
    m.upload_model_checkpoint()
    m.tag_model_checkpoint()
    report = json.loads(cpv("du", "--all", "-t", TEAM, "--price-per-gb-month", "100", "--json").output)
    assert report["price_per_gb_month"] == 100 and report["currency"] == "USD"
    whisper = {r["version"]: r for r in report["versions"] if r["model"] == "whisper"}
    manifests = report["models"][f"{TEAM}/whisper"]["bytes"] - 5000  # five file objects + two manifests
    v1, v2 = whisper["v0.1"], whisper["v0.2"]
    assert v1["size"] == v2["size"] > 4000 and v1["shared"] == v2["shared"] == 3000
    # each shared object is charged half to each version: the shares add up to what is stored
    assert v1["stored"] + v2["stored"] == 5000 + manifests
    assert v1["stored"] == 1000 + 1500 + (v1["size"] - 4000)
    assert v1["monthly_cost"] == monthly(v1["stored"], 100) == round(v1["stored"] / GB * 100, 4)
    assert report["models"][f"{TEAM}/bert"] == {
        "bytes": 5000,
        "unreferenced_bytes": 0,
        "monthly_cost": monthly(5000, 100),
        "whole_file_bytes": 5000,
        "whole_file_monthly_cost": monthly(5000, 100),
    }
    # whisper's two versions share three files: as whole files per version they would take more than is stored
    assert report["models"][f"{TEAM}/whisper"]["whole_file_bytes"] == v1["file_bytes"] + v2["file_bytes"] > 5000
    team = report["teams"][TEAM]
    assert team["bytes"] == 5000 + 5000 + manifests and team["models"] == 2
    assert team["monthly_cost"] == monthly(team["bytes"], 100)

    text = cpv("du", "--cost", "-t", TEAM, "--model-name", "bert").output
    assert "PER MONTH" in text and "a month at $0.023/GB-month" in text and f"team {TEAM}: 4.9 KiB in 1 model(s)" in text


def test_du_refuses_a_negative_price_and_changes_nothing(cpv_home):
    d = two_data_versions("whisper")
    before = sorted(p.name for p in d.repo_path.rglob("*"))
    out = cpv("du", "-t", TEAM, "--model-name", "whisper", "--price-per-gb-month", "-1", expect=2).output
    assert "price -1.0 per GB-month is not usable" in out and "--price-per-gb-month 0.023" in out
    assert sorted(p.name for p in d.repo_path.rglob("*")) == before


@settings(max_examples=60, deadline=None)
@given(
    objects=st.dictionaries(st.text("abcdef0123456789", min_size=4, max_size=4), st.integers(0, 10**12), min_size=1, max_size=6),
    price=st.floats(0, 10, allow_nan=False),
)
def test_cost_of_the_parts_adds_up_to_the_whole(objects, price):
    """Whatever the sizes, team = sum of models and every figure is size / GB * price."""
    usages = {
        f"{TEAM}/m{i}": {"versions": [], "total_bytes": size, "unreferenced_bytes": size, "objects": 1}
        for i, size in enumerate(objects.values())
    }
    report = storage_cost(usages, price)
    assert report["teams"][TEAM]["bytes"] == sum(objects.values())
    for name, row in report["models"].items():
        assert row["monthly_cost"] == pytest.approx(usages[name]["total_bytes"] / GB * price, abs=1e-4)
