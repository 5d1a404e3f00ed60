# Per-patient conversion (only new or changed patients run: the input is the patient's content fingerprint,
# rewritten only when a raw file of the patient is added, removed or edited): DICOM -> NIfTI + sidecars,
# RF -> B-mode/entropy maps; then per-patient, per-experiment preparation of network-ready slices.
rule convert_mri:
    input:
        lambda wc: fingerprints("mri")[wc.patient],
    output:
        directory("data/interim/mri/{patient}"),
    params:
        on_error=config.get("convert", {}).get("on_error", "fail"),
    log:
        "logs/convert/mri/{patient}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} -q convert --dce --patient-id {wildcards.patient} --on-error {params.on_error} "
        "--fingerprint {input} {output} > {log} 2>&1"


# Any ultrasound layout (RF .npz, OASBUD .mat records, BUSI images, DICOM US, patient folders): one job per
# patient, reading only that patient's files; only the maps the chosen experiments use are computed. The
# commands get the patient's fingerprint file, not raw paths, so no raw name reaches a command line or log.
rule convert_us:
    input:
        lambda wc: fingerprints("us")[wc.patient],
    output:
        directory("data/interim/us/{patient}"),
    params:
        maps={**schema_defaults("us_maps"), **config.get("us_maps", {})},
        which=",".join(us_maps_needed(config, EXPERIMENTS)),
    log:
        "logs/convert/us/{patient}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} -q us-maps --patient-id {wildcards.patient} --maps {params.which} --fingerprint {input} "
        "--dynamic-range-db {params.maps[dynamic_range_db]} --window-pulses {params.maps[window_pulses]} "
        "--bins {params.maps[bins]} --entropy-on {params.maps[entropy_on]} {output} > {log} 2>&1"


rule prepare:
    input:
        lambda wc: f"data/interim/{dataset_of(wc.experiment)}/{wc.patient}",
    output:
        "data/processed/{experiment}/{patient}.npz",
    params:
        experiment=lambda wc: config["experiments"][wc.experiment],
    log:
        "logs/prepare/{experiment}/{patient}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} -q prepare {wildcards.experiment} {input} {output} --patient-id {wildcards.patient} > {log} 2>&1"
