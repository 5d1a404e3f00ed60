# Set-up shared by the rule files (imports, the resolved configuration, the cohort's patients and shards, and the
# functions rules use for their inputs); no rules here. Included first by the Snakefile.
#
# Rule shell commands start with {BREASTSEG} (the CLI with --params naming the resolved configuration) and some use
# {SEEDS_ARG} or {TRAIN_LAUNCH}: `snakemake --lint` asks for these in `params:`. They are constants of the
# workflow, not parameters of a job's computation: the configuration they name reaches the jobs through that
# file, and the rules' `params:` carry what each job reads from it, so changing a setting reruns exactly the jobs
# that read it. Moving the constants into `params:` would add nothing to provenance.
from breastseg import stages
from breastseg.config import Settings, key_location, resolve_params, selected_experiments, write_effective_params
from breastseg.data.cohort import check_cohort, check_root, data_version, discover, write_fingerprints
from breastseg.data.ledger import migrate_legacy, withdrawn, workspace_key
from breastseg.errors import InputError
from breastseg.paths import PATHS, model_name


def builds_only(argv):
    """True for a Snakemake command line that builds the DAG without running jobs (-n, --dag, --lint, ...)."""
    flags = {"--dry-run", "--dryrun", "--dag", "--rulegraph", "--filegraph", "--d3dag", "--lint", "--summary",
             "--detailed-summary", "--list", "--list-rules", "--list-target-rules", "--report", "-S", "-D", "-l"}
    return any(a in flags or re.fullmatch(r"-[A-Za-z]*n[A-Za-z]*", a) for a in argv)


def stop(exc):
    """One line and a non-zero exit while the DAG is built, before any job runs."""
    sys.stderr.write(f"breastseg: error: {exc}\n")
    sys.exit(2)  # bad input: status 2, as every breastseg command


try:
    SOURCE = "config (params.yaml and --config/--configfile)"
    RESOLVED = resolve_params(config, source=SOURCE)  # validated, every default filled (once, here)
    config.clear()
    config.update(RESOLVED)
    EXPERIMENTS = selected_experiments(config, source=SOURCE)  # run.experiments, else every experiment
    # Every section as a typed, frozen object: each rule's `params:` is what its stage reads
    # (breastseg.stages), so a changed setting reruns exactly the jobs that read it.
    SETTINGS = Settings.from_params(config)
except InputError as exc:
    if getattr(exc, "key", None):  # the file and line that set the key (--config values have none)
        files = [os.path.relpath(f) for f in workflow.configfiles]
        exc = InputError(key_location(files, exc.key) or "--config", exc.reason)
    stop(exc)

COHORT = config["cohort"]
# Training seeds (run.seeds, default [train.seed]): the first seed's model is the registered challenger; the
# others are trained and evaluated on the same split so that comparisons carry an interval over seeds.
SEEDS = [int(s) for s in config["run"]["seeds"]]
EXTRA_SEEDS = SEEDS[1:]
SEEDS_ARG = " ".join(map(str, SEEDS))
ROOT = COHORT["root"]
DATASETS = sorted({config["experiments"][e]["dataset"] for e in EXPERIMENTS})
# Rules read the configuration in force (params.yaml plus --config/--configfile) from one file.
EFFECTIVE_PARAMS = write_effective_params(config, ".snakemake/breastseg/params.yaml")
BREASTSEG = f"breastseg --params {EFFECTIVE_PARAMS}"


# Resources the cluster profiles map (workflow/profiles/slurm): a tune worker trains on one device; `train` runs
# train.devices processes per node (DDP) on train.num_nodes nodes, started by srun when it spans several nodes.
_TRAIN = config["train"]
_ON_GPU = _TRAIN["accelerator"] in ("gpu", "cuda")
_DEVICES = _TRAIN["devices"] if isinstance(_TRAIN["devices"], int) and _TRAIN["devices"] > 0 else 1
_NODES = int(_TRAIN["num_nodes"])
GPU = 1 if _ON_GPU else 0
TRAIN_GPU = _DEVICES if _ON_GPU and _NODES == 1 else 0
TRAIN_THREADS = int(_TRAIN["threads"]) * (_DEVICES if _NODES == 1 else 1)
TRAIN_LAUNCH = "srun " if _NODES > 1 else ""
TRAIN_NODES = {} if _NODES == 1 else {
    "nodes": _NODES, "tasks": _NODES * _DEVICES, "mpi": "srun",
    "slurm_extra": f"--ntasks-per-node={_DEVICES}" + (f" --gpus-per-node={_DEVICES}" if _ON_GPU else ""),
}


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    patient=r"P[0-9a-f]{12}",
    shard=r"\d{2,3}",
    seed=r"\d+",
    worker=r"\d+",
    comparison=r"[a-z][a-z0-9_]*",


