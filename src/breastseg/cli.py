"""Command line: thin wrappers that parse arguments and call typed functions.

Heavy libraries (torch, lightning, mlflow) are imported inside the commands that need them, so
``breastseg --help`` and the per-patient ``convert`` / ``us-maps`` jobs start fast.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .errors import InputError
from .paths import PATHS

log = logging.getLogger("breastseg")


def _params(args: argparse.Namespace) -> dict:
    from .config import load_params

    return load_params(args.params)


def _settings(args: argparse.Namespace):
    """The configuration file's settings, validated, every default filled, as typed frozen objects."""
    from .config import Settings

    return Settings.from_params(_params(args))


def cmd_synth(args: argparse.Namespace) -> None:
    from .synth.cohort import write_cohort

    from .config import schema_defaults

    # the synth block of the params file in force (every key filled from the schema), else the schema's defaults:
    # `breastseg synth OUT` writes the demo's cohort; flags override one setting each
    options = _settings(args).synth.as_dict() if Path(args.params).exists() else schema_defaults("synth")
    patients = args.patients if args.patients is not None else options.pop("patients")
    seed = args.seed if args.seed is not None else options.pop("seed")
    options = {k: v for k, v in options.items() if k not in ("patients", "seed")}
    summary = write_cohort(Path(args.out_dir), patients, seed, progress=not args.quiet,
                           withheld_labels_dir=args.withheld_labels, **options)
    log.info("wrote synthetic cohort to %s (%s)", args.out_dir, summary)


def cmd_convert(args: argparse.Namespace) -> None:
    if args.dce:
        from .dicom.dce import convert_dce_patient

        if not args.patient_id:
            raise InputError(None, "--dce needs --patient-id (the pseudonym to write under)")
        convert_dce_patient(Path(args.dicom_dir), Path(args.out_dir), patient_id=args.patient_id, on_error=args.on_error)
        _prepare_after(args)
    else:
        from .dicom.convert import convert_dicom_dir

        convert_dicom_dir(Path(args.dicom_dir), Path(args.out_dir), on_error=args.on_error, progress=not args.quiet)


def cmd_us_maps(args: argparse.Namespace) -> None:
    from .us.maps import write_us_maps

    kwargs = dict(dynamic_range_db=args.dynamic_range_db, window_pulses=args.window_pulses, bins=args.bins,
                  entropy_on=args.entropy_on)
    if args.maps:
        kwargs["maps"] = tuple(args.maps.split(","))
    if not args.input:
        raise InputError(None, "give at least one INPUT")
    if args.patient_id:
        kwargs["patient_id"] = args.patient_id
    if args.select:
        kwargs["patients"] = args.select
    write_us_maps([Path(p) for p in args.input], Path(args.out_dir), progress=not args.quiet, **kwargs)
    _prepare_after(args)


def _prepare_after(args: argparse.Namespace) -> None:
    """``--prepare EXPERIMENT[,...]``: the converted patient's network-ready slices for each experiment, written
    to ``<processed-dir>/<experiment>/<patient>.npz`` in the same process (the workflow's one job per patient)."""
    if not args.prepare:
        return
    if not args.patient_id:
        raise InputError(None, "--prepare needs --patient-id")
    from .data.slices import prepare_experiments

    s = _settings(args)
    exps = [s.experiments[name] for name in args.prepare.split(",") if name]
    prepare_experiments(exps, Path(args.out_dir), Path(args.processed_dir), patient_id=args.patient_id)


def cmd_prepare(args: argparse.Namespace) -> None:
    from .data.slices import prepare_patient

    exp = _settings(args).experiments[args.experiment]
    prepare_patient(exp, Path(args.interim_dir), Path(args.out), patient_id=args.patient_id)


def cmd_convert_shard(args: argparse.Namespace) -> None:
    from .data.shards import convert_shard

    dataset = args.dataset
    convert_shard(_settings(args), dataset, Path(args.fingerprints), Path(args.marker),
                  interim_dir=Path(args.interim_dir or PATHS.interim(dataset)),
                  log_dir=Path(args.log_dir or f"logs/convert/{dataset}"), on_error=args.on_error,
                  progress=not args.quiet)


def cmd_prepare_shard(args: argparse.Namespace) -> None:
    from .data.shards import prepare_shard

    s = _settings(args)
    dataset = s.experiments[args.experiment].dataset
    prepare_shard(s, args.experiment, Path(args.converted), Path(args.marker),
                  interim_dir=Path(args.interim_dir or PATHS.interim(dataset)),
                  processed_dir=Path(args.processed_dir or PATHS.processed(args.experiment)),
                  progress=not args.quiet)


