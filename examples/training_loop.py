"""A training-style loop that checkpoints with cpv without waiting for uploads.

Each epoch writes its checkpoint over the last one (as training scripts do);
the Checkpointer snapshots it, uploads it in the background and tags the
epochs whose validation loss improved. Runs on the embedded local default:

    CPV_HOME=/tmp/cpv-demo python examples/training_loop.py
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

from cpv_core import Checkpointer, ModelsCheckpointsManage


def train_one_epoch(epoch: int) -> dict[str, float]:
    """Stand-in for real training: a loss that improves, with one bad epoch."""
    time.sleep(0.2)
    loss = 1.0 / (epoch + 1) + (0.3 if epoch == 3 else 0.0)
    return {"loss": round(loss, 4), "lr": 1e-3 * math.pow(0.9, epoch)}


def main() -> None:
    team, model = "AI-Speech", "tiny-asr"
    run_dir = Path(tempfile.mkdtemp(prefix="run-"))
    checkpoint = run_dir / "ckpt.pt"
    with Checkpointer(team, model, keep_best="loss", tag="auto") as ck:
        for epoch in range(6):
            metrics = train_one_epoch(epoch)
            checkpoint.write_bytes(os.urandom(256 * 1024))  # torch.save(model.state_dict(), checkpoint)
            ck.save(checkpoint, metrics=metrics, message=f"epoch {epoch}")
            print(f"epoch {epoch}: loss={metrics['loss']} saved (upload in the background)")
    print(f"uploaded {ck.uploaded} checkpoint(s) ({ck.superseded} replaced by a newer one first), tagged {', '.join(ck.versions)}")
    best = ModelsCheckpointsManage(team, model).get_model_metadata("best:loss")
    print(f"best: {best.version} loss={best.metrics['loss']}")


if __name__ == "__main__":
    main()
