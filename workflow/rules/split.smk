# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# Patient-level, stratified, seeded, append-only split, shared by the experiments of one dataset (so
# entropy and B-mode ultrasound are compared on the same patients); one rule per dataset.
for _dataset in DATASETS:

    rule:
        name:
            f"split_{_dataset}"
        input:
            # the preparation markers of every experiment of the dataset (each lists its prepared patients)
            lambda wc, ds=_dataset: [m for e in experiments_of(ds) for m in prepared(e)],
        output:
            splits=expand(PATHS.split("{experiment}"), experiment=experiments_of(_dataset)),
            manifests=expand(PATHS.manifest("{experiment}"), experiment=experiments_of(_dataset)),
        params:
            dataset=_dataset,
            reads=stages.split(SETTINGS),
            version=lambda wc, ds=_dataset: version_of(ds),
        log:
            f"logs/split/{_dataset}.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=5,
        conda:
            "../../envs/breastseg.yaml"
        shell:
            "{BREASTSEG} -q split {params.dataset} --data-version {params.version} {input} > {log} 2>&1"