def cmd_split(args: argparse.Namespace) -> None:
    from .data.shards import prepared_files
    from .data.split import split_dataset

    markers = [p for p in args.prepared if p.endswith(".json")]
    split_dataset(
        _settings(args),
        args.dataset,
        [*prepared_files(markers), *(Path(p) for p in args.prepared if not p.endswith(".json"))],
        splits_dir=Path(args.splits_dir),
        processed_dir=Path(args.processed_dir),
        data_version=args.data_version,
    )


def cmd_rekey(args: argparse.Namespace) -> None:
    from .data.ledger import rekey

    renamed = rekey(_settings(args), args.old_key, args.new_key, splits_dir=Path(args.splits_dir),
                    interim_dir=Path(args.interim_dir), processed_dir=Path(args.processed_dir))
    for dataset, mapping in renamed.items():
        print(f"{dataset}: {len(mapping)} patients re-keyed; their converted data is rebuilt by the next run")
    print(f"now point cohort.pseudonym_key_file (or $BREASTSEG_PSEUDONYM_KEY_FILE) at {args.new_key}")


def cmd_withdraw(args: argparse.Namespace) -> None:
    from .data.ledger import withdraw

    report = withdraw(_settings(args), args.patient, splits_dir=Path(args.splits_dir),
                      interim_dir=Path(args.interim_dir), processed_dir=Path(args.processed_dir),
                      tag_models=not args.no_tag)
    for dataset, done in report["datasets"].items():
        print(f"{report['patient']}: withdrawn from {dataset} (was {done['subset']}); removed {len(done['removed'])} "
              "converted outputs")
    for mv in report["model_versions"]:
        print(f"tagged breastseg.withdrawn_patients on {mv}")
    print("delete the patient's raw files and `dvc add` the cohort again; the ledger keeps the pseudonym out")


def cmd_study(args: argparse.Namespace) -> None:
    from .training.tune import open_study

    open_study(_settings(args), args.experiment, split_file=Path(args.split), processed_dir=Path(args.processed_dir),
               out_json=Path(args.out))


def cmd_tune(args: argparse.Namespace) -> None:
    from .training.tune import run_worker, tune_experiment

    kw = dict(split_file=Path(args.split), processed_dir=Path(args.processed_dir), work_dir=Path(args.work_dir))
    if args.best_params:  # the only worker: open the study first (writing --study), close it at the end
        tune_experiment(_settings(args), args.experiment, out_json=Path(args.best_params), study_json=Path(args.study),
                        worker_json=Path(args.out), **kw)
    else:
        run_worker(_settings(args), args.experiment, study_json=Path(args.study), out_json=Path(args.out),
                   worker=args.worker, **kw)


def cmd_best_params(args: argparse.Namespace) -> None:
    from .training.tune import close_study

    close_study(_settings(args), args.experiment, study_json=Path(args.study), out_json=Path(args.out))


def cmd_train(args: argparse.Namespace) -> None:
    from .training.train import train_experiment

    train_experiment(_settings(args), args.experiment, split_file=Path(args.split), processed_dir=Path(args.processed_dir),
                     best_params=Path(args.best_params) if args.best_params else None, out_dir=Path(args.out_dir),
                     curve_csv=Path(args.curve) if args.curve else None, seed=args.seed,
                     register=not args.no_register)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluation.evaluate import evaluate_experiment

    evaluate_experiment(_settings(args), args.experiment, model_json=Path(args.model), split_file=Path(args.split),
                        processed_dir=Path(args.processed_dir), metrics_json=Path(args.metrics), out_dir=Path(args.out_dir),
                        dice_plot_csv=Path(args.dice_plot) if args.dice_plot else None,
                        evaluation_json=Path(args.evaluation) if args.evaluation else None,
                        seed_evaluations=[Path(p) for p in args.seed_evaluation or []],
                        with_figures=not args.no_figures)


def cmd_register(args: argparse.Namespace) -> None:
    from .registry import promote_if_better

    promote_if_better(_settings(args), args.experiment, model_json=Path(args.model), split_file=Path(args.split),
                      processed_dir=Path(args.processed_dir), decision_json=Path(args.out),
                      interim_dir=Path(args.interim_dir) if args.interim_dir else None,
                      evaluation_json=Path(args.evaluation) if args.evaluation else None)


