# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# What to annotate next (`snakemake worklists`, not part of `all`): each experiment's champion, after the gate,
# ranks the converted patients' unannotated slices (MRI) or scans (ultrasound) by its uncertainty
# (params: suggest); the worklist and its montage are also logged on the champion's MLflow run.
rule suggest:
    input:
        decision="results/{experiment}/decision.json",
        interim=lambda wc: converted(dataset_of(wc.experiment)),
    output:
        worklist="results/{experiment}/worklist.csv",
        montage=report("results/{experiment}/worklist.png", caption="../report/worklist.rst",
                       category="Annotation worklists", subcategory="{experiment}"),
    params:
        reads=lambda wc: stages.suggest(SETTINGS, wc.experiment),
        interim=lambda wc: PATHS.interim(dataset_of(wc.experiment)),
        model=lambda wc: model_name(wc.experiment),
    log:
        "logs/suggest/{experiment}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} suggest models:/{params.model}@champion --experiment {wildcards.experiment} "
        "--interim-dir {params.interim} "
        "--out {output.worklist} --montage {output.montage} > {log} 2>&1"


rule worklists:
    input:
        expand("results/{experiment}/worklist.csv", experiment=EXPERIMENTS),