def experiments_of(dataset):
    return [e for e in EXPERIMENTS if config["experiments"][e]["dataset"] == dataset]


def dataset_of(experiment):
    return config["experiments"][experiment]["dataset"]


# The pseudonym key, checked against the cohort's versioned split ledgers (data/splits/<cohort>/) before any job
# runs: another key than the ledger's, or a missing key file where a ledger exists, stops the run in one line.
try:
    if COHORT["name"] != "demo":
        check_root(SETTINGS.cohort)  # before any key: a wrong folder stops here, with nothing written
    # Only a run that executes jobs writes the key file: a dry run, the DAG drawn, a lint or a listing build the
    # DAG with a provisional key (Snakemake tells its executor apart only after this file is read: its argv here).
    KEY = workspace_key(COHORT, DATASETS, create=not builds_only(sys.argv[1:]))
except InputError as exc:
    stop(exc)


def discover_patients(dataset):
    """Pseudonym -> RawPatient, without the patients withdrawn from the cohort (breastseg withdraw)."""
    gone = withdrawn(PATHS.splits(), COHORT["name"], dataset)
    found = discover(ROOT, dataset, KEY.key, COHORT.get("patient_map"))
    return {pid: p for pid, p in found.items() if pid not in gone}


# A user cohort is discovered once, here: no patient for a chosen experiment, or an entropy experiment on
# B-mode-only data, stops the run with one line before any job starts. A ledger from before ledgers were
# versioned is moved to the cohort's path (or refused when it was made with another key).
if COHORT["name"] != "demo":
    try:
        FOUND = {dataset: discover_patients(dataset) for dataset in DATASETS}
        check_cohort(SETTINGS, EXPERIMENTS, FOUND)
        for _dataset in DATASETS:
            migrate_legacy(COHORT, _dataset, KEY, FOUND[_dataset])
    except InputError as exc:
        stop(exc)


def patients(dataset):
    """Pseudonym -> RawPatient; for the demo cohort, only after the synth checkpoint has run."""
    if COHORT["name"] == "demo":
        checkpoints.synth.get()
        return discover_patients(dataset)
    return FOUND[dataset]


FINGERPRINTS = Path(".snakemake/breastseg/fingerprints")
SHARDS = int(config["convert"]["shards"])
_FINGERPRINTED = {}


def fingerprints(dataset):
    """Shard -> a file rewritten only when the raw content of one of its patients changes (the convert rules'
    input); only shards that hold patients."""
    if dataset not in _FINGERPRINTED:
        _FINGERPRINTED[dataset] = write_fingerprints(patients(dataset), FINGERPRINTS / dataset, SHARDS,
                                                     cache_file=FINGERPRINTS / "digests.json")
    return _FINGERPRINTED[dataset]


def converted(dataset):
    """The conversion markers of a dataset's shards (each lists its converted patients)."""
    return [f"{PATHS.interim(dataset)}/shard-{s}.json" for s in fingerprints(dataset)]


def prepared(experiment):
    """The preparation markers of an experiment's shards (each lists its prepared patients)."""
    return [f"{PATHS.processed(experiment)}/shard-{s}.json" for s in fingerprints(dataset_of(experiment))]


def version_of(dataset):
    """The data version new patients of this run join under (the cohort's DVC hash, else a content digest)."""
    return data_version(ROOT, fingerprints(dataset).values())


def seed_results(experiment, name):
    """``name`` (per_patient.csv, evaluation.json) of every seed's evaluation of ``experiment``."""
    return [f"{PATHS.results(experiment)}/{name}", *(f"{PATHS.results(experiment)}/seeds/{s}/{name}" for s in EXTRA_SEEDS)]
