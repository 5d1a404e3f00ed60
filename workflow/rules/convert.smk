# Per-patient conversion (only new patients run): DICOM -> NIfTI + sidecars, RF -> B-mode/entropy maps;
# then per-patient, per-experiment preparation of network-ready slices.
rule convert_mri:
    input:
        lambda wc: raw_files(patients("mri")[wc.patient]),
    output:
        directory("data/interim/mri/{patient}"),
    params:
        raw=lambda wc: str(patients("mri")[wc.patient]),
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
        "'{params.raw}' {output} > {log} 2>&1"


rule convert_us:
    input:
        lambda wc: raw_files(patients("us")[wc.patient]),
    output:
        directory("data/interim/us/{patient}"),
    params:
        maps=config.get("us_maps", {}),
    log:
        "logs/convert/us/{patient}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} -q us-maps --patient-id {wildcards.patient} "
        "--dynamic-range-db {params.maps[dynamic_range_db]} --window-pulses {params.maps[window_pulses]} "
        "--bins {params.maps[bins]} --entropy-on {params.maps[entropy_on]} '{input}' {output} > {log} 2>&1"


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
