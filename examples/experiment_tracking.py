"""Experiment tracking: one version per run, pick the best by a metric,
compare two versions, and record which data each model was trained on.

    CPV_HOME=/tmp/cpv-demo python examples/experiment_tracking.py
"""

from __future__ import annotations

import os

from cpv_core import CombinedCheckpointsManage, DataCheckpointsManage, ModelsCheckpointsManage


def main() -> dict[str, object]:
    team, model = "AI-NLP", "bert-large"
    mcm = ModelsCheckpointsManage(team, model)
    mcm.import_model_init()
    data_dir = mcm.repo_path / "data"
    for split, rows in (("train", 80), ("validation", 10), ("test", 10)):
        (data_dir / split).mkdir(parents=True, exist_ok=True)
        (data_dir / split / "rows.jsonl").write_text("".join(f'{{"id": {i}}}\n' for i in range(rows)))
    DataCheckpointsManage(team, model).upload_data_checkpoint(message="dataset v1")

    combined = CombinedCheckpointsManage(team, model)
    for lr, wer in ((1e-3, 0.091), (3e-4, 0.072), (1e-4, 0.080)):
        (mcm.repo_path / "model.bin").write_bytes(os.urandom(128 * 1024))
        mcm.upload_model_checkpoint(metrics={"lr": lr, "wer": wer}, message=f"lr={lr}")
        model_v, data_v = combined.tag_model_and_data(model_message=f"run lr={lr}")
        print(f"run lr={lr}: model {model_v} trained on data {data_v}, wer={wer}")

    runs = mcm.list_checkpoints()
    best = min(runs, key=lambda meta: meta.metrics["wer"])
    print(f"best: {best.version} wer={best.metrics['wer']} lr={best.metrics['lr']}")
    diff = mcm.diff(runs[0].version, best.version)
    print(f"wer {runs[0].version} -> {best.version}: {diff['metrics']['wer']['delta']:+.3f}")
    trained_on = combined.models_trained_on("v0.1")
    print("models trained on data v0.1:", ", ".join(trained_on))
    return {"best": best.version, "trained_on": trained_on, "delta": diff["metrics"]["wer"]["delta"]}


if __name__ == "__main__":
    main()
