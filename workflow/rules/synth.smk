# snakemake --lint: {BREASTSEG} and the other workflow constants in shell commands are explained in common.smk.
# Synthetic demo cohort (only when cohort.name is "demo"): DICOM DCE-MRI studies and ultrasound RF, written in
# the real input formats. A checkpoint: the patients it writes are discovered after it has run.
if COHORT["name"] == "demo":

    checkpoint synth:
        output:
            directory(ROOT),
        params:
            reads=stages.synth(SETTINGS),
        log:
            "logs/synth/synth.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../../envs/breastseg.yaml"
        shell:
            "{BREASTSEG} synth {output} > {log} 2>&1"
