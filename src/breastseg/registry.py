"""Champion gate: promote the challenger only if it is at least as good on the same test patients."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from . import tracking
from .io import write_json

log = logging.getLogger(__name__)


def decide(challenger: float | None, champion: float | None, margin: float) -> bool:
    """Promote when there is no champion, or challenger >= champion + margin (higher is better)."""
    if challenger is None:
        return False
    if champion is None:
        return True
    return challenger >= champion + margin


def promote_if_better(params: dict[str, Any], name: str, *, model_json: Path, metrics_json: Path, split_file: Path,
                      processed_dir: Path, decision_json: Path) -> dict[str, Any]:
    """Compare challenger and champion on this split's test patients; move alias ``champion`` if warranted."""
    import mlflow

    from .evaluation.evaluate import evaluate_model

    cfg = params["register"]
    metric = cfg.get("metric", "dice_mean")
    margin = float(cfg.get("margin", 0.0))
    model = json.loads(model_json.read_text())
    metrics = json.loads(metrics_json.read_text())
    tracking.configure(params)
    client = mlflow.MlflowClient()
    registered = model["model_name"]
    try:
        champion = client.get_model_version_by_alias(registered, "champion")
    except mlflow.exceptions.MlflowException:
        champion = None
    challenger_score = metrics.get(metric)
    champion_score = None
    champion_version = str(champion.version) if champion else None
    if champion is not None and str(champion.version) == str(model["version"]):
        champion_score = challenger_score  # already champion (a rerun of this rule)
    elif champion is not None:
        # Re-evaluate the champion on exactly the challenger's test patients (the test set may have grown).
        _, _, summary, _, _ = evaluate_model(params, name, f"models:/{registered}/{champion.version}", split_file,
                                          processed_dir)
        champion_score = summary.get(metric)
    promote = decide(challenger_score, champion_score, margin) and champion_version != model["version"]
    if promote:
        client.set_registered_model_alias(registered, "champion", model["version"])
    decision = {
        "experiment": name, "model_name": registered, "metric": metric, "margin": margin,
        "challenger": {"version": model["version"], "score": challenger_score},
        "champion_before": {"version": champion_version, "score": champion_score},
        "promoted": promote,
        "champion_after": model["version"] if promote else champion_version,
        "test_patients": metrics.get("test_patients", []),
    }
    for key, value in [("breastseg.gate.promoted", str(promote)), ("breastseg.gate.challenger_score", str(challenger_score)),
                       ("breastseg.gate.champion_score", str(champion_score)),
                       ("breastseg.gate.champion_version", str(champion_version))]:
        client.set_model_version_tag(registered, model["version"], key, value)
    write_json(decision_json, decision)
    log.info("%s: challenger v%s %s (%.3f vs champion %s)", name, model["version"],
             "promoted to champion" if promote else "not promoted", challenger_score or float("nan"), champion_score)
    return decision
