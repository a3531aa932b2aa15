"""Several teams, same model names, no collisions; a second team member joins.

CPV_HOME=/tmp/cpv-demo python examples/multi_team_management.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cpv_core import ModelsCheckpointsManage

TEAMS = {"AI-Convo": ["whisper", "tts"], "AI-Vision": ["whisper", "yolo"]}


def main() -> dict[str, dict[str, list[str]]]:
    summary: dict[str, dict[str, list[str]]] = {}
    for team, models in TEAMS.items():
        for model in models:
            mcm = ModelsCheckpointsManage(team, model)
            mcm.import_model_init()
            (mcm.repo_path / "model.bin").write_bytes(os.urandom(64 * 1024))
            mcm.upload_model_checkpoint(metrics={"team_score": len(team) + len(model)})
            mcm.tag_model_checkpoint()
            summary.setdefault(team, {})[model] = mcm.read_checkpoint_tag()

    # a second member of AI-Vision clones the model and publishes v0.2
    colleague = ModelsCheckpointsManage("AI-Vision", "whisper", repo_path=Path(tempfile.mkdtemp()) / "colleague")
    colleague.import_model_init()
    (colleague.repo_path / "model.bin").write_bytes(os.urandom(64 * 1024))
    colleague.upload_model_checkpoint(metrics={"team_score": 99}, message="fine-tuned")
    colleague.tag_model_checkpoint()
    summary["AI-Vision"]["whisper"] = ModelsCheckpointsManage("AI-Vision", "whisper").read_checkpoint_tag()
    for team, models in summary.items():
        for model, versions in models.items():
            print(f"{team}/{model}: {', '.join(versions)}")
    return summary


if __name__ == "__main__":
    main()
