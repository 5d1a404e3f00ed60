# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# Final training with the study's best params; resumes from checkpoints/last.ckpt after an interruption.
# The first seed of run.seeds registers the model as a new version of breastseg-<experiment> with alias
# "challenger"; further seeds (train_seed) train the same network on the same split, unregistered, so that the
# comparisons can say how much a result owes to the seed. With several seeds, MLflow holds one parent run per
# experiment and a nested run per seed.
rule train:
    input:
        split=PATHS.split("{experiment}"),
        manifest=PATHS.manifest("{experiment}"),
        best="results/{experiment}/best_params.json",
    output:
        model=PATHS.model("{experiment}"),
        curve="plots/{experiment}/learning_curve.csv",
    params:
        processed=lambda wc: PATHS.processed(wc.experiment),
        out_dir=lambda wc: PATHS.models(wc.experiment),
        reads=lambda wc: stages.train(SETTINGS, wc.experiment),
        seed=SEEDS[0],
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
        "--processed-dir {params.processed} --best-params {input.best} --seed {params.seed} "
        "--out-dir {params.out_dir} --curve {output.curve} > {log} 2>&1"


rule train_seed:
    input:
        split=PATHS.split("{experiment}"),
        manifest=PATHS.manifest("{experiment}"),
        best="results/{experiment}/best_params.json",
    output:
        model="models/{experiment}/seeds/{seed}/model.json",
        curve="plots/{experiment}/seeds/{seed}/learning_curve.csv",
    wildcard_constraints:
        seed="|".join(map(str, EXTRA_SEEDS)) or "-",
    params:
        processed=lambda wc: PATHS.processed(wc.experiment),
        out_dir=lambda wc: PATHS.models(wc.experiment, "seeds", wc.seed),
        reads=lambda wc: stages.train(SETTINGS, wc.experiment),
    log:
        "logs/train/{experiment}-seed{seed}.log",
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
        "--processed-dir {params.processed} --best-params {input.best} --seed {wildcards.seed} "
        "--no-register --out-dir {params.out_dir} --curve {output.curve} "
        "> {log} 2>&1"
