"""Thin adapters that hand a training framework's checkpoints to a
:class:`~cpv_core.api.checkpointer.Checkpointer`.

Each factory imports its framework only when called, and builds the callback
on the framework's own base class; without the framework installed the
callback is a plain object with the same methods (what cpv's tests drive).

* :func:`huggingface_callback` - a ``transformers.TrainerCallback``: the last
  evaluation's metrics go with each ``checkpoint-{step}`` directory the
  Trainer saves (``on_evaluate``, ``on_save``); ``on_train_end`` waits for
  the uploads.
* :func:`lightning_callback` - a Lightning ``Callback``: the checkpoint file
  ``ModelCheckpoint`` wrote last (``last_model_path``, else
  ``best_model_path``) goes with ``trainer.callback_metrics``. Lightning runs
  checkpoint callbacks after the others, so a file is picked up at the start
  of the next epoch and at the end of fitting; each file is handed over once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cpv_core.api.checkpointer import Checkpointer
from cpv_core.domain.metrics import as_number


def numeric_metrics(metrics: Any) -> dict[str, float]:
    """The finite numbers of a framework's metrics (tensors and numpy scalars included)."""
    out: dict[str, float] = {}
    for key, value in dict(metrics or {}).items():
        number = as_number(value.item() if hasattr(value, "item") else value)  # a 0-d tensor or numpy scalar
        if number is not None:
            out[str(key)] = number
    return out


def _base(module: str, name: str) -> type:
    try:
        imported = __import__(module, fromlist=[name])
        return getattr(imported, name)  # type: ignore[no-any-return]
    except ImportError:
        return object


def huggingface_callback(checkpointer: Checkpointer, *, tag: bool | str | None = None) -> Any:
    """A ``transformers.TrainerCallback`` that checkpoints through ``checkpointer``."""
    base = _base("transformers", "TrainerCallback")

    class CpvTrainerCallback(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.metrics: dict[str, float] = {}

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
            self.metrics = numeric_metrics(metrics)

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.exists():
                extra = {"step": float(state.global_step), **({"epoch": float(state.epoch)} if state.epoch is not None else {})}
                # the Trainer writes every checkpoint to a new folder and never rewrites it: a hard link is a safe, free snapshot
                checkpointer.save(path, metrics={**self.metrics, **extra}, tag=tag, message=f"step {state.global_step}", snapshot="link")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            checkpointer.wait()

    return CpvTrainerCallback()


def lightning_callback(checkpointer: Checkpointer, *, tag: bool | str | None = None) -> Any:
    """A Lightning ``Callback`` that checkpoints through ``checkpointer``."""
    base = _base("lightning.pytorch.callbacks", "Callback")
    if base is object:
        base = _base("pytorch_lightning.callbacks", "Callback")

    class CpvLightningCallback(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.handed: set[tuple[str, int]] = set()

        def _hand_over(self, trainer: Any) -> None:
            saver = getattr(trainer, "checkpoint_callback", None)
            name = (getattr(saver, "last_model_path", "") or getattr(saver, "best_model_path", "")) if saver else ""
            path = Path(name) if name else None
            if path is None or not path.exists():
                return
            key = (str(path), path.stat().st_mtime_ns)
            if key in self.handed:
                return
            self.handed.add(key)
            metrics = {**numeric_metrics(getattr(trainer, "callback_metrics", {})), "epoch": float(trainer.current_epoch)}
            checkpointer.save(path, metrics=metrics, tag=tag, message=f"epoch {trainer.current_epoch}")

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._hand_over(trainer)

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self._hand_over(trainer)
            checkpointer.wait()

    return CpvLightningCallback()
