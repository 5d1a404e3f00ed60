# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# Optuna: one study per experiment (storage: tracking.optuna_storage), each trial a nested MLflow run under the
# study's parent run, until the study holds tune.n_trials finished trials; the best trial's parameters go to
# results/<experiment>/best_params.json for `train`.
# - tune.workers == 1: one `tune` job creates (or reopens) the study, runs the trials and writes the best
#   parameters (one process: three would each pay the imports again).
# - tune.workers > 1: `study` creates the study once; tune.workers `tune` jobs (worker wildcard) share it;
#   `best_params` closes it.
TUNE_WORKERS = int(config["tune"]["workers"])


if TUNE_WORKERS == 1:

    rule tune:
        input:
            split=PATHS.split("{experiment}"),
            manifest=PATHS.manifest("{experiment}"),
        output:
            study="results/{experiment}/tune/study.json",
            worker="results/{experiment}/tune/worker-0.json",
            best="results/{experiment}/best_params.json",
        params:
            processed=lambda wc: PATHS.processed(wc.experiment),
            work_dir=lambda wc: PATHS.results(wc.experiment, "tune"),
            reads=lambda wc: stages.tune(SETTINGS, wc.experiment),
        log:
            "logs/tune/{experiment}/worker-0.log",
        threads: config["train"]["threads"]
        resources:
            mem_mb=4000,
            gpu=GPU,
            runtime=120,
        conda:
            "../../envs/breastseg.yaml"
        shell:
            "{BREASTSEG} tune {wildcards.experiment} --study {output.study} --best-params {output.best} "
            "--worker 0 --split {input.split} --processed-dir {params.processed} "
            "--out {output.worker} --work-dir {params.work_dir} > {log} 2>&1"


else:

    rule study:
        input:
            split=PATHS.split("{experiment}"),
            manifest=PATHS.manifest("{experiment}"),
        output:
            "results/{experiment}/tune/study.json",
        params:
            processed=lambda wc: PATHS.processed(wc.experiment),
            reads=lambda wc: stages.tune(SETTINGS, wc.experiment),
        log:
            "logs/tune/{experiment}/study.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            "../../envs/breastseg.yaml"
        shell:
            "{BREASTSEG} study {wildcards.experiment} --split {input.split} "
            "--processed-dir {params.processed} --out {output} > {log} 2>&1"

    rule tune:
        input:
            study="results/{experiment}/tune/study.json",
            split=PATHS.split("{experiment}"),
        output:
            "results/{experiment}/tune/worker-{worker}.json",
        params:
            processed=lambda wc: PATHS.processed(wc.experiment),
            work_dir=lambda wc: PATHS.results(wc.experiment, "tune"),
            reads=lambda wc: stages.tune(SETTINGS, wc.experiment),
        log:
            "logs/tune/{experiment}/worker-{worker}.log",
        threads: config["train"]["threads"]
        resources:
            mem_mb=4000,
            gpu=GPU,
            runtime=120,
        conda:
            "../../envs/breastseg.yaml"
        shell:
            "{BREASTSEG} tune {wildcards.experiment} --study {input.study} --worker {wildcards.worker} "
            "--split {input.split} --processed-dir {params.processed} --out {output} "
            "--work-dir {params.work_dir} > {log} 2>&1"

    rule best_params:
        input:
            study="results/{experiment}/tune/study.json",
            workers=expand("results/{{experiment}}/tune/worker-{worker}.json", worker=range(TUNE_WORKERS)),
        output:
            "results/{experiment}/best_params.json",
        log:
            "logs/tune/{experiment}/best_params.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            "../../envs/breastseg.yaml"
        shell:
            "{BREASTSEG} best-params {wildcards.experiment} --study {input.study} --out {output} > {log} 2>&1"