def cmd_compare(args: argparse.Namespace) -> None:
    from .evaluation.compare import compare

    compare(args.name, args.a, args.b, Path(args.results_dir), Path(args.out_dir), seeds=args.seeds,
            bootstrap_seed=int(_settings(args).evaluation.seed))


def cmd_report(args: argparse.Namespace) -> None:
    from .report import write_summary

    write_summary(_settings(args).cohort.name, [Path(p) for p in args.metrics], Path(args.out),
                  curves=[Path(p) for p in args.curves or []])


def cmd_predict(args: argparse.Namespace) -> None:
    from .inference.api import predict

    # models:/ and runs:/ URIs resolve against $MLFLOW_TRACKING_URI, else the params file's store when there is one
    # (never MLflow's default store, which it would create in the current folder: see models.bundle.check_store)
    origin = None
    if args.model_uri.startswith(("models:/", "runs:/")) and Path(args.params).exists():
        from .config import tracking_only
        from .tracking import configure

        tracking = tracking_only(args.params)  # only its tracking store is read
        if tracking:
            user_registry = os.environ.get("MLFLOW_REGISTRY_URI")
            configure(tracking)
            if user_registry is None:  # mlflow.set_registry_uri exports it: keep it meaning "the user's choice"
                os.environ.pop("MLFLOW_REGISTRY_URI", None)
            origin = f"the params file {args.params}"
    predict(args.model_uri, Path(args.input), Path(args.out_dir), progress=not args.quiet, registry_origin=origin,
            announce=True)


def cmd_tracking_init(args: argparse.Namespace) -> None:
    from .tracking import init_stores

    init_stores(_settings(args))


def cmd_suggest(args: argparse.Namespace) -> None:
    from .suggest import suggest
    from .tracking import configure

    s = _settings(args)
    cfg = s.suggest
    configure(s.tracking)
    augment = s.experiments[args.experiment].train.augment if args.experiment in s.experiments else None
    out = Path(args.out) if args.out else None
    suggest(args.model_uri, Path(args.interim_dir) if args.interim_dir else None, out,
                   budget=args.budget or cfg.budget, strategy=args.strategy or cfg.strategy,
                   min_gap=cfg.min_slice_gap, seed=cfg.seed, mc_passes=cfg.mc_passes, tta_augment=augment,
                   montage=Path(args.montage) if args.montage else True,
                   montage_tiles=cfg.montage, origin=f"the params file {args.params}",
                   log_to_mlflow=not args.no_mlflow, announce=True)


def cmd_locate(args: argparse.Namespace) -> None:
    from .data.cohort import raw_sources
    from .pseudonym import cohort_key
    from .suggest import worklist_patients

    cohort = _settings(args).cohort
    wanted = list(dict.fromkeys(p for item in args.items
                                for p in (worklist_patients(Path(item)) if item.endswith(".csv") else [item])))
    found = raw_sources(cohort.as_dict(), cohort_key(cohort.as_dict(), create=False).key)
    for pid in wanted:
        if pid in found:
            print(f"{pid}\t{' '.join(found[pid])}")
    missing = [pid for pid in wanted if pid not in found]
    if missing:
        raise InputError(cohort.root, f"no raw data for {', '.join(missing[:5])}"
                                                   f"{' ...' if len(missing) > 5 else ''} with the key in force")


def cmd_server(args: argparse.Namespace) -> None:
    from .server import serve

    serve(args)


def cmd_accounts(args: argparse.Namespace) -> None:
    import getpass

    from .server import add_user, grant

    if args.action == "add":
        password = os.environ.get(args.password_env) if args.password_env else None
        if args.password_env and not password:
            raise InputError(None, f"--password-env {args.password_env}: that variable is not set")
        if password is None:
            password = getpass.getpass(f"password for {args.user}: ")
        add_user(args.server, args.user, password)
        print(f"added user {args.user}")
    else:
        print("granted " + grant(args.server, args.user, args.permission, experiment=args.experiment,
                                 model=args.model))


def _prepare_options(s: argparse.ArgumentParser) -> None:
    """``--prepare`` / ``--processed-dir`` of the conversion commands (see :func:`_prepare_after`)."""
    s.add_argument("--prepare", metavar="EXPERIMENT[,...]",
                   help="also write each experiment's prepared slices (as 'prepare') to "
                        "PROCESSED_DIR/<experiment>/<patient>.npz")
    s.add_argument("--processed-dir", default=PATHS.processed(), help="where --prepare writes")


