"""``cpv quickstart``: the whole cycle on the embedded local default."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .config import CPVConfig
from .metrics import format_metrics
from .model_data import ModelsCheckpointsManage
from .progress import human_bytes


def run_quickstart(home: str | None = None, keep: bool = False, echo: Callable[[str], None] = print) -> Path:
    """Create a model, upload three checkpoints with metrics, tag, list,
    download one and revert to one; print each step. Returns the workspace."""
    base = Path(home).expanduser().resolve() if home else Path(tempfile.mkdtemp(prefix="cpv-quickstart-"))
    config = CPVConfig(base)
    try:
        echo(f"1. workspace under {base} (embedded local default: a DVC-format store and a git repository on this disk)")
        mcm = ModelsCheckpointsManage("AI-Demo", "tiny-model", config=config, echo=lambda line: None)
        mcm.import_model_init()
        echo(f"   initialised {mcm.repo_path}")
        versions = []
        for step, loss in enumerate((0.9, 0.5, 0.3), start=1):
            weights = mcm.repo_path / "model.bin"
            weights.write_bytes(os.urandom(64 * 1024) + bytes([step]))
            result = mcm.upload_model_checkpoint(metrics={"loss": loss, "epoch": step}, message=f"epoch {step}")
            version = mcm.tag_model_checkpoint(message=f"checkpoint after epoch {step}")
            versions.append(version)
            echo(f"2.{step} uploaded model.bin ({human_bytes(result.size)}, loss={loss}) and tagged {version}")
        echo(f"3. versions: {', '.join(mcm.read_checkpoint_tag())}")
        artifacts = mcm.download_model_checkpoint(versions[1], output_dir=base / "downloaded")
        size = Path(artifacts.model_path).stat().st_size
        echo(f"4. downloaded {artifacts.tag} to {artifacts.model_path} ({human_bytes(size)}, {format_metrics(artifacts.metrics)})")
        mcm.revert_model_checkpoint(versions[0])
        meta = mcm.get_model_metadata(versions[0])
        echo(f"5. reverted the workspace to {versions[0]} (loss={meta.metrics.get('loss')}); history is kept")
        echo("done: the whole cycle ran with no cloud account")
        return mcm.repo_path
    finally:
        if not keep and not home:
            shutil.rmtree(base, ignore_errors=True)
