# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# Test split only: metrics/<experiment>.json (DVC metrics: ~10 flat headline numbers), the full summary in
# results/<experiment>/evaluation.json, per-slice and per-patient CSVs, figures; one rule per dataset because the
# MRI read-out adds a BPE calibration figure and reads the converted phases (the degree of enhancement). Then
# paired comparisons (entropy vs B-mode).
for _dataset in DATASETS:

    rule:
        name:
            f"evaluate_{_dataset}"
        input:
            model=PATHS.model("{experiment}"),
            split=PATHS.split("{experiment}"),
            # MRI: the degree of BPE reads the converted phases (data/interim/mri, beside data/processed)
            interim=lambda wc: converted("mri") if dataset_of(wc.experiment) == "mri" else [],
            # the further run.seeds: metrics/<experiment>.json is the mean over all seeds
            seeds=lambda wc: [f"results/{wc.experiment}/seeds/{s}/evaluation.json" for s in EXTRA_SEEDS],
        output:
            metrics=PATHS.metrics("{experiment}"),
            evaluation="results/{experiment}/evaluation.json",
            per_case="results/{experiment}/per_case.csv",
            per_patient="results/{experiment}/per_patient.csv",
            dice_plot="plots/{experiment}/dice_per_patient.csv",
            figures=[
                report("results/{experiment}/overlays.png", caption="../report/overlays.rst",
                       category="Evaluation", subcategory="{experiment}"),
                report("results/{experiment}/dice_boxplot.png", caption="../report/boxplot.rst",
                       category="Evaluation", subcategory="{experiment}"),
                *([report("results/{experiment}/bpe_calibration.png", caption="../report/calibration.rst",
                          category="Evaluation", subcategory="{experiment}")] if _dataset == "mri" else []),
            ],
        wildcard_constraints:
            experiment="|".join(experiments_of(_dataset)),
        params:
            processed=lambda wc: PATHS.processed(wc.experiment),
            out_dir=lambda wc: PATHS.results(wc.experiment),
            reads=lambda wc: stages.evaluate(SETTINGS, wc.experiment),
        log:
            "logs/evaluate/{experiment}.log",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        conda:
            "../../envs/breastseg.yaml"
        shell:
            "{BREASTSEG} evaluate {wildcards.experiment} --model {input.model} --split {input.split} "
            "--processed-dir {params.processed} --metrics {output.metrics} "
            "--evaluation {output.evaluation} --out-dir {params.out_dir} "
            "--dice-plot {output.dice_plot}"
            + (" --seed-evaluation {input.seeds}" if EXTRA_SEEDS else "") + " > {log} 2>&1"


# The further seeds of run.seeds: the same test patients, tables only; their runs nest under their trainings.
rule evaluate_seed:
    input:
        model="models/{experiment}/seeds/{seed}/model.json",
        split=PATHS.split("{experiment}"),
        interim=lambda wc: converted("mri") if dataset_of(wc.experiment) == "mri" else [],
    output:
        evaluation="results/{experiment}/seeds/{seed}/evaluation.json",
        headline="results/{experiment}/seeds/{seed}/headline.json",
        per_case="results/{experiment}/seeds/{seed}/per_case.csv",
        per_patient="results/{experiment}/seeds/{seed}/per_patient.csv",
    wildcard_constraints:
        seed="|".join(map(str, EXTRA_SEEDS)) or "-",
    params:
        processed=lambda wc: PATHS.processed(wc.experiment),
        out_dir=lambda wc: PATHS.results(wc.experiment, "seeds", wc.seed),
        reads=lambda wc: stages.evaluate(SETTINGS, wc.experiment),
    log:
        "logs/evaluate/{experiment}-seed{seed}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} evaluate {wildcards.experiment} --model {input.model} --split {input.split} "
        "--processed-dir {params.processed} --metrics {output.headline} "
        "--evaluation {output.evaluation} --out-dir {params.out_dir} "
        "--no-figures > {log} 2>&1"


COMPARISONS = {c["name"]: c for c in config["evaluation"]["comparisons"]
               if c["a"] in EXPERIMENTS and c["b"] in EXPERIMENTS}


rule compare:
    input:
        lambda wc: [f for e in (COMPARISONS[wc.comparison]["a"], COMPARISONS[wc.comparison]["b"])
                    for f in seed_results(e, "per_patient.csv")],
        lambda wc: [f"results/{e}/evaluation.json" for e in (COMPARISONS[wc.comparison]["a"],
                                                               COMPARISONS[wc.comparison]["b"])],
    output:
        json="results/comparisons/{comparison}.json",
        table="results/comparisons/{comparison}.md",
        figure=report("results/comparisons/{comparison}.png", caption="../report/comparison.rst",
                      category="Comparisons"),
    params:
        pair=lambda wc: COMPARISONS[wc.comparison],
        reads=lambda wc: stages.compare(SETTINGS, COMPARISONS[wc.comparison]),
    log:
        "logs/compare/{comparison}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} -q compare {wildcards.comparison} {params.pair[a]} {params.pair[b]} "
        "--results-dir results --out-dir results/comparisons --seeds {SEEDS_ARG} > {log} 2>&1"
