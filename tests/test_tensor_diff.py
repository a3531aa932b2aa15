"""Tensor-level diff of .safetensors models (safetensors' numpy API, no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from cpv_core import ModelsCheckpointsManage
from cpv_core.errors import ValidationError
from cpv_core.tensor_diff import diff_files

from .test_history import cpv

TEAM, MODEL = "AI-Convo", "whisper"
T = ["-t", TEAM, "--model-name", MODEL]


def base_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "encoder.layer0.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "encoder.layer1.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "head.weight": rng.standard_normal((4, 8)).astype(np.float32),
        "head.bias": np.zeros(4, dtype=np.float32),
    }


def fine_tuned(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder frozen, the head trained, a new adapter, the bias dropped, layer1 widened."""
    tuned = {k: v.copy() for k, v in weights.items()}
    tuned["head.weight"] = tuned["head.weight"] + 0.01
    tuned["adapter.weight"] = np.ones((2, 8), dtype=np.float32)
    del tuned["head.bias"]
    tuned["encoder.layer1.weight"] = np.zeros((8, 16), dtype=np.float32)
    return tuned


def test_a_fine_tune_shows_frozen_layers_unchanged_and_the_head_changed(cpv_home, tmp_path):
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    weights = base_weights()
    export = tmp_path / "export"
    export.mkdir()
    save_file(weights, str(export / "model.safetensors"))
    (export / "config.json").write_text("{}")
    m.upload_model_checkpoint(model_path=export)
    m.tag_model_checkpoint()
    save_file(fine_tuned(weights), str(export / "model.safetensors"))
    m.upload_model_checkpoint(model_path=export)
    m.tag_model_checkpoint()

    d = m.diff("v0.1", "v0.2")
    assert d["files"]["changed"] == ["model.safetensors"]
    t = d["tensors"]["model.safetensors"]
    assert t["added"] == ["adapter.weight"] and t["removed"] == ["head.bias"] and t["unchanged"] == 1  # layer0: frozen
    assert t["unchanged_names"] == ["encoder.layer0.weight"]  # named, not only counted
    assert [r["name"] for r in t["reshaped"]] == ["encoder.layer1.weight"] and t["reshaped"][0]["b"]["shape"] == [8, 16]
    (head,) = t["changed"]
    assert head["name"] == "head.weight" and head["max_abs"] == pytest.approx(0.01, rel=1e-3)
    assert head["rel_l2"] == pytest.approx(0.01 * np.sqrt(32) / np.linalg.norm(weights["head.weight"]), rel=1e-3)
    out = cpv("diff", "v0.1", "v0.2", *T).stdout
    assert "tensors of model.safetensors: 1 changed, 1 added, 1 removed, 1 reshaped, 1 unchanged" in out
    assert "changed   head.weight (max-abs 0.01" in out
    assert json.loads(cpv("diff", "v0.1", "v0.2", "--json", *T).stdout)["tensors"]["model.safetensors"]["added"] == ["adapter.weight"]


def test_a_single_file_model_and_a_non_safetensors_file(cpv_home, tmp_path):
    m = ModelsCheckpointsManage(TEAM, MODEL)
    m.import_model_init()
    weights = base_weights()
    save_file(weights, str(tmp_path / "model.safetensors"))
    m.upload_model_checkpoint(model_path=tmp_path / "model.safetensors")
    m.tag_model_checkpoint()
    weights["head.bias"] = weights["head.bias"] + 1
    save_file(weights, str(tmp_path / "model.safetensors"))
    m.upload_model_checkpoint(model_path=tmp_path / "model.safetensors")
    m.tag_model_checkpoint()
    t = m.diff("v0.1", "v0.2")["tensors"]["model.safetensors"]
    assert [c["name"] for c in t["changed"]] == ["head.bias"] and t["changed"][0]["rel_l2"] is None  # it was all zeros
    (tmp_path / "other.bin").write_bytes(b"not tensors")
    m.upload_model_checkpoint(model_path=tmp_path / "other.bin")
    m.tag_model_checkpoint()
    d = m.diff("v0.2", "v0.3")
    assert d["files"] == {"added": ["other.bin"], "removed": ["model.safetensors"], "changed": []}
    assert list(d["tensors"]) == ["model.safetensors"]  # other.bin is not tensors: the file-level diff only
    assert d["tensors"]["model.safetensors"]["removed"] == sorted(weights)
    (tmp_path / "other.bin").write_bytes(b"still not tensors")
    m.upload_model_checkpoint(model_path=tmp_path / "other.bin")
    m.tag_model_checkpoint()
    assert "tensors" not in m.diff("v0.3", "v0.4")


def test_a_damaged_safetensors_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 16)
    with pytest.raises(ValidationError, match="cannot read the tensors of bad.safetensors"):
        diff_files(None, bad)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_tensors_or_one_clear_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "x.safetensors"
    path.write_bytes(data)
    try:
        diff_files(path, path)
    except ValidationError as exc:
        assert "cannot read the tensors" in exc.message
