# Optuna study per experiment (storage: tracking.optuna_storage); each trial is a nested MLflow run.
rule tune:
    input:
        split="data/splits/{experiment}.json",
        manifest="data/processed/{experiment}/manifest.csv",
    output:
        "results/{experiment}/best_params.json",
    params:
        tune=config["tune"],
        experiment=lambda wc: config["experiments"][wc.experiment],
        train=config["train"],
    log:
        "logs/tune/{experiment}.log",
    threads: config["train"].get("threads", 1)
    resources:
        mem_mb=4000,
        gpu=GPU,
        runtime=120,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} tune {wildcards.experiment} --split {input.split} "
        "--processed-dir data/processed/{wildcards.experiment} --out {output} "
        "--work-dir results/{wildcards.experiment}/tune > {log} 2>&1"
