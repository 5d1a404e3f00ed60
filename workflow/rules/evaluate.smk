# Test split only: metrics/<experiment>.json (DVC metrics), per-case CSV and overlay figure.
rule evaluate:
    input:
        model="models/{experiment}/model.json",
        split="data/splits/{experiment}.json",
    output:
        metrics="metrics/{experiment}.json",
        per_case="results/{experiment}/per_case.csv",
        figure=report("results/{experiment}/overlays.png", caption="../report/overlays.rst", category="Evaluation",
                      subcategory="{experiment}"),
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
        "--processed-dir data/processed/{wildcards.experiment} --metrics {output.metrics} "
        "--out-dir results/{wildcards.experiment} > {log} 2>&1"
