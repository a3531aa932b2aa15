"""``cpv quickstart``: the whole cycle on the embedded local default."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cpv_core.api.model_data import ModelsCheckpointsManage
from cpv_core.domain.metrics import format_metrics
from cpv_core.plugin.config import CPVConfig
from cpv_core.plugin.progress import human_bytes

#: what the quickstart does, in order (its --dry-run prints these)
QUICKSTART_STEPS = (
    "create the model AI-Demo/tiny-model on the embedded local default",
    "upload three checkpoints with metrics and tag each (v0.1, v0.2, v0.3)",
    "list the versions",
    "download v0.2 outside the workspace, verified",
    "revert the workspace to v0.1 (a new commit; history is kept)",
)
#: where to go from here (printed last)
NEXT_COMMANDS = (
    "cpv init model -t YOUR-TEAM -m YOUR-MODEL          # your own model's workspace",
    "cpv model upload /path/to/weights --metrics loss=0.2  # then: cpv model tag",
    "cpv setup                                          # S3 and a git host, by answering questions",
)


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
        echo("done: the whole cycle ran with no cloud account; next:")
        for line in NEXT_COMMANDS:
            echo(f"  {line}")
        return mcm.repo_path
    finally:
        if not keep and not home:
            shutil.rmtree(base, ignore_errors=True)
