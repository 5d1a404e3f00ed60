# One job per patient (only new or changed patients run: the input is the patient's content fingerprint,
# rewritten only when a raw file of the patient is added, removed or edited): DICOM -> NIfTI + sidecars, or
# RF -> B-mode/entropy maps, then in the same process the network-ready slices of every experiment of the dataset
# (data/processed/<experiment>/<patient>.npz). The `prepared` param holds only what preparation reads
# (data.slices.PREPARED_FROM), so changing a model or training setting reconverts nothing.
def prepared_outputs(dataset):
    return [f"data/processed/{e}/{{patient}}.npz" for e in experiments_of(dataset)]


def preparation(dataset):
    """What preparation reads from each experiment of the dataset (a rerun trigger)."""
    return {e: {k: config["experiments"][e].get(k) for k in PREPARED_FROM} for e in experiments_of(dataset)}


def prepare_args(dataset):
    exps = experiments_of(dataset)
    return f"--prepare {','.join(exps)} --processed-dir data/processed" if exps else ""


# Shell commands are built here, with only per-job fields left to fill in (Snakemake formats every job's command
# several times while it plans: on a 1000-patient cohort each field costs).
_MAPS = us_maps_settings(config)  # with the entropy binning: a new binning reconverts
_US_MAPS_ARGS = (f"--maps {','.join(us_maps_needed(config, EXPERIMENTS))} "
                 f"--dynamic-range-db {_MAPS['dynamic_range_db']} --window-pulses {_MAPS['window_pulses']} "
                 f"--bins {_MAPS['bins']} --entropy-on {_MAPS['entropy_on']}")
_ON_ERROR = config.get("convert", {}).get("on_error", "fail")


rule convert_mri:
    input:
        f"{FINGERPRINTS}/mri/{{patient}}.json",
    output:
        interim=directory("data/interim/mri/{patient}"),
        prepared=prepared_outputs("mri"),
    params:
        on_error=_ON_ERROR,
        prepared=preparation("mri"),
    log:
        "logs/convert/mri/{patient}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        f"{BREASTSEG} -q convert --dce --on-error {_ON_ERROR} {prepare_args('mri')} "
        "--patient-id {wildcards.patient} --fingerprint {input} {output.interim} > {log} 2>&1"


# Any ultrasound layout (RF .npz, OASBUD .mat records, BUSI images, DICOM US, patient folders): one job per
# patient, reading only that patient's files; only the maps the chosen experiments use are computed. The
# commands get the patient's fingerprint file, not raw paths, so no raw name reaches a command line or log.
rule convert_us:
    input:
        f"{FINGERPRINTS}/us/{{patient}}.json",
    output:
        interim=directory("data/interim/us/{patient}"),
        prepared=prepared_outputs("us"),
    params:
        prepared=preparation("us"),
        maps=_MAPS,
        which=us_maps_needed(config, EXPERIMENTS),
    log:
        "logs/convert/us/{patient}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        f"{BREASTSEG} -q us-maps {_US_MAPS_ARGS} {prepare_args('us')} "
        "--patient-id {wildcards.patient} --fingerprint {input} {output.interim} > {log} 2>&1"
