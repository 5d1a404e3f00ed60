"""Does annotating what `breastseg suggest` picks help more than annotating slices at random? (bpe_mri phantoms)

A demo-sized synthetic MRI cohort is written with only part of its slices annotated; the labels of the other
slices go to a separate folder (``synth --withheld-labels``), never into the cohort. The patients are split once
into training and validation patients (validation patients keep their annotated slices only: they score). Then,
for each training seed:

1. a model is trained on the annotated training slices (the "champion" that makes the suggestions);
2. each strategy (``entropy``, ``tta``, and ``random``, the baseline) picks ``--budget`` unannotated training
   slices with :mod:`breastseg.suggest` (same candidates, same near-duplicate rule);
3. the picked slices get their withheld labels ("annotated"), and a model is trained from scratch, with the same
   seed, on the annotated slices plus those;
4. each retrained model is scored on the validation patients: Dice per patient (pixels of the patient's annotated
   slices pooled, mean over non-enhancing FGT and BPE), as validation and the champion gate score.

The row per strategy is the gain over random: the mean over seeds and validation patients of
``Dice(strategy) - Dice(random)`` with a 95 % interval from the hierarchical bootstrap (patients, then seeds:
:mod:`breastseg.evaluation.intervals`). Target: the interval lies above 0. Only validation patients are used:
nothing here is tuned or reported on test patients. Phantom Dice: not comparable with any real-data figure.

Run: ``.venv/bin/python benchmarks/bench_active.py [--patients 30] [--seeds 0 1 2] [--budget 20] [--epochs 20]
[--annotated-fraction 0.5] [--strategies entropy tta] [--keep DIR] [--quick]``
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NAME = "bpe_mri"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("--annotated-fraction", type=float, default=0.5, help="slices annotated at the start")
    ap.add_argument("--budget", type=int, default=20, help="slices each strategy adds")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (at least 3)")
    ap.add_argument("--strategies", nargs="+", default=["entropy", "tta"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--matrix", type=int, default=128, help="MRI matrix (the demo's)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--val-fraction", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=2, help="trainings side by side (one thread each)")
    ap.add_argument("--keep", help="work in this folder and keep it")
    ap.add_argument("--out", help="also write the detailed results (JSON) here")
    ap.add_argument("--quick", action="store_true", help="6 small patients, 2 seeds, 1 epoch: the harness only")
    return ap


# ------------------------------------------------------------------------------------------ data


def build(work: Path, args: argparse.Namespace) -> dict:
    """The cohort converted (pseudonymised), its training and validation patients, the annotated slices as arrays
    and the unannotated training slices with their withheld labels."""
    import nibabel as nib

    from breastseg.config import experiment, load_params
    from breastseg.data.cohort import discover
    from breastseg.data.slices import prepare_mri, resize_slice
    from breastseg.dicom.dce import convert_dce_patient
    from breastseg.pseudonym import DEMO_KEY
    from breastseg.suggest import mri_candidates
    from breastseg.synth.cohort import write_cohort

    params = load_params(ROOT / "params.yaml")
    params["experiments"][NAME]["image_size"] = args.image_size
    exp = experiment(params, NAME)
    synth = {k: v for k, v in params["synth"].items() if k not in ("patients", "seed", "workers", "annotated_fraction")}
    synth["mri_matrix"] = args.matrix
    write_cohort(work / "raw", args.patients, params["synth"]["seed"], progress=False, workers=2,
                 withheld_labels_dir=work / "withheld", annotated_fraction=args.annotated_fraction, **synth)
    found = discover(work / "raw", "mri", DEMO_KEY)
    raw_of = {}
    for pid, patient in found.items():
        convert_dce_patient(Path(patient.sources[0]), work / "interim" / pid, patient_id=pid)
        raw_of[pid] = Path(patient.sources[0]).name
    pids = sorted(found)
    order = np.random.default_rng(0).permutation(len(pids))
    n_val = max(2, round(args.val_fraction * len(pids)))
    val = sorted(pids[i] for i in order[:n_val])
    train = sorted(pids[i] for i in order[n_val:])

    def arrays(patients: list[str]) -> dict:
        parts = {k: [] for k in ("image", "label", "patient")}
        for pid in patients:
            d = prepare_mri(exp, work / "interim" / pid)
            parts["image"] += d["images"]
            parts["label"] += d["labels"]
            parts["patient"] += [pid] * len(d["images"])
        return {"image": np.asarray(parts["image"], np.float32), "label": np.asarray(parts["label"], np.uint8),
                "patient": np.asarray(parts["patient"])}

    # the withheld labels of every unannotated training slice (what an annotator would draw), on the converted
    # grid: each training study is converted again with its withheld label file in place of the partial one
    candidates = mri_candidates(work / "interim", set(train))
    withheld = {}
    for pid in sorted({c.patient for c in candidates}):
        full = work / "full" / raw_of[pid]
        shutil.copytree(Path(found[pid].sources[0]), full)
        for study_dir in sorted(p for p in full.iterdir() if p.is_dir()):
            shutil.copy(work / "withheld" / raw_of[pid] / study_dir.name / "labels.nii.gz", study_dir / "labels.nii.gz")
        convert_dce_patient(full, work / "interim_full" / pid, patient_id=pid)
    for c in candidates:
        if (c.patient, c.study) not in withheld:
            path = work / "interim_full" / c.patient / c.study / "labels.nii.gz"
            withheld[(c.patient, c.study)] = np.asarray(nib.load(str(path)).dataobj).astype(np.uint8)
    labels = {c: resize_slice(withheld[(c.patient, c.study)][:, :, c.index], exp.image_size, 0) for c in candidates}
    return {"exp": exp, "train": arrays(train), "val": arrays(val), "train_patients": train, "val_patients": val,
            "candidates": candidates, "withheld": labels, "interim": work / "interim"}


# ------------------------------------------------------------------------------------------ training


def fit(exp, data: dict, seed: int, epochs: int):
    """A network trained from scratch on ``data["train"]`` (validated on ``data["val"]``), as the pipeline trains."""
    import logging
    import warnings

    import lightning.pytorch as pl
    import torch

    from breastseg.data.datamodule import SliceDataModule
    from breastseg.training.module import SegmentationModule
    from breastseg.training.train import make_trainer, module_kwargs

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    hp = exp.train.with_values({"seed": seed, "max_epochs": epochs, "threads": 1})
    pl.seed_everything(seed, workers=True, verbose=False)
    dm = SliceDataModule("unused", "unused", batch_size=hp.batch_size, seed=seed, augment=hp.augment,
                         samples_per_epoch=hp.samples_per_epoch)
    dm.data = {"train": data["train"], "val": data["val"], "test": data["val"]}
    module = SegmentationModule(exp, **module_kwargs(hp, epochs))
    trainer = make_trainer(hp, epochs, False, [], enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=dm)
    return module.net.eval()


def val_dice(exp, net, val: dict) -> dict[str, float]:
    """Dice per validation patient: pixels of its annotated slices pooled, mean over the foreground classes."""
    from breastseg.evaluation.metrics import dice_figures, overlap_counts
    from breastseg.models.bundle import predict_slices

    pred = predict_slices(net, val["image"])
    figs = dice_figures(overlap_counts(pred, val["label"], exp.classes), val["patient"], no_mass_apart=False)
    return {str(p): float(np.nanmean(figs["patient_dice"][j])) for j, p in enumerate(figs["patients"])}


def one_seed(job: dict) -> dict:
    """Train the suggesting model, let every strategy pick, retrain on each pick: Dice per val patient."""
    from breastseg.suggest import mri_inputs, scores_for, select

    data, seed, args = job["data"], job["seed"], job["args"]
    exp = data["exp"]
    t0 = time.perf_counter()
    base = {"train": data["train"], "val": data["val"]}
    champion = fit(exp, base, seed, args.epochs)
    out = {"seed": seed, "initial": val_dice(exp, champion, data["val"]), "picked": {}, "dice": {}}
    cands = data["candidates"]
    images = mri_inputs(exp, data["interim"], cands)
    for strategy in ["random", *args.strategies]:
        scores = scores_for(strategy, champion, images, seed=seed, mc_passes=4, augment=exp.train.augment)
        chosen = select(cands, scores, args.budget, 2)
        added = {"image": images[chosen], "label": np.asarray([data["withheld"][cands[i]] for i in chosen], np.uint8),
                 "patient": np.asarray([cands[i].patient for i in chosen])}
        train = {k: np.concatenate([data["train"][k], added[k]]) for k in ("image", "label", "patient")}
        net = fit(exp, {"train": train, "val": data["val"]}, seed, args.epochs)
        out["dice"][strategy] = val_dice(exp, net, data["val"])
        labelled = added["label"]
        out["picked"][strategy] = {"slices": len(chosen),
                                   "with_bpe": int(sum((lab == 2).any() for lab in labelled)),
                                   "foreground_pixels": int((labelled != 0).sum())}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


# ------------------------------------------------------------------------------------------ the benchmark


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(patients=6, seeds=[0, 1], budget=3, epochs=1, matrix=32, image_size=32, strategies=["entropy"])
    args = ap.parse_args([] if argv is None else argv)
    from breastseg.evaluation.intervals import hierarchical_bootstrap, paired_matrix

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_active_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        data = build(work, args)
        print(f"cohort: {args.patients} patients, {len(data['train_patients'])} training ({len(data['train']['label'])} "
              f"annotated slices, {len(data['candidates'])} unannotated), {len(data['val_patients'])} validation "
              f"({len(data['val']['label'])} slices); built in {time.perf_counter() - t0:.0f} s", flush=True)
        jobs = [{"data": data, "seed": s, "args": args} for s in args.seeds]
        if args.workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(max_workers=args.workers) as pool:
                runs = list(pool.map(one_seed, jobs))
        else:
            runs = [one_seed(j) for j in jobs]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    rows, detail = [], {"runs": runs, "settings": {k: v for k, v in vars(args).items() if k not in ("keep", "out")}}
    random_mean = float(np.mean([np.mean(list(r["dice"]["random"].values())) for r in runs]))
    for strategy in args.strategies:
        d, patients = paired_matrix([r["dice"][strategy] for r in runs], [r["dice"]["random"] for r in runs])
        ci = hierarchical_bootstrap(d, seed=0)
        detail[strategy] = ci
        mean = float(np.mean([np.mean(list(r["dice"][strategy].values())) for r in runs]))
        picked = [r["picked"][strategy]["with_bpe"] for r in runs]
        met = ci["ci_low"] is not None and ci["ci_low"] > 0
        rows.append({
            "name": f"annotation worklist ({strategy}) vs random: validation Dice gain, {args.budget} slices added",
            "ratio": None, "target": None,
            "reference": f"random choice of {args.budget} unannotated training slices, same seeds",
            "result": ("interval above 0: met" if met else
                       "interval not above 0: not met" + (f" (lower end {ci['ci_low']:+.4f})"
                                                          if ci["ci_low"] is not None else "")),
            "detail": (f"gain {ci['mean']:+.4f} [{ci['ci_low']:+.4f}, {ci['ci_high']:+.4f}] (95 %, hierarchical "
                       f"bootstrap over {len(patients)} val patients x {len(runs)} seeds); Dice {mean:.4f} vs random "
                       f"{random_mean:.4f}; slices with BPE picked per seed {picked} vs random "
                       f"{[r['picked']['random']['with_bpe'] for r in runs]}; phantoms, {args.patients} patients, "
                       f"{args.annotated_fraction:.0%} of slices annotated at the start, {args.epochs} epochs; "
                       "phantom Dice, not comparable with real-data figures")
            if ci["ci_low"] is not None else f"gain {ci['mean']}: too few validation patients for an interval",
        })
        print(rows[-1]["name"], "->", rows[-1]["result"], "|", rows[-1]["detail"], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(detail, indent=1, default=str))
    return rows


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import standalone

    raise SystemExit(standalone(bench, parser))