#: The steps the workflow's rules run: left out of ``breastseg --help``'s list of commands (each has --help).
WORKFLOW_STEPS = ("convert-shard", "prepare-shard", "study", "best-params", "tracking-init")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """A default shown once: not for an option whose help already names where its default comes from, nor for
    one whose default is None (nothing to show)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="breastseg",
        description="Segmentation pipelines for breast imaging: BPE/FGT in DCE-MRI, masses in ultrasound\n"
        "(entropy vs B-mode). Each command has --help.",
        epilog=f"steps the workflow's rules run (each has --help):\n  {', '.join(WORKFLOW_STEPS)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"breastseg {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    p.add_argument("--params", default="params.yaml", help="the configuration file (default: params.yaml)")
    p.add_argument("--verbose", action="store_true",
                   help="predict, suggest: also the INFO messages of the libraries (highdicom, mlflow, lightning), "
                        "hidden by default")
    # The same options after the command name; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars, warnings only")
    common.add_argument("--params", default=argparse.SUPPRESS, help="the configuration file (default: params.yaml)")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also the INFO messages of the libraries (highdicom, mlflow, lightning)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        listed = {} if name in WORKFLOW_STEPS else {"help": help}  # a parser without help= is not listed
        sp = sub.add_parser(name, description=help, parents=[common], formatter_class=_HelpFormatter, **listed)
        sp.set_defaults(func=func)
        return sp

    s = add("synth", cmd_synth, "write a synthetic cohort (DCE-MRI DICOM + ultrasound RF) in the real input formats")
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument("--patients", type=int, help="number of patients (default: synth.patients of --params)")
    s.add_argument("--seed", type=int, help="random seed, same seed, same bytes (default: synth.seed of --params)")
    s.add_argument("--from-params", action="store_true",
                   help="(the default) every other setting, e.g. image sizes, from the synth block of --params, "
                        "else from the schema's defaults, which params.yaml repeats")
    s.add_argument("--withheld-labels", metavar="DIR",
                   help="also write every MRI slice's labels, the unannotated ones included, to DIR (outside "
                        "OUT_DIR): the annotations the cohort withholds, for benchmarks of annotation worklists")

    from .config import schema_defaults

    s = add("convert", cmd_convert, "convert DICOM series to NIfTI volumes with JSON sidecars")
    s.add_argument("dicom_dir", metavar="DICOM_DIR", help="folder of DICOM files")
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument("--on-error", choices=["fail", "skip"], default=schema_defaults("convert")["on_error"],
                   help="stop at the first bad file, or skip it and list it in quarantine.json")
    s.add_argument("--dce", action="store_true", help="DCE breast MRI patient folder: phases, subtraction, labels")
    s.add_argument("--patient-id", help="pseudonym to write the patient under (with --dce)")
    _prepare_options(s)

    us = schema_defaults("us_maps")  # the defaults of params.yaml's us_maps block (one source: the schema)
    s = add("us-maps", cmd_us_maps, "ultrasound RF (or B-mode) to B-mode and Shannon-entropy maps with masks")
    s.add_argument("input", metavar="INPUT", nargs="*",
                   help=".npz, OASBUD .mat, BUSI image or folder, DICOM US file, or a folder of these (one or more)")
    s.add_argument("out_dir", metavar="OUT_DIR")
    s.add_argument("--maps", help="comma-separated maps to write (bmode,entropy)")
    s.add_argument("--dynamic-range-db", type=float, default=us["dynamic_range_db"], help="B-mode dynamic range")
    s.add_argument("--window-pulses", type=float, default=us["window_pulses"], help="entropy window side in pulse lengths")
    s.add_argument("--bins", type=int, default=us["bins"], help="entropy histogram bins")
    s.add_argument("--entropy-on", choices=["envelope", "bmode"], default=us["entropy_on"],
                   help="signal the entropy histogram is taken of: uncompressed envelope or log-compressed B-mode")
    s.add_argument("--patient-id", help="pseudonym to record instead of the input's own name")
    s.add_argument("--select", action="append", metavar="ID",
                   help="convert only this unit (an OASBUD lesion id, a patient id); repeat for several")
    _prepare_options(s)

    s = add("convert-shard", cmd_convert_shard,
            "the workflow's conversion step: decode the new or changed patients of one shard (DICOM -> NIfTI, "
            "RF -> envelope, images -> B-mode) into the cache")
    s.add_argument("dataset", choices=["mri", "us"])
    s.add_argument("fingerprints", metavar="FINGERPRINTS", help="the shard's fingerprint file written by the workflow "
                                                                "(its patients' raw files, so no raw path is an argument)")
    s.add_argument("marker", metavar="MARKER", help="JSON written at the end: the shard's converted patients")
    s.add_argument("--interim-dir", help="the cache (default data/interim/<dataset>)")
    s.add_argument("--log-dir", help="one log per failed patient (default logs/convert/<dataset>)")
    s.add_argument("--on-error", choices=["fail", "skip"], help="a bad patient fails the shard (after the others), "
                                                               "or is left out of this run (default: convert.on_error)")

    s = add("prepare-shard", cmd_prepare_shard,
            "the workflow's preparation step: the network's slices of one converted shard for one experiment, "
            "made from the cache (only patients whose cache or settings changed)")
    s.add_argument("experiment")
    s.add_argument("converted", metavar="CONVERTED", help="the conversion marker of the shard")
    s.add_argument("marker", metavar="MARKER", help="JSON written at the end: the shard's prepared patients")
    s.add_argument("--interim-dir", help="the cache (default data/interim/<dataset>)")
    s.add_argument("--processed-dir", help="where the slices go (default data/processed/<experiment>)")

    s = add("prepare", cmd_prepare, "one patient's converted volumes/maps to network-ready 2-D slices (.npz)")
    s.add_argument("experiment")
    s.add_argument("interim_dir", metavar="INTERIM_DIR")
    s.add_argument("out", metavar="OUT_NPZ")
    s.add_argument("--patient-id", required=True)

    s = add("split", cmd_split, "append-only, stratified, patient-level split and slice manifests for a dataset")
    s.add_argument("dataset", choices=["mri", "us"])
    s.add_argument("prepared", nargs="+", metavar="NPZ|MARKER",
                   help="prepared patient files of the dataset, or the preparation markers that list them")
    s.add_argument("--splits-dir", default=PATHS.splits())
    s.add_argument("--processed-dir", default=PATHS.processed())
    s.add_argument("--data-version", help="the data version new patients join in (recorded per patient)")

    s = add("rekey", cmd_rekey, "rotate the pseudonym key: the ledger and outputs follow every patient to its new name")
    s.add_argument("--old-key", required=True, metavar="FILE", help="the key file the ledgers were made with")
    s.add_argument("--new-key", required=True, metavar="FILE", help="the new key file (created when missing)")
    s.add_argument("--splits-dir", default=PATHS.splits())
    s.add_argument("--interim-dir", default=PATHS.interim())
    s.add_argument("--processed-dir", default=PATHS.processed())

    s = add("withdraw", cmd_withdraw, "withdraw a patient on request: ledger, splits and converted data; model "
                                      "versions trained with the patient are tagged")
    s.add_argument("patient", metavar="PATIENT", help="the raw patient identifier (folder name, lesion id) or its "
                                                     "pseudonym (P + 12 hex digits)")
    s.add_argument("--no-tag", action="store_true", help="do not tag model versions in MLflow")
    s.add_argument("--splits-dir", default=PATHS.splits())
    s.add_argument("--interim-dir", default=PATHS.interim())
    s.add_argument("--processed-dir", default=PATHS.processed())

    for name, func, help in [
        ("study", cmd_study, "create or reopen the Optuna study and its MLflow parent run"),
        ("tune", cmd_tune, "an Optuna worker: run trials (nested MLflow runs) until the study has tune.n_trials"),
        ("train", cmd_train, "train the final model, log it to MLflow, register it as 'challenger'"),
        ("evaluate", cmd_evaluate, "evaluate the challenger on the test patients"),
        ("register", cmd_register, "promote the challenger to 'champion' if it beats the champion on the same "
                                   "validation patients"),
    ]:
        s = add(name, func, help)
        s.add_argument("experiment")
        s.add_argument("--split", required=True, help="data/splits/<experiment>.json")
        s.add_argument("--processed-dir", required=True, help="folder of prepared patient .npz files")
        if name == "study":
            s.add_argument("--out", required=True, help="study and parent-run ids (JSON)")
        if name == "tune":
            s.add_argument("--study", required=True, help="JSON written by 'study' (with --best-params: written here)")
            s.add_argument("--best-params", metavar="JSON",
                           help="the study's only worker: create or reopen the study first (as 'study'), and write "
                                "the best trial's parameters here at the end (as 'best-params')")
            s.add_argument("--worker", type=int, default=0, help="worker number (seeds its sampler)")
            s.add_argument("--out", required=True, help="this worker's summary (JSON)")
            s.add_argument("--work-dir", required=True, help="scratch folder for trial logs")
        if name == "train":
            s.add_argument("--best-params", help="JSON written by 'tune'")
            s.add_argument("--out-dir", required=True, help="checkpoints and model.json")
            s.add_argument("--curve", help="learning curve CSV (DVC plot)")
            s.add_argument("--seed", type=int, help="training seed (one of run.seeds; default train.seed)")
            s.add_argument("--no-register", action="store_true",
                           help="keep the model as an inference bundle in --out-dir, do not register it (the seeds "
                                "after the first)")
        if name in ("evaluate", "register"):
            s.add_argument("--model", required=True, help="model.json written by 'train'")
        if name == "evaluate":
            s.add_argument("--metrics", required=True, help="metrics/<experiment>.json (flat headline figures)")
            s.add_argument("--evaluation", help="full summary JSON (default: OUT_DIR/evaluation.json)")
            s.add_argument("--out-dir", required=True, help="per-case table and figures")
            s.add_argument("--dice-plot", help="per-patient Dice CSV (DVC plot)")
            s.add_argument("--seed-evaluation", nargs="+", metavar="JSON",
                           help="evaluation.json of the further run.seeds: --metrics then holds the mean over seeds")
            s.add_argument("--no-figures", action="store_true", help="tables only (a further seed's evaluation)")
        if name == "register":
            s.add_argument("--interim-dir", help="converted patients, to prepare val slices for a champion trained "
                                                 "with another image size (default: data/interim/<dataset>)")
            s.add_argument("--evaluation", help="the challenger's evaluation.json: its test figures are copied into "
                                                "the decision as reported_test, never used by it")
            s.add_argument("--out", required=True, help="decision JSON")

    s = add("best-params", cmd_best_params, "close the study: write the best trial's parameters for 'train'")
    s.add_argument("experiment")
    s.add_argument("--study", required=True, help="JSON written by 'study'")
    s.add_argument("--out", required=True, help="best parameters (JSON)")

    s = add("compare", cmd_compare, "paired comparison of two experiments on the same test patients: mean difference "
                                    "with a 95 %% interval over patients and seeds, Wilcoxon test per seed")
    s.add_argument("name", help="comparison name (file stem)")
    s.add_argument("a", help="first experiment (e.g. mass_us_entropy)")
    s.add_argument("b", help="second experiment (e.g. mass_us_bmode)")
    s.add_argument("--results-dir", default=PATHS.results())
    s.add_argument("--out-dir", default=PATHS.comparisons())
    s.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="the training seeds evaluated (run.seeds; the first is the registered model's)")

    s = add("report", cmd_report, "one-page HTML summary of all experiments")
    s.add_argument("metrics", nargs="+", metavar="METRICS_JSON")
    s.add_argument("--out", required=True)
    s.add_argument("--curves", nargs="+", metavar="CSV", help="learning_curve.csv of the final trainings (drawn)")

    s = add("predict", cmd_predict, "segment new studies with a registered model: labels (NIfTI, DICOM SEG), "
            "overlay, read-out")
    s.add_argument("model_uri", metavar="MODEL_URI",
                   help="models:/breastseg-bpe_mri@champion, models:/<name>/<version>, runs:/<run>/model or a folder")
    s.add_argument("input", metavar="INPUT", help="a DICOM DCE study folder (MRI), an RF .npz/.mat, a DICOM US or "
                   "B-mode .png (ultrasound), or a folder of many")
    s.add_argument("out_dir", metavar="OUT_DIR")

    add("tracking-init", cmd_tracking_init, "create the MLflow and Optuna databases (run once before parallel jobs)")

    from .suggest import STRATEGIES

    s = add("suggest", cmd_suggest, "rank the cohort's unannotated MRI slices / ultrasound scans by a model's "
                                    "uncertainty: the worklist (CSV) and montage (PNG) of what to annotate next")
    s.add_argument("model_uri", metavar="MODEL_URI", help="e.g. models:/breastseg-bpe_mri@champion, or a bundle folder")
    s.add_argument("--experiment", default="", help="the model's experiment in params.yaml (its training "
                                                    "augmentation sets tta's intensity passes)")
    s.add_argument("--budget", type=int, help="how many to suggest (default: suggest.budget)")
    s.add_argument("--strategy", choices=STRATEGIES, help="default: suggest.strategy")
    s.add_argument("--interim-dir", help="the converted patients (default: data/interim/<the model's dataset>)")
    s.add_argument("--out", help="worklist CSV (default: results/<experiment>/worklist.csv)")
    s.add_argument("--montage", help="montage PNG (default: beside --out)")
    s.add_argument("--no-mlflow", action="store_true", help="do not log the worklist on the model's MLflow run")

    s = add("locate", cmd_locate, "the raw folders of pseudonymised patients (a worklist's), found with the "
                                  "pseudonym key in force: printed on the terminal only, written nowhere")
    s.add_argument("items", nargs="+", metavar="PSEUDONYM_OR_WORKLIST_CSV")

    from .server import ADMIN_PASSWORD_VARIABLE, PERMISSIONS

    s = add("server", cmd_server, "the team's MLflow tracking server (make server), optionally with accounts")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: other machines too)")
    s.add_argument("--port", type=int, default=5000)
    s.add_argument("--backend", default="sqlite:///mlflow.db", help="runs and models (postgresql://... for a team)")
    s.add_argument("--artifacts", default="./mlartifacts", help="where the server keeps artifacts")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--jobs", action="store_true", help="start MLflow's server-side job consumers (the pipeline uses none)")
    s.add_argument("--auth", action="store_true",
                   help=f"accounts: MLflow's basic-auth app (first start: the admin's password in ${ADMIN_PASSWORD_VARIABLE})")
    s.add_argument("--auth-db", default="sqlite:///mlflow-auth.db", help="where users and permissions are kept")
    s.add_argument("--auth-config", default=".mlflow/basic_auth.ini", help="the auth app's ini file (written here)")
    s.add_argument("--default-permission", default="READ", choices=PERMISSIONS,
                   help="what every user may do on others' experiments and models unless granted more")
    s.add_argument("--admin-username", default="admin")
    s.add_argument("--dry-run", action="store_true", help="print the mlflow server command, start nothing")

    s = add("accounts", cmd_accounts, "users and permissions of a server started with --auth (your own credentials: "
                                      "MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD)")
    s.add_argument("action", choices=("add", "grant"), help="add: a user (as the admin); grant: a permission")
    s.add_argument("user")
    s.add_argument("--server", help="http://HOST:PORT (default: $MLFLOW_TRACKING_URI)")
    s.add_argument("--password-env", metavar="VAR", help="add: read the new user's password from this environment "
                                                         "variable (default: ask)")
    s.add_argument("--experiment", help="grant: on this experiment (by name, e.g. bpe_mri)")
    s.add_argument("--model", help="grant: on this registered model (e.g. breastseg-bpe_mri)")
    s.add_argument("--permission", default="EDIT", choices=PERMISSIONS, help="grant: what the user may do")
    return p


#: Libraries whose INFO messages (highdicom's per-SEG notes, MLflow's and Lightning's banners, database
#: migrations) are hidden unless --verbose: their warnings and errors still show.
QUIET_LIBRARIES = ("highdicom", "mlflow", "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                   "alembic", "optuna", "urllib3")


class _QuietLogger(logging.Logger):
    """A library's logger kept at WARNING or above, whatever level the library sets on itself when imported
    (Lightning and MLflow set INFO at import time, which may come after the command starts)."""

    def setLevel(self, level: int | str) -> None:  # noqa: N802 - logging's name
        level = logging.getLevelName(level) if isinstance(level, str) else level
        super().setLevel(max(int(level) if isinstance(level, int) else logging.WARNING, logging.WARNING))


def quiet_libraries(verbose: bool = False) -> None:
    """Library INFO logs off (``verbose``: left as the libraries set them)."""
    if verbose:
        return
    for name in QUIET_LIBRARIES:
        logger = logging.getLogger(name)
        logger.__class__ = _QuietLogger
        logger.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in ("predict", "suggest"):  # a user's command: library banners hidden (jobs keep them in logs)
        quiet_libraries(getattr(args, "verbose", False))
    try:
        args.func(args)
    except InputError as exc:
        print(f"breastseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("breastseg: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
