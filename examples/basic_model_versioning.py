"""Basic model versioning: init, upload with metrics, tag, list, download, revert.

Runs on the embedded local default (no cloud account). Set CPV_HOME to keep
its files somewhere else than ~/.cpv:

    CPV_HOME=/tmp/cpv-demo python examples/basic_model_versioning.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cpv_core import ModelsCheckpointsManage


def train_one_epoch(path: Path, epoch: int) -> dict[str, float]:
    """Stand-in for training: writes weights, returns metrics."""
    path.write_bytes(os.urandom(256 * 1024) + epoch.to_bytes(4, "little"))
    return {"loss": round(1.0 / (epoch + 1), 4), "accuracy": round(0.5 + epoch * 0.1, 2), "epoch": epoch}


def main() -> list[str]:
    mcm = ModelsCheckpointsManage("AI-Convo", "faster-whisper")
    mcm.import_model_init()
    for epoch in range(3):
        metrics = train_one_epoch(mcm.repo_path / "model.bin", epoch)
        mcm.upload_model_checkpoint(metrics=metrics, message=f"epoch {epoch}")
        print("tagged", mcm.tag_model_checkpoint(message=f"after epoch {epoch}"))
    versions = mcm.read_checkpoint_tag()
    print("versions:", versions)
    out = Path(tempfile.mkdtemp(prefix="cpv-download-"))
    artifacts = mcm.download_model_checkpoint(tag=versions[0], output_dir=out)
    print(f"downloaded {artifacts.tag}: {artifacts.model_path} ({artifacts.size_mb} MiB) metrics={artifacts.metrics}")
    mcm.revert_model_checkpoint(tag=versions[0])
    print("reverted workspace to", versions[0], "->", mcm.get_model_metadata(versions[0]).metrics)
    return versions


if __name__ == "__main__":
    main()
