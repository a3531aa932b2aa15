import math

import pytest

from cpv_core import ValidationError
from cpv_core.metrics import compare, encode_record, latest_metrics, make_record, parse_log, validate_metrics


def test_validate_accepts_json_values():
    m = {"loss": 0.25, "epochs": 50, "name": "x", "ok": True, "hist": [1, 2], "nested": {"a": 1}}
    assert validate_metrics(m) == m
    assert validate_metrics(None) == {}


@pytest.mark.parametrize(
    "bad", [[1, 2], "loss=1", {"": 1}, {1: 2}, {"loss": math.nan}, {"loss": math.inf}, {"x": object()}, {"n": {"deep": math.nan}}]
)
def test_validate_rejects_bad_metrics(bad):
    with pytest.raises(ValidationError):
        validate_metrics(bad)


def test_log_round_trip_skips_damaged_lines():
    a = make_record("model", "upload", {"loss": 1.0})
    b = make_record("data", "upload", {})
    c = make_record("model", "upload", {"loss": 0.5}, message="better")
    content = encode_record(a) + b"not json\n" + encode_record(b) + encode_record(c)
    records = parse_log(content)
    assert [r["kind"] for r in records] == ["model", "data", "model"]
    assert latest_metrics(records, "model") == {"loss": 0.5}
    assert latest_metrics(records, "data") == {}
    assert records[2]["message"] == "better" and "timestamp" in records[2]


def test_compare_gives_deltas():
    out = compare({"loss": 1.0, "acc": 0.5, "name": "a"}, {"loss": 0.75, "acc": 0.5, "new": 3})
    assert out["loss"]["delta"] == -0.25
    assert out["acc"]["delta"] == 0
    assert out["name"] == {"a": "a", "b": None, "delta": None}
    assert out["new"] == {"a": None, "b": 3, "delta": None}
