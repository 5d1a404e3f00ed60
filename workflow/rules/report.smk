# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# One-page summary of all experiments; `snakemake --report report.html` adds the workflow report.
rule report:
    input:
        evaluations=expand("results/{experiment}/evaluation.json", experiment=EXPERIMENTS),
        decisions=expand("results/{experiment}/decision.json", experiment=EXPERIMENTS),
        comparisons=expand("results/comparisons/{comparison}.json", comparison=COMPARISONS),
        curves=expand("plots/{experiment}/learning_curve.csv", experiment=EXPERIMENTS),
    output:
        report("results/summary.html", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/report/summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} -q report {input.evaluations} --curves {input.curves} --out {output} > {log} 2>&1"
