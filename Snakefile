# breastseg workflow: synth -> convert per shard of patients -> prepare per experiment and shard -> split -> tune -> train -> evaluate -> register
# -> report
# Configuration: params.yaml (also DVC's params), validated against the package's schema (workflow/schemas/ links
# to it) and completed with its defaults when the DAG is built; rules read the result from one file (--params).
import os
import re
import sys
from pathlib import Path

configfile: "params.yaml"


report: "workflow/report/workflow.rst"

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/suggest.smk"


onstart:
    shell(f"{BREASTSEG} -q tracking-init")


# Conversion and preparation only (e.g. `snakemake --cores all prepared` after adding patients).
rule prepared:
    input:
        lambda wc: [m for e in EXPERIMENTS for m in prepared(e)],


rule all:
    default_target: True
    input:
        expand(PATHS.metrics("{experiment}"), experiment=EXPERIMENTS),
        expand("results/{experiment}/decision.json", experiment=EXPERIMENTS),
        expand("results/comparisons/{comparison}.json", comparison=COMPARISONS),
        "results/summary.html",
