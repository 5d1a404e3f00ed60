# Final training with the study's best params; resumes from checkpoints/last.ckpt after an interruption;
# registers the model as a new version of breastseg-<experiment> with alias "challenger".
rule train:
    input:
        split="data/splits/{experiment}.json",
        manifest="data/processed/{experiment}/manifest.csv",
        best="results/{experiment}/best_params.json",
    output:
        model="models/{experiment}/model.json",
        curve="plots/{experiment}/learning_curve.csv",
    params:
        experiment=lambda wc: config["experiments"][wc.experiment],
        train=config["train"],
    log:
        "logs/train/{experiment}.log",
    threads: TRAIN_THREADS
    resources:
        mem_mb=4000,
        gpu=TRAIN_GPU,
        runtime=240,
        **TRAIN_NODES,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{TRAIN_LAUNCH}{BREASTSEG} train {wildcards.experiment} --split {input.split} "
        "--processed-dir data/processed/{wildcards.experiment} --best-params {input.best} "
        "--out-dir models/{wildcards.experiment} --curve {output.curve} > {log} 2>&1"
