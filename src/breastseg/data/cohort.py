"""Raw cohort discovery: which patients exist, and the pseudonym each one is processed under.

Layout: ``<root>/mri/<patient folder>/`` (one folder per patient, studies inside) and
``<root>/us/<patient>.npz`` (one RF file per patient). The folder or file name is whatever the export
gave (often identifying); it is only ever used as input to the keyed hash.
"""
from __future__ import annotations

from pathlib import Path

from ..pseudonym import load_key, pseudonym

US_SUFFIXES = (".npz",)


def raw_patients(root: str | Path, dataset: str, key_file: str | Path | None = None) -> dict[str, Path]:
    """Map pseudonym -> raw patient folder (MRI) or file (US), sorted by pseudonym."""
    base = Path(root) / dataset
    if not base.is_dir():
        return {}
    if dataset == "mri":
        entries = [p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
    elif dataset == "us":
        entries = [p for p in base.iterdir() if p.is_file() and p.suffix in US_SUFFIXES and not p.name.startswith(".")]
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    key = load_key(key_file)
    out: dict[str, Path] = {}
    for p in entries:
        name = p.name if p.is_dir() else p.stem
        pid = pseudonym(name, key)
        if pid in out:  # pragma: no cover - 48-bit collision
            raise RuntimeError(f"pseudonym collision for {p} and {out[pid]}")
        out[pid] = p
    return dict(sorted(out.items()))


def raw_files(path: Path) -> list[str]:
    """Every file of a raw patient (for Snakemake inputs): a folder's files, or the file itself."""
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*") if p.is_file())
    return [str(path)]
