"""The project's layout: where each stage reads and writes, relative to the project folder, and the names models
are registered under. The workflow's rules and the CLI's defaults both take their paths from :data:`PATHS`.

Methods take an experiment or dataset name, or a Snakemake wildcard such as ``"{experiment}"``, and return the
path as a POSIX string.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Registered models are named ``breastseg-<experiment>`` (``models:/breastseg-bpe_mri@champion``).
MODEL_PREFIX = "breastseg-"


def model_name(experiment: str) -> str:
    """The name an experiment's models are registered under in MLflow."""
    return f"{MODEL_PREFIX}{experiment}"


@dataclass(frozen=True)
class Layout:
    """Where things are, below ``root`` (the project folder)."""

    root: str = "."

    def _at(self, *parts: str) -> str:
        return "/".join(parts) if self.root in ("", ".") else "/".join((self.root.rstrip("/"), *parts))

    # data
    def interim(self, dataset: str = "") -> str:
        """The conversion cache of a dataset (``data/interim/<dataset>``); without one, the folder of all."""
        return self._at("data", "interim", dataset) if dataset else self._at("data", "interim")

    def processed(self, experiment: str = "", *inside: str) -> str:
        """An experiment's prepared slices (``data/processed/<experiment>``, or a file ``inside`` it); without an
        experiment, the folder of all."""
        return self._at("data", "processed", experiment, *inside) if experiment else self._at("data", "processed")

    def manifest(self, experiment: str) -> str:
        return self._at("data", "processed", experiment, "manifest.csv")

    def splits(self) -> str:
        """The split ledgers and the experiments' split files."""
        return self._at("data", "splits")

    def split(self, experiment: str) -> str:
        return self._at("data", "splits", f"{experiment}.json")

    # models and results
    def models(self, experiment: str, *inside: str) -> str:
        return self._at("models", experiment, *inside)

    def model(self, experiment: str) -> str:
        """``model.json``: what training registered (the workflow's handle on the model)."""
        return self._at("models", experiment, "model.json")

    def results(self, experiment: str = "", *inside: str) -> str:
        return self._at("results", experiment, *inside) if experiment else self._at("results")

    def comparisons(self) -> str:
        return self._at("results", "comparisons")

    def metrics(self, experiment: str) -> str:
        """The DVC metrics file of an experiment: its headline figures."""
        return self._at("metrics", f"{experiment}.json")

    def plots(self, experiment: str) -> str:
        return self._at("plots", experiment)

    def worklist(self, experiment: str) -> str:
        return self._at("results", experiment, "worklist.csv")


def interim_beside(processed: str | Path, dataset: str) -> Path:
    """The conversion cache beside an experiment's prepared slices: ``<x>/processed/<experiment>`` ->
    ``<x>/interim/<dataset>`` (as :class:`Layout` places them)."""
    return Path(processed).parent.parent / "interim" / dataset


#: The layout of a project run from its own folder.
PATHS = Layout()
