# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# Champion gate: "champion" moves to the challenger only if it is at least as good (register.margin) on the same
# validation patients, each model scored through its own preprocessing (a champion trained with another image size
# is scored on val slices prepared again from data/interim, and one trained on other ultrasound map settings on
# maps made again from the cached envelopes with its own settings). The test set decides nothing: its figures are only copied into the decision (reported_test).
# The decision and both scores go to results/<experiment>/decision.json and to MLflow tags.
rule register:
    input:
        model=PATHS.model("{experiment}"),
        split=PATHS.split("{experiment}"),
        manifest=PATHS.manifest("{experiment}"),
        interim=lambda wc: converted(dataset_of(wc.experiment)),
        evaluation="results/{experiment}/evaluation.json",
    output:
        "results/{experiment}/decision.json",
    params:
        processed=lambda wc: PATHS.processed(wc.experiment),
        reads=lambda wc: stages.register(SETTINGS, wc.experiment),
        interim=lambda wc: PATHS.interim(dataset_of(wc.experiment)),
    log:
        "logs/register/{experiment}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} register {wildcards.experiment} --model {input.model} --split {input.split} "
        "--processed-dir {params.processed} --interim-dir {params.interim} "
        "--evaluation {input.evaluation} --out {output} > {log} 2>&1"
