"""``breastseg predict``: a registered model applied to new studies or scans.

One output folder per input (a DCE study, an ultrasound scan), written atomically::

    <out>/labels.nii.gz   uint8 labels in the source grid (MRI: pre-contrast series, its affine; US: the input
                          image or RF grid, i = column, j = row, spacing in mm)
    <out>/seg.dcm         DICOM SEG referencing the source images (DICOM inputs only)
    <out>/overlay.png     the prediction over the image
    <out>/readout.json    the read-out, the model (URI, registered name, version, run) and its data lineage

INPUT is one DCE study folder (MRI models), one ultrasound file (.npz/.mat RF, DICOM US, B-mode .png), or a
folder holding many of them: then ``<out>`` is ``OUT_DIR/<input's path below INPUT>`` per input and
``OUT_DIR/predictions.json`` lists them. Outputs carry no patient names or identifiers (the SEG, by the
standard, carries the study's patient module; see :mod:`.dicom_seg`).
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..errors import InputError
from ..io import atomic_dir, write_json
from .model import CONFIG_NAME, LoadedModel, bundle_of, load_bundle, read_config, resolved_model

log = logging.getLogger(__name__)

@dataclass
class Unit:
    """One thing to segment: where its outputs go and how to run it."""

    name: str
    run: Callable[[LoadedModel, Path], dict[str, Any]]


def _model_record(model: LoadedModel) -> dict[str, Any]:
    exp = model.experiment
    return {
        "uri": model.source.get("uri"),
        "registered_model": model.source.get("registered_model"),
        "version": model.source.get("version"),
        "alias": model.source.get("alias"),
        "run_id": model.source.get("run_id") or model.config.get("run_id"),
        "experiment": exp.name,
        "architecture": exp.model.as_dict(),
    }


def _range_warnings(model: LoadedModel, where: Any, values: dict[str, list[float]]) -> list[dict[str, Any]]:
    """The input's values outside the model's training ranges, each also written to stderr in one line."""
    from ..data.ranges import out_of_range

    found = out_of_range(model.config.get("training_ranges"), values)
    for w in found:
        print(f"breastseg: warning: {where}: {w['message']}", file=sys.stderr, flush=True)
    return found


def _record(model: LoadedModel, input_info: dict[str, Any], readout: dict[str, Any], outputs: dict[str, Any],
            seconds: float, warnings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    exp = model.experiment
    return {
        "breastseg_version": __version__,
        "task": exp.name,
        "dataset": exp.dataset,
        "labels": dict(enumerate(exp.class_names)),
        "model": _model_record(model),
        "lineage": model.config.get("lineage", {}),
        "preprocessing": {"channels": list(exp.channels), "image_size": exp.image_size,
                          **exp.preprocess.as_dict(),
                          **({"us_maps": model.config.get("us_maps")} if exp.dataset == "us" else {})},
        "inference": model.config["inference"],
        "input": input_info,
        "readout": readout,
        "outputs": outputs,
        # inputs unlike the training data (geometry outside the model's training ranges): see data.ranges
        "warnings": list(warnings or []),
        "seconds": round(seconds, 3),
    }


# ------------------------------------------------------------------------------------------ MRI


def _write_mri_images(folder: Path, labels: np.ndarray, affine: np.ndarray, pre: np.ndarray, voxel: np.ndarray
                      ) -> None:
    from ..dicom.nifti import write_nifti
    from .readout import mri_overlay

    write_nifti(folder / "labels.nii.gz", labels, affine)
    mri_overlay(pre, labels, voxel[:2]).save(folder / "overlay.png", compress_level=1)


def predict_mri_study(model: LoadedModel, key: str, members: list[Any], root: Path, out: Path,
                      *, write_seg: bool = True) -> dict[str, Any]:
    """Segment one DCE study; write its outputs to ``out`` (atomically); return the read-out record."""
    from ..data.slices import study_scale
    from ..data.ranges import mri_intensity, mri_values
    from ..mri.bpe_degree import degree_readout, first_post_subtraction
    from .dicom_seg import mri_seg, save_seg
    from ..models.segment import segment
    from .preprocess import load_mri_study, mri_in_plane, mri_labels_to_grid, mri_network_input
    from .readout import mri_readout

    t0 = time.perf_counter()
    exp = model.experiment
    study = load_mri_study(key, members, root, exp)
    scale = study_scale(study.volumes["pre"])  # normalises the channels; compared with the training studies'
    warnings = _range_warnings(model, root, {**mri_values(study.pre.spacing),
                                             **mri_intensity(scale, study.volumes.get("sub"))})
    n = study.pre.shape[2]  # evaluation's path: test-time mirroring, post-processing, back to the native grid
    seg = segment(model, mri_network_input(exp, study, scale), [study.pre.shape[:2]] * n, [mri_in_plane(study)] * n)
    labels = mri_labels_to_grid(seg.native, study.pre.shape)
    affine = study.pre.affine
    voxel = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    readout = mri_readout(labels, voxel, model.config["bpe_cutoffs"])
    post_sub = first_post_subtraction(study, members, root)
    outputs: dict[str, Any] = {"labels": "labels.nii.gz", "overlay": "overlay.png", "dicom_seg": None}
    info = {"kind": "dicom-dce-study", "study": key, "phases": study.phases, "phase_timing": study.timing,
            "shape": list(study.pre.shape), "voxel_mm": [round(float(v), 6) for v in voxel]}
    seg_note = None
    with atomic_dir(out) as tmp:
        _write_mri_images(tmp, labels, affine, study.volumes["pre"], voxel)
        if write_seg:
            try:
                seg = mri_seg(study.pre, labels, exp.name, model.source.get("version"))
                outputs["dicom_seg"] = "seg.dcm"
            except Exception as err:  # noqa: BLE001 - a SEG the sources do not allow must not cost the other outputs
                seg_note = err.reason if isinstance(err, InputError) else f"{type(err).__name__}: {err}".splitlines()[0]
                log.warning("%s: no DICOM SEG written: %s", root, seg_note)
            else:
                save_seg(seg, tmp / "seg.dcm")
        if seg_note:
            outputs["dicom_seg_note"] = seg_note
        # degree next to area: relative enhancement of the predicted BPE at the first post-contrast phase
        readout.update(degree_readout(labels, study.volumes["pre"], post_sub, model.config["bpe_degree"],
                                      readout["bpe_category_index"], len(model.config["bpe_cutoffs"]) + 1))
        record = _record(model, info, readout, outputs, time.perf_counter() - t0, warnings)
        write_json(tmp / "readout.json", record)
    return record


def _mri_units(input_path: Path) -> list[Unit]:
    from .preprocess import discover_mri_studies

    studies = discover_mri_studies(input_path)
    units, used = [], set()
    for key, members, root in studies:
        try:
            rel = root.relative_to(input_path).as_posix() if input_path.is_dir() else ""
        except ValueError:
            rel = ""
        name = "." if len(studies) == 1 else (rel if rel not in ("", ".") else key)
        if name in used:
            name = f"{name}-{key}"
        used.add(name)
        units.append(Unit(name, lambda model, out, key=key, members=members, root=root:
                          predict_mri_study(model, key, members, root, out)))
    return units


# ------------------------------------------------------------------------------------------ ultrasound


def predict_us_scan(model: LoadedModel, scan: Any, out: Path) -> dict[str, Any]:
    """Segment one ultrasound scan; write its outputs to ``out`` (atomically); return the read-out record."""
    from ..dicom.nifti import write_nifti
    from .dicom_seg import save_seg, us_seg
    from ..models.segment import segment
    from .preprocess import us_network_input
    from .readout import us_overlay, us_readout

    t0 = time.perf_counter()
    exp = model.experiment
    from ..data.ranges import us_values

    warnings = _range_warnings(model, scan.path or scan.scan,
                               us_values(scan.mask.shape, scan.spacing_mm, bool(scan.spacing_known)))
    image, arrays, meta = us_network_input(model.config, scan)
    mask = segment(model, image, [scan.mask.shape], [meta["spacing_mm"]]).native[0]  # as evaluation scores it
    dy, dx = (float(v) for v in scan.spacing_mm)
    readout = us_readout(mask, (dy, dx), scan.spacing_known)
    is_dicom = scan.source == "dicom-us"
    seg = us_seg(Path(scan.path), mask, exp.name, model.source.get("version")) if is_dicom else None
    outputs = {"labels": "labels.nii.gz", "overlay": "overlay.png", "dicom_seg": "seg.dcm" if is_dicom else None}
    info = {"kind": scan.source, "scan": scan.scan, "shape": list(scan.mask.shape),
            "pixel_spacing_mm": [dy, dx], "spacing_known": bool(scan.spacing_known),
            "rf": scan.rf is not None}
    affine = np.diag([dx, dy, 1.0, 1.0])  # i = column (lateral), j = row (depth)
    with atomic_dir(out) as tmp:
        write_nifti(tmp / "labels.nii.gz", np.asfortranarray(mask.T[:, :, None]), affine)
        if seg is not None:
            save_seg(seg, tmp / "seg.dcm")
        us_overlay(arrays["bmode"], mask, (dy, dx)).save(tmp / "overlay.png", compress_level=1)
        record = _record(model, info, readout, outputs, time.perf_counter() - t0, warnings)
        write_json(tmp / "readout.json", record)
    return record


def _safe_id(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text).strip()).strip("-.") or "unnamed"


def _dicom_modality(path: Path) -> str | None:
    if path.suffix.lower() not in (".dcm", ".dicom"):
        return None
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality", "") or "").strip().upper()
    except Exception:  # noqa: BLE001 - unreadable files are reported when they are read as inputs
        return None


def _us_units(input_path: Path) -> list[Unit]:
    from .preprocess import discover_us_inputs, read_us_input

    files = discover_us_inputs(input_path)
    if input_path.is_dir():  # DICOM files of other modalities (an MR study given to an US model) are no inputs
        other = {f: m for f in files if (m := _dicom_modality(f)) not in (None, "", "US")}
        if other and len(other) == len(files):
            modality = sorted(set(other.values()))[0]
            raise InputError(input_path, f"holds {modality} images, no ultrasound; model segments ultrasound")
        for f, m in other.items():
            log.warning("%s: %s image skipped (not ultrasound)", f, m)
        files = [f for f in files if f not in other]
    single = len(files) == 1 and input_path.is_file()
    units: list[Unit] = []
    for f in files:
        base = "." if single else f.relative_to(input_path).with_suffix("").as_posix()

        def run_file(model: LoadedModel, out: Path, f=f) -> dict[str, Any]:
            scans, _ = read_us_input(f)
            if len(scans) == 1:
                return predict_us_scan(model, scans[0], out)
            records = [predict_us_scan(model, s, out / f"{_safe_id(s.patient)}-{s.scan}") for s in scans]
            return {"scans": len(records), "outputs": [f"{_safe_id(s.patient)}-{s.scan}" for s in scans]}

        units.append(Unit(base, run_file))
    return units


# ------------------------------------------------------------------------------------------ entry point


def check_input(input_path: Path) -> None:
    """Refuse, in one line, an input that is missing, unreadable or empty (before any model is resolved)."""
    import os

    if not input_path.exists():
        raise InputError(input_path, "no such file or folder")
    if input_path.is_dir():
        try:
            with os.scandir(input_path) as entries:
                empty = next(entries, None) is None
        except OSError as exc:
            raise InputError(input_path, f"cannot read the folder: {exc.strerror or exc}") from None
        if empty:
            raise InputError(input_path, "is an empty folder")
    elif not os.access(input_path, os.R_OK):
        raise InputError(input_path, "cannot read the file: permission denied")
    elif input_path.stat().st_size == 0:
        raise InputError(input_path, "is an empty file")


def _check_us_file(path: Path) -> None:
    """A single ultrasound input checked as far as its header allows (type, DICOM modality, .npz archive)."""
    import zipfile

    from ..dicom.scan import has_dicm_magic
    from .preprocess import US_SUFFIXES, _check_us_dicom

    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom") or (suffix not in US_SUFFIXES and has_dicm_magic(path)):
        _check_us_dicom(path)
    elif suffix not in US_SUFFIXES:
        raise InputError(path, f"unsupported input type '{suffix or path.name}' (expected .npz, .mat, .dcm or .png)")
    elif suffix == ".npz" and not zipfile.is_zipfile(path):
        raise InputError(path, "cannot read as .npz: not a NumPy archive")


def _units(dataset: str, input_path: Path) -> list[Unit]:
    """The inputs below ``input_path`` for a model of ``dataset``: refused here when they are of another kind."""
    if dataset == "mri":
        return _mri_units(input_path)
    if input_path.is_file():
        _check_us_file(input_path)
    return _us_units(input_path)


def outputs_line(out_dir: Path, written: list[Path]) -> str:
    """One line naming the outputs: the folder and the files written (per input, for several)."""
    def files(folder: Path) -> list[str]:
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    if len(written) == 1:
        return f"breastseg: wrote {written[0]}: {', '.join(files(written[0]))}"
    names = sorted({f for w in written for f in files(w)}, key=lambda f: (f.count("/"), f))
    shown = ", ".join(w.relative_to(out_dir).as_posix() for w in written[:3]) + (", ..." if len(written) > 3 else "")
    return (f"breastseg: wrote {out_dir}: predictions.json and {len(written)} input folders ({shown}) with "
            f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}")


def predict(model_uri: str, input_path: str | Path, out_dir: str | Path, *, progress: bool = True,
            model: LoadedModel | None = None, registry_origin: str | None = None,
            announce: bool = False) -> list[dict[str, Any]]:
    """Segment ``input_path`` (one input or a folder of inputs) with ``model_uri``; outputs under ``out_dir``.

    The input is checked first (exists, readable), then the model's configuration is read and the input checked
    against its dataset (an MR study for an MRI model, ultrasound for an ultrasound one); only then is the
    network loaded. ``registry_origin``: what set the MLflow tracking URI in this process (named when a
    ``models:/`` or ``runs:/`` URI cannot be resolved). ``announce``: print one line naming the outputs.

    Returns one record per input (the content of its ``readout.json``). With several inputs, one that fails
    does not stop the others; the failures are listed in ``OUT_DIR/predictions.json`` and raised at the end
    as one :class:`~breastseg.errors.InputError`.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    check_input(input_path)
    if model is None:
        with resolved_model(model_uri, origin=registry_origin) as (folder, source):
            bundle = bundle_of(model_uri, folder)
            units = _units(read_config(bundle / CONFIG_NAME)["experiment"]["dataset"], input_path)
            model = load_bundle(bundle, source)
    else:
        if not model.config:
            raise InputError(model_uri, "the model has no inference configuration")
        units = _units(model.experiment.dataset, input_path)
    if len(units) == 1:
        out = out_dir if units[0].name == "." else out_dir / units[0].name
        records = [units[0].run(model, out)]
        if announce:
            print(outputs_line(out_dir, [out]), flush=True)
        return records
    from tqdm import tqdm

    records, failures, written = [], [], []
    for unit in tqdm(units, desc=f"predict {model.experiment.name}", unit="input", disable=not progress,
                     file=sys.stderr):
        try:
            records.append(unit.run(model, out_dir / unit.name))
            written.append(out_dir / unit.name)
        except InputError as err:
            failures.append({"input": unit.name, "path": err.path, "reason": err.reason})
            log.warning("%s: %s", err.path or unit.name, err.reason)
    write_json(out_dir / "predictions.json", {
        "model": _model_record(model), "inputs": [u.name for u in units],
        "succeeded": len(records), "failed": failures,
        "warnings": {w.relative_to(out_dir).as_posix(): r["warnings"] for w, r in zip(written, records)
                     if r.get("warnings")},
    })
    if failures:
        first = failures[0]
        raise InputError(first["path"] or input_path,
                         f"{first['reason']} ({len(failures)} of {len(units)} inputs failed; see "
                         f"{out_dir / 'predictions.json'})")
    if announce:
        print(outputs_line(out_dir, written), flush=True)
    return records
