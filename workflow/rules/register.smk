# Champion gate: "champion" moves to the challenger only if it is at least as good (register.margin) on the
# same test patients; the decision and both scores go to results/<experiment>/decision.json and MLflow tags.
rule register:
    input:
        model="models/{experiment}/model.json",
        metrics="metrics/{experiment}.json",
        split="data/splits/{experiment}.json",
    output:
        "results/{experiment}/decision.json",
    params:
        register=config["register"],
    log:
        "logs/register/{experiment}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} register {wildcards.experiment} --model {input.model} --metrics {input.metrics} "
        "--split {input.split} --processed-dir data/processed/{wildcards.experiment} --out {output} > {log} 2>&1"
