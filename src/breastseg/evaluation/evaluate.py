"""Evaluation on the test patients: per-slice and per-patient Dice, metrics JSON, per-case CSV, figures."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .. import tracking
from ..config import experiment
from ..errors import InputError
from ..io import atomic_path, write_json
from .metrics import dice_per_class

log = logging.getLogger(__name__)


def load_model(model_uri: str):
    import mlflow

    return mlflow.pytorch.load_model(model_uri, map_location="cpu").eval()


def predict_slices(model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Argmax segmentation of (N, C, H, W) slices."""
    import torch

    preds = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
            preds.append(model(x).argmax(1).numpy().astype(np.uint8))
    return np.concatenate(preds) if preds else np.zeros((0,) + images.shape[2:], np.uint8)


def score(exp: dict[str, Any], data: dict[str, np.ndarray], pred: np.ndarray) -> tuple[list[dict], dict[str, Any]]:
    """Per-slice rows and the summary (per-patient mean Dice, then mean over patients and classes)."""
    names = exp["class_names"]
    rows = []
    for i in range(len(pred)):
        d = dice_per_class(pred[i], data["label"][i], exp["classes"])
        rows.append({"patient": str(data["patient"][i]), "case": str(data["case"][i]), "slice": int(data["index"][i]),
                     **{f"dice_{names[c]}": d[c - 1] for c in range(1, exp["classes"])}})
    per_patient: dict[str, list[np.ndarray]] = {}
    for r in rows:
        per_patient.setdefault(r["patient"], []).append(np.array([r[f"dice_{n}"] for n in names[1:]], dtype=float))
    patient_means = np.array([np.nanmean(np.stack(v), axis=0) for v in per_patient.values()]) if per_patient else \
        np.zeros((0, exp["classes"] - 1))
    by_class = {names[c]: _mean(patient_means[:, c - 1]) for c in range(1, exp["classes"])}
    summary = {
        "dice_mean": _mean([v for v in by_class.values() if v is not None]),
        "dice": by_class,
        "n_patients": len(per_patient),
        "n_slices": len(rows),
        "test_patients": sorted(per_patient),
    }
    return rows, summary


def _mean(values) -> float | None:
    """Mean over finite values; None (JSON null) when there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def evaluate_model(params: dict[str, Any], name: str, model_uri: str, split_file: Path, processed_dir: Path
                   ) -> tuple[list[dict], dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """Score ``model_uri`` on the test patients of ``split_file``."""
    from ..data.datamodule import load_subset

    exp = experiment(params, name)
    data = load_subset(processed_dir, split_file, "test")
    if not data:
        raise InputError(split_file, "no test patients")
    pred = predict_slices(load_model(model_uri), data["image"])
    rows, summary = score(exp, data, pred)
    return rows, summary, data, pred


def overlay_figure(data: dict[str, np.ndarray], pred: np.ndarray, rows: list[dict], out: Path, title: str) -> None:
    """Worst, median and best test slices: image, truth, prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in rows[0] if k.startswith("dice_")]
    mean = np.array([np.nanmean([row[k] for k in keys]) if not np.all(np.isnan([row[k] for k in keys])) else np.nan
                     for row in rows])
    order = np.argsort(np.nan_to_num(mean, nan=-1))
    picks = [("worst", order[0]), ("median", order[len(order) // 2]), ("best", order[-1])]
    fig, axes = plt.subplots(3, 3, figsize=(7.5, 7.5))
    for r, (label, i) in enumerate(picks):
        img = data["image"][i, -1]
        truth = np.ma.masked_where(data["label"][i] == 255, data["label"][i])
        for c, (panel, overlay) in enumerate([("image", None), ("truth", truth), ("prediction", pred[i])]):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray")
            if overlay is not None:
                ax.imshow(np.ma.masked_equal(overlay, 0), cmap="autumn", alpha=0.5, vmin=0, vmax=max(2, int(pred.max())))
            ax.set_title(f"{label} {panel}" + (f" (Dice {mean[i]:.2f})" if c == 2 else ""), fontsize=8)
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def evaluate_experiment(params: dict[str, Any], name: str, *, model_json: Path, split_file: Path, processed_dir: Path,
                        metrics_json: Path, out_dir: Path) -> dict[str, Any]:
    """Evaluate the challenger written by ``train``; log the evaluation as its own MLflow run."""
    import mlflow

    model = json.loads(model_json.read_text())
    rows, summary, data, pred = evaluate_model(params, name, model["model_uri"], split_file, processed_dir)
    summary.update({"experiment": name, "model_version": model["version"], "model_uri": model["model_uri"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    per_case = out_dir / "per_case.csv"
    with atomic_path(per_case) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    figure = out_dir / "overlays.png"
    overlay_figure(data, pred, rows, figure, f"{name}: test slices (model v{model['version']})")
    tracking.configure(params)
    exp_id = tracking.experiment_id(params, name)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"evaluate-v{model['version']}",
                          tags={"breastseg.stage": "evaluate", "breastseg.experiment": name,
                                "breastseg.model_version": model["version"], "breastseg.train_run": model["run_id"]}):
        mlflow.log_metrics({k: v for k, v in {"test_dice_mean": summary["dice_mean"],
                            **{f"test_dice_{c}": d for c, d in summary["dice"].items()}}.items() if v is not None})
        mlflow.log_artifact(str(per_case))
        mlflow.log_artifact(str(figure))
    write_json(metrics_json, summary)
    log.info("%s: test Dice %.3f on %d patients", name, summary["dice_mean"], summary["n_patients"])
    return summary
