"""The Hugging Face and Lightning adapters, driven with the calls those frameworks make
(transformers, lightning and torch are not installed in CI: too heavy for its budget)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from cpv_core import Checkpointer, ModelsCheckpointsManage
from cpv_core.integrations import huggingface_callback, lightning_callback, numeric_metrics

from .helpers import write_model

TEAM, MODEL = "AI-Convo", "whisper"


class Scalar:
    """What a framework hands over as a metric: a 0-d tensor with ``item()``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def item(self) -> float:
        return self.value


def test_the_trainer_callback_uploads_each_saved_checkpoint_with_the_last_evaluation(cpv_home, tmp_path):
    out = tmp_path / "trainer-out"
    args = SimpleNamespace(output_dir=str(out))
    with Checkpointer(TEAM, MODEL, keep_best="eval_loss", tag="auto") as ck:
        cb = huggingface_callback(ck)
        for step, loss in ((100, 0.9), (200, 0.6), (300, 0.7)):
            state = SimpleNamespace(global_step=step, epoch=step / 100)
            cb.on_evaluate(args, state, None, metrics={"eval_loss": loss, "eval_runtime": 1.5, "note": "text"})
            folder = out / f"checkpoint-{step}"
            write_model(folder / "model.safetensors", 1000, seed=step)
            (folder / "trainer_state.json").write_text("{}")
            cb.on_save(args, state, None)
            ck.wait()  # one at a time, so the versions are predictable
        cb.on_train_end(args, state, None)
    assert ck.uploaded == 3 and ck.versions == ["v0.1", "v0.2"]  # step 300 did not improve eval_loss
    m = ModelsCheckpointsManage(TEAM, MODEL)
    meta = m.get_model_metadata("v0.2")
    assert meta.metrics == {"eval_loss": 0.6, "eval_runtime": 1.5, "step": 200.0, "epoch": 2.0}
    assert meta.path == "checkpoint-200"


def test_the_lightning_callback_hands_each_checkpoint_file_over_once(cpv_home, tmp_path):
    ckpt = tmp_path / "lightning" / "last.ckpt"
    saver = SimpleNamespace(last_model_path="", best_model_path="")
    trainer = SimpleNamespace(checkpoint_callback=saver, callback_metrics={}, current_epoch=0)
    with Checkpointer(TEAM, MODEL, tag=True) as ck:
        cb = lightning_callback(ck)
        cb.on_train_epoch_start(trainer, None)  # nothing saved yet
        for epoch in range(2):
            trainer.current_epoch = epoch
            write_model(ckpt, 800, seed=epoch)  # ModelCheckpoint writes after the other callbacks
            os.utime(ckpt, ns=(epoch * 10**9, epoch * 10**9))
            saver.last_model_path = str(ckpt)
            trainer.callback_metrics = {"val_loss": Scalar(1.0 - epoch / 10)}
            cb.on_train_epoch_start(trainer, None)  # the next epoch starts: the file is picked up
            ck.wait()
        cb.on_fit_end(trainer, None)  # the same file again: not handed over twice
    assert ck.uploaded == 2 and ck.versions == ["v0.1", "v0.2"]
    assert ModelsCheckpointsManage(TEAM, MODEL).get_model_metadata("v0.2").metrics == {"val_loss": 0.9, "epoch": 1.0}
    assert Path(ModelsCheckpointsManage(TEAM, MODEL).get_model_metadata("v0.2").path) == Path("last.ckpt")


def test_only_finite_numbers_become_metrics():
    assert numeric_metrics({"a": Scalar(0.5), "b": "x", "c": float("inf"), "d": 2, "e": None}) == {"a": 0.5, "d": 2.0}
