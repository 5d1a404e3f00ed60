# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# Conversion in shards (breastseg.data.shards): patients are put in convert.shards shards by their pseudonym, and one
# job converts the new or changed patients of one shard in one process (a BUSI-sized cohort would otherwise start
# one process per image). Its input is the shard's fingerprint file, rewritten only when a raw file of one of its
# patients is added, removed or edited; inside the job only those patients are decoded. No raw path is on a
# command line. Conversion writes a cache that depends on the raw bytes alone (data/interim/<dataset>/<patient>:
# NIfTI volumes, or the RF envelope / B-mode image); preparation makes each experiment's slices from it, so an
# image_size, channels or us_maps change prepares again and decodes nothing, and a training or model setting
# touches neither.
for _dataset in DATASETS:

    rule:
        name:
            f"convert_{_dataset}"
        input:
            f"{FINGERPRINTS}/{_dataset}/shard-{{shard}}.json",
        output:
            f"{PATHS.interim(_dataset)}/shard-{{shard}}.json",
        params:
            dataset=_dataset,  # the shell command is formatted when the job runs, after the loop has ended
            reads=stages.convert(SETTINGS, _dataset),
        log:
            f"logs/convert/{_dataset}/shard-{{shard}}.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=60,
        conda:
            "../../envs/breastseg.yaml"
        shell:
            "{BREASTSEG} -q convert-shard {params.dataset} {input} {output} > {log} 2>&1"


# The network's slices of one experiment for one shard (data/processed/<experiment>/<patient>.npz), made from the
# cache; `params.prepared` holds only what preparation reads (breastseg.stages.prepare) (channels, image_size and, for ultrasound, the us_maps
# settings of its channels), so changing one experiment's settings prepares that experiment alone.
PREPARATION = {e: stages.prepare(SETTINGS, e) for e in EXPERIMENTS}


rule prepare:
    input:
        lambda wc: f"{PATHS.interim(dataset_of(wc.experiment))}/shard-{wc.shard}.json",
    output:
        PATHS.processed("{experiment}", "shard-{shard}.json"),
    params:
        prepared=lambda wc: PREPARATION[wc.experiment],
    log:
        "logs/prepare/{experiment}/shard-{shard}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/breastseg.yaml"
    shell:
        "{BREASTSEG} -q prepare-shard {wildcards.experiment} {input} {output} > {log} 2>&1"
