"""A seeded synthetic cohort in the real input formats: DCE-MRI DICOM studies and ultrasound RF.

On-disk layout written by :func:`write_cohort`::

    OUT_DIR/
      mri/<PatientID>/<study>/**.dcm        one pre- and ``mri_post_phases`` post-contrast series, hashed file
                                            names (flat, nested or per-series folders, varying per patient)
      mri/<PatientID>/<study>/labels.nii.gz uint8 on the pre-contrast grid: 0 background, 1 non-enhancing FGT,
                                            2 BPE, 255 slice not annotated
      us/<PatientID>.npz                    rf (int16, samples x lines), roi (uint8), fs, f0, pitch, c, bandwidth
      oasbud/OASBUD.mat                     ``loadmat(...)["data"][0]``: struct array id, rf1, rf2, roi1, roi2,
                                            birads, class (two orthogonal scans per mass)
      truth/mri/<PatientID>.json            BPE fraction and category, relative enhancement used, series, ...
      truth/us/<PatientID>.json             contrast (dB), scatterer densities, class, ...
      truth/cohort.json                     the generation parameters and the patient list

The same ``seed`` (and options) always produces byte-identical files: UIDs are derived from the seed, dates
and times are drawn from it, and no writer stores the wall clock.

A patient depends only on ``(seed, index)`` and the options, never on the cohort size: its id is a seeded
bijection of its index, its identity and images come from random streams seeded by ``(seed, index, purpose)``,
and the balanced assignments (BPE and density category, class, rescaling, file layout, echogenicity) are
permutations within fixed blocks of consecutive indices, each seeded by ``(seed, block, purpose)``. Raising
``patients`` from N to N + k therefore adds k patients and leaves the files of the first N byte-identical
(only ``truth/cohort.json`` and ``oasbud/OASBUD.mat`` grow). Likewise every study ranks its slices once, from
a stream of its own: raising ``annotated_fraction`` annotates more slices of the same images, and a slice
annotated before keeps its labels.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import asdict
from math import gcd
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_dir, write_json
from . import mri as mri_mod
from . import us as us_mod
from .writers import write_mat, write_npz

DEFAULTS: dict[str, Any] = {
    "mri_matrix": 128,
    "mri_slices": 16,
    "mri_spacing_mm": None,
    "mri_slice_mm": None,
    "mri_post_phases": 2,
    "us_lines": 128,
    "us_depth_mm": 20.0,
    "annotated_fraction": 0.5,
}
# Echogenicity mix of the ultrasound masses per block of ten patients (anechoic cysts only among benign masses).
# The first four of a block are the four kinds (shuffled), so a cohort of four already has every kind; the other
# six are shuffled among themselves.
US_ECHO_CYCLE = ("hypoechoic", "isoechoic", "anechoic", "hyperechoic",
                 "hypoechoic", "isoechoic", "isoechoic", "isoechoic", "hypoechoic", "hyperechoic")
_ECHO_HEAD = 4
MAX_PATIENTS = 90000  # patient ids BRS-10000 ... BRS-99999

# Purposes of the random streams: per patient ``[seed, index, purpose]`` (1 and 2 are the MRI and ultrasound
# streams), per block ``[seed, block, purpose]``. All distinct and non-zero (a SeedSequence ignores trailing
# zeros, so ``[seed, 0]`` and ``[seed, 0, 0]`` would coincide).
_RNG_MRI, _RNG_US, _RNG_IDENTITY, _RNG_SLICES = 1, 2, 3, 4
_RNG_ID_MAP, _RNG_BPE, _RNG_CLASS, _RNG_RESCALED, _RNG_LAYOUT, _RNG_DENSITY, _RNG_ECHO = 10, 11, 12, 13, 14, 15, 16

_INSTITUTIONS = ("St. Elisabeth Hospital", "University Medical Centre", "Northside Breast Clinic",
                 "Royal Infirmary", "Clinica San Marco")
_REFERRING = ("Keller^Thomas", "Okoye^Grace", "Lindqvist^Per", "Moreno^Ana", "Weber^Klaus")


def _patient_number(seed: int, index: int) -> int:
    """``10000 + (a * index + b) mod 90000`` with ``a`` coprime to 90000 and ``(a, b)`` drawn from the seed:
    distinct indices get distinct numbers, and a number depends on (seed, index) only."""
    rng = np.random.default_rng([seed, 0, _RNG_ID_MAP])
    while True:
        a = int(rng.integers(1, MAX_PATIENTS))
        if gcd(a, MAX_PATIENTS) == 1:
            break
    b = int(rng.integers(0, MAX_PATIENTS))
    return 10000 + (a * index + b) % MAX_PATIENTS


def _identity(seed: int, index: int) -> dict[str, str]:
    rng = np.random.default_rng([seed, index, _RNG_IDENTITY])
    birth_year = int(rng.integers(1945, 1986))
    study_year = int(rng.integers(2016, 2024))
    study_date = f"{study_year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    return {
        "patient_id": f"BRS-{_patient_number(seed, index):05d}",
        "name": f"{rng.choice(mri_mod._SURNAMES)}^{rng.choice(mri_mod._GIVEN)}",
        "birth_date": f"{birth_year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        "age": f"{study_year - birth_year:03d}Y",
        "study_date": study_date,
        "accession": f"A{int(rng.integers(10**6, 10**7))}",
        "study_id": str(int(rng.integers(1000, 9999))),
        "institution": str(rng.choice(_INSTITUTIONS)),
        "referring": str(rng.choice(_REFERRING)),
    }


def _in_block(seed: int, index: int, size: int, purpose: int) -> int:
    """Position of ``index`` in a permutation of ``range(size)`` drawn for its block of ``size`` consecutive
    indices: each value once per block, whatever the cohort size."""
    block, pos = divmod(index, size)
    return int(np.random.default_rng([seed, block, purpose]).permutation(size)[pos])


def _malignant(seed: int, index: int) -> bool:
    return bool(_in_block(seed, index, 2, _RNG_CLASS))  # one benign and one malignant mass per two patients


def _echogenicity(seed: int, index: int) -> str:
    """The echogenicity of ``index`` within its block of ``len(US_ECHO_CYCLE)`` patients (see US_ECHO_CYCLE)."""
    size = len(US_ECHO_CYCLE)
    block, pos = divmod(index, size)
    rng = np.random.default_rng([seed, block, _RNG_ECHO])
    head = [US_ECHO_CYCLE[i] for i in rng.permutation(_ECHO_HEAD)]
    tail = [US_ECHO_CYCLE[_ECHO_HEAD + i] for i in rng.permutation(size - _ECHO_HEAD)]
    echoes = head + tail
    base = block * size
    # cysts are benign: an anechoic mass that fell on a malignant patient swaps with a benign one of the head
    # (a block of ten starts on a class block of two, so the head holds two benign patients)
    for i, e in enumerate(echoes):
        if e == "anechoic" and _malignant(seed, base + i):
            j = next((j for j in range(_ECHO_HEAD) if not _malignant(seed, base + j) and echoes[j] != "anechoic"), None)
            if j is not None:
                echoes[i], echoes[j] = echoes[j], echoes[i]
            else:
                echoes[i] = "hypoechoic"
    return echoes[pos]


def _plan(seed: int, index: int) -> dict[str, Any]:
    """Everything the cohort decides about patient ``index``: a function of (seed, index) only."""
    return {
        "identity": _identity(seed, index),
        # every category once per four patients; the fraction within it is drawn from the patient's own MRI
        # stream, uniformly over the whole category, next to its cut-offs too (mri.draw_bpe_fraction)
        "bpe_category": _in_block(seed, index, 4, _RNG_BPE),
        "density": _in_block(seed, index, 4, _RNG_DENSITY),  # ACR a-d, each once per four
        "malignant": _malignant(seed, index),
        "rescaled": bool(_in_block(seed, index, 2, _RNG_RESCALED)),  # half the studies rescaled
        "layout": mri_mod.LAYOUTS[_in_block(seed, index, len(mri_mod.LAYOUTS), _RNG_LAYOUT)],
        "echogenicity": _echogenicity(seed, index),
    }


def _patient_job(job: dict[str, Any]) -> dict[str, Any]:
    """Generate and write one patient (MRI study + US scans); return what the cohort-level files need."""
    root: Path = job["root"]
    ident = job["identity"]
    pid = ident["patient_id"]
    seed, index = job["seed"], job["index"]
    o = job["options"]

    # MRI
    rng = np.random.default_rng([seed, index, _RNG_MRI])
    phantom = mri_mod.simulate_mri(rng, o["mri_matrix"], o["mri_slices"], o["mri_post_phases"],
                                   bpe_category_target=job["bpe_category"], spacing_mm=o["mri_spacing_mm"],
                                   slice_mm=o["mri_slice_mm"], density_target=job["density"])
    study = f"MR_BREAST_BILAT_{ident['study_date']}"
    study_dir = root / "mri" / pid / study
    study_dir.mkdir(parents=True, exist_ok=True)
    mtruth = mri_mod.write_study(study_dir, phantom, ident, rng, (seed, index, pid),
                                 annotated_fraction=o["annotated_fraction"], rescaled=job["rescaled"],
                                 layout=job["layout"],
                                 slice_rng=np.random.default_rng([seed, index, _RNG_SLICES]),
                                 withheld_dir=job["withheld"] / pid / study if job.get("withheld") else None)
    mtruth.update({"patient_id": pid, "study_folder": study, "labels": f"mri/{pid}/{study}/labels.nii.gz"})
    write_json(root / "truth" / "mri" / f"{pid}.json", mtruth)

    # Ultrasound
    rng = np.random.default_rng([seed, index, _RNG_US])
    probe = us_mod.probe_for(o["us_lines"], o["us_depth_mm"])
    scans = us_mod.simulate_patient(rng, probe, malignant=job["malignant"], echogenicity=job["echogenicity"])
    write_npz(root / "us" / f"{pid}.npz", {
        "rf": scans["rf1"], "roi": scans["roi1"], "fs": np.float64(probe.fs), "f0": np.float64(probe.f0),
        "pitch": np.float64(probe.pitch), "c": np.float64(probe.c), "bandwidth": np.float64(probe.bandwidth),
    })
    utruth = dict(scans["truth"], patient_id=pid, npz=f"us/{pid}.npz", npz_scan=1)
    write_json(root / "truth" / "us" / f"{pid}.json", utruth)
    return {
        "patient_id": pid,
        "dicom_files": mtruth["dicom_files"],
        "bpe_category": mtruth["bpe_category"],
        "us_class": utruth["class"],
        "us_echogenicity": utruth["echogenicity"],
        "oasbud": {"id": pid, "rf1": scans["rf1"], "rf2": scans["rf2"], "roi1": scans["roi1"], "roi2": scans["roi2"],
                   "birads": utruth["birads"], "class": utruth["class"]},
    }


def _write_oasbud(path: Path, records: list[dict[str, Any]]) -> None:
    fields = ["id", "rf1", "rf2", "roi1", "roi2", "birads", "class"]
    data = np.empty((1, len(records)), dtype=[(f, object) for f in fields])
    for n, r in enumerate(records):
        data[0, n] = (r["id"], r["rf1"], r["rf2"], r["roi1"], r["roi2"], r["birads"], np.float64(r["class"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mat(path, {"data": data})


def write_cohort(
    out_dir: str | Path,
    patients: int = 10,
    seed: int = 0,
    *,
    mri_matrix: int = DEFAULTS["mri_matrix"],
    mri_slices: int = DEFAULTS["mri_slices"],
    mri_spacing_mm: float | None = DEFAULTS["mri_spacing_mm"],
    mri_slice_mm: float | None = DEFAULTS["mri_slice_mm"],
    mri_post_phases: int = DEFAULTS["mri_post_phases"],
    us_lines: int = DEFAULTS["us_lines"],
    us_depth_mm: float = DEFAULTS["us_depth_mm"],
    annotated_fraction: float = DEFAULTS["annotated_fraction"],
    progress: bool = True,
    workers: int = 1,
    withheld_labels_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write a synthetic cohort of ``patients`` patients into ``out_dir`` (replacing it) and return a summary.

    Keywords (stable; ``params.yaml``'s ``synth`` block uses the same names):

    * ``mri_matrix`` - in-plane matrix (columns = rows) of every MRI series (default 128).
    * ``mri_slices`` - slices per series (default 16).
    * ``mri_spacing_mm`` - in-plane pixel spacing; the field of view is matrix x spacing and the anatomy
      scales with it (default: a 300-360 mm field of view drawn per study).
    * ``mri_slice_mm`` - slice thickness = spacing; the slab is slices x thickness around the breasts'
      mid-level (default: a 130-160 mm slab drawn per study).
    * ``mri_post_phases`` - post-contrast series per study, at least 2 (default 2).
    * ``us_lines`` - RF scan lines per ultrasound frame, 0.3 mm pitch (default 128; a clinical frame has 510).
    * ``us_depth_mm`` - imaging depth of the RF in millimetres (default 20; clinical 40).
    * ``annotated_fraction`` - share of the MRI slices that carry labels, the rest are 255 (default 0.5).
    * ``progress`` - show a progress bar on stderr.
    * ``workers`` - processes generating patients in parallel (the files do not depend on it).
    * ``withheld_labels_dir`` - a folder outside the cohort that receives every MRI study's labels of all its
      slices (``<dir>/<PatientID>/<study>/labels.nii.gz``): the annotations the cohort withholds, for
      benchmarks of annotation worklists. The cohort's own files do not change.

    The cohort is built in a temporary folder beside ``out_dir`` and moved into place only when complete.
    Same ``seed`` and options, same bytes. See the module docstring for the layout.
    """
    out_dir = Path(out_dir)
    if not 1 <= int(patients) <= MAX_PATIENTS:
        raise InputError(None, f"--patients must be between 1 and {MAX_PATIENTS} (got {patients})")
    if not 0.0 < float(annotated_fraction) <= 1.0:
        raise InputError(None, f"annotated_fraction must be in (0, 1] (got {annotated_fraction})")
    if int(mri_post_phases) < 2:
        raise InputError(None, f"mri_post_phases must be at least 2 (got {mri_post_phases})")
    if int(mri_matrix) < 16 or int(mri_slices) < 2:
        raise InputError(None, f"MRI grid too small: {mri_matrix}x{mri_matrix}x{mri_slices}")
    if int(us_lines) < 16 or not float(us_depth_mm) >= 5.0:
        raise InputError(None, f"ultrasound frame too small: {us_lines} lines x {us_depth_mm} mm")
    for name, value in (("mri_spacing_mm", mri_spacing_mm), ("mri_slice_mm", mri_slice_mm)):
        if value is not None and not float(value) > 0:
            raise InputError(None, f"{name} must be positive (got {value})")
    options = {"mri_matrix": int(mri_matrix), "mri_slices": int(mri_slices), "mri_post_phases": int(mri_post_phases),
               "mri_spacing_mm": None if mri_spacing_mm is None else float(mri_spacing_mm),
               "mri_slice_mm": None if mri_slice_mm is None else float(mri_slice_mm),
               "us_lines": int(us_lines), "us_depth_mm": float(us_depth_mm), "annotated_fraction": float(annotated_fraction)}
    n, seed = int(patients), int(seed)

    from tqdm import tqdm

    results: list[dict[str, Any]] = []
    with atomic_dir(out_dir) as root:
        withheld = Path(withheld_labels_dir).resolve() if withheld_labels_dir else None
        if withheld is not None and (withheld == out_dir.resolve() or out_dir.resolve() in withheld.parents):
            raise InputError(withheld, "withheld labels must live outside the cohort folder")
        jobs = [{"root": root, "seed": seed, "index": i, "options": options, "withheld": withheld, **_plan(seed, i)}
                for i in range(n)]
        bar = tqdm(total=n, desc="synth", unit="patient", file=sys.stderr, disable=not progress)
        try:
            if int(workers) > 1:
                with ProcessPoolExecutor(max_workers=int(workers)) as pool:
                    for r in pool.map(_patient_job, jobs):
                        results.append(r)
                        bar.update(1)
            else:
                for job in jobs:
                    results.append(_patient_job(job))
                    bar.update(1)
        finally:
            bar.close()
        _write_oasbud(root / "oasbud" / "OASBUD.mat", [r.pop("oasbud") for r in results])
        write_json(root / "truth" / "cohort.json", {
            "seed": seed, "patients": [r["patient_id"] for r in results], "options": options,
            "us_probe": asdict(us_mod.probe_for(us_lines, us_depth_mm)),
        })

    return {
        "out_dir": str(out_dir),
        "patients": n,
        "seed": seed,
        "dicom_files": int(sum(r["dicom_files"] for r in results)),
        "bpe_categories": {mri_mod.BPE_CATEGORY_NAMES[k]: v for k, v in sorted(Counter(r["bpe_category"] for r in results).items())},
        "us_classes": {("malignant" if k else "benign"): v for k, v in sorted(Counter(r["us_class"] for r in results).items())},
        "us_echogenicity": dict(sorted(Counter(r["us_echogenicity"] for r in results).items())),
        **options,
    }
