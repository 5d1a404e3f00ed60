"""MLflow and Optuna stores: lazy configuration, experiments, lineage tags, registry aliases."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from .config import Experiment, Settings, TrackingSettings, TrainSettings, params_hash
from .paths import MODEL_PREFIX, PATHS, model_name  # noqa: F401 - the names models are registered under
#: MLflow 3's UI opens an experiment by its kind: a model-training experiment opens on its runs (without the tag it
#: opens the GenAI view: traces, token usage).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def configure(stores: TrackingSettings) -> str:
    """Point MLflow at the configured store; returns the URI in force."""
    import os

    import mlflow

    uri = stores.mlflow_uri  # $MLFLOW_TRACKING_URI wins over params (TrackingSettings.from_params)
    user_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; keep the environment as the user left it, so that the
    # variable keeps meaning "the user's choice" for later calls in this process.
    if user_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_env
    return uri


def experiment_id(stores: TrackingSettings, name: str) -> str:
    """The MLflow experiment for one task, created with artifacts under ``tracking.artifact_root``."""
    import mlflow

    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        for key, value in EXPERIMENT_TAGS.items():  # experiments created before the kind was set
            if found.tags.get(key) != value:
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    root = stores.artifact_root
    if "://" in root:
        location = root
    elif stores.mlflow_uri.startswith(("http://", "https://")):
        location = None  # a tracking server stores artifacts in its own store (--artifacts-destination)
    else:
        location = Path(root).resolve().joinpath(name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location,
                                        tags={"breastseg.experiment": name, **EXPERIMENT_TAGS})
    except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel job
        return client.get_experiment_by_name(name).experiment_id


def optuna_storage(stores: TrackingSettings, **rdb_options: Any) -> Any:
    """The Optuna storage that ``tracking.optuna_storage`` names.

    A database URL (``sqlite:///optuna.db``, ``postgresql://user:password@host:5432/db``, ``mysql://...``) gives an
    RDBStorage with ``rdb_options`` (heartbeats); ``journal:///shared/path/optuna.log`` gives a JournalStorage on a
    file, for workers that share a filesystem but no database server.
    """
    import optuna

    url = stores.optuna_storage
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = url[len("journal:"):]
            path = path[2:] if path.startswith("//") else path
            if not path:
                raise ValueError("no file path after 'journal:'")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(path))
        return optuna.storages.RDBStorage(url, **rdb_options)
    except Exception as exc:  # unreachable server, missing driver, malformed URL: one line, not a traceback
        from .errors import InputError

        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError("params.yaml", f"tracking.optuna_storage '{_redact(url)}': {reason}") from None


def _redact(url: str) -> str:
    """A storage URL without its password, for messages."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def init_stores(s: Settings) -> None:
    """Create the MLflow database (schema migrations), one experiment per task, and the Optuna schema (the
    workflow's ``tracking-init``: the stores and the experiments' names are what it reads)."""
    stores = s.tracking
    configure(stores)
    for name in s.experiments:
        experiment_id(stores, name)
    optuna_storage(stores)


def git_commit() -> str:
    """HEAD's commit, with ``-dirty`` when the working tree has changes; ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_hash(paths: list[Path]) -> str:
    """SHA-256 over the names and bytes of ``paths`` (sorted): the hash of an input data set."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def lineage_tags(cohort: str, exp: Experiment, split_file: Path, data_files: list[Path]) -> dict[str, str]:
    """Tags that say which code, data, split and params made a run."""
    return {
        "breastseg.experiment": exp.name,
        "breastseg.git_commit": git_commit(),
        "breastseg.data_hash": file_hash(data_files),
        "breastseg.split_hash": file_hash([split_file]),
        "breastseg.params_hash": params_hash(exp.as_dict()),
        "breastseg.cohort": cohort,
    }


def run_params(exp: Experiment, hp: TrainSettings, metric: str) -> dict[str, Any]:
    """The parameters of a training run, one name per setting (its path in params.yaml: ``train.lr``,
    ``model.features``, ``image_size``, ``register.metric``...) and the value actually used (``train``: the
    experiment's block under the study's best values), named alike in Optuna trials and final trainings so that
    both compare column by column."""
    return flat_params({"model": exp.model.as_dict(), "channels": list(exp.channels), "image_size": exp.image_size,
                        "preprocess": exp.preprocess.as_dict(), "inference": exp.inference.as_dict(),
                        "train": hp.as_dict(), "register": {"metric": metric}})


def split_input(cohort: str, exp: Experiment, split_file: Path) -> tuple[Any, dict[str, str]]:
    """The split a run trained or was evaluated on, as an MLflow dataset (the runs table's Dataset column): one row
    per pseudonymised patient with its subset; named ``<cohort>-<dataset>``, its digest the hash of those patients
    and subsets (one digest for the experiments of a dataset, which share their patients). Returns the dataset and
    its input tags (data version, split file hash, patients hash, subset sizes)."""
    import json

    import mlflow.data
    import pandas as pd

    split = json.loads(Path(split_file).read_text())
    rows = [{"patient": pid, "subset": v["subset"]} for pid, v in sorted(split["patients"].items())]
    df = pd.DataFrame(rows, columns=["patient", "subset"])
    # one digest for one set of patients and subsets: the experiments of a dataset share it
    digest = hashlib.sha256("\n".join(f"{r['patient']}:{r['subset']}" for r in rows).encode()).hexdigest()[:16]
    name = f"{cohort}-{exp.dataset}"
    dataset = mlflow.data.from_pandas(df, source=f"{PATHS.splits()}/{Path(split_file).name}", name=name, digest=digest)
    counts = df["subset"].value_counts().to_dict() if len(df) else {}
    tags = {"data_version": str((split.get("data_versions") or ["unknown"])[-1]),
            "split_hash": file_hash([Path(split_file)]), "patients_hash": digest,
            **{f"n_{subset}": str(int(counts.get(subset, 0))) for subset in ("train", "val", "test")}}
    return dataset, tags


def log_split(run_id: str, dataset: Any, tags: dict[str, str], context: str) -> None:
    """Log ``dataset`` (:func:`split_input`) as an input of run ``run_id``. Parallel jobs (tune workers, seeds) log
    the same dataset at once, and the store inserts it on first use: a job that loses that race finds it stored
    and tries again."""
    import time

    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    entity = DatasetInput(dataset._to_mlflow_entity(),
                          tags=[InputTag("mlflow.data.context", context), *(InputTag(k, v) for k, v in tags.items())])
    for attempt in range(5):
        try:
            mlflow.MlflowClient().log_inputs(run_id, datasets=[entity])
            return
        except mlflow.exceptions.MlflowException:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def flat_params(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": value} for mlflow.log_params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = v if not isinstance(v, list) else ",".join(map(str, v))
    return out
