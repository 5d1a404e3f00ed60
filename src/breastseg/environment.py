"""The software and hardware a run computed on: torch version, CPU model, the CPU's relevant instruction sets.

Results are bit-identical between machines with the same torch version and the same ISA flags (oneDNN and
bf16 kernels are chosen by the instruction sets a CPU offers); :func:`isa_fingerprint` is a short hash of
exactly that, so two runs are expected to agree to the last digit when their fingerprints match.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

#: /proc/cpuinfo flags that change which kernels torch/oneDNN run (vector width, bf16/int8 dot products, AMX).
RELEVANT_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "sve", "sve2", "bf16", "i8mm",  # aarch64
)


def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str | None, set[str]]:
    """(model name, flags) of the first processor listed, or (None, empty set) where there is no such file."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if model is None and key in ("model name", "hardware", "cpu model"):
            model = value.strip() or None
        elif not flags and key in ("flags", "features"):
            flags = set(value.split())
    return model, flags


def environment(precision: str | None = None, *, cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """torch version, CPU model, relevant ISA flags, ``ONEDNN_MAX_CPU_ISA``, ``precision`` and the fingerprint."""
    import torch

    model, flags = _cpuinfo(cpuinfo)
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        capability = None
    env = {
        "torch": torch.__version__,
        "cpu_model": model or platform.processor() or platform.machine(),
        "cpu_isa": sorted(f for f in flags if f in RELEVANT_FLAGS),
        "torch_cpu_capability": capability,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "precision": precision,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    env["isa_fingerprint"] = isa_fingerprint(env)
    return env


def isa_fingerprint(env: dict[str, Any]) -> str:
    """12 hex digits over what decides bit-identity: torch version, ISA flags, oneDNN's ISA cap, torch's kernels."""
    key = {k: env.get(k) for k in ("torch", "cpu_isa", "onednn_max_cpu_isa", "torch_cpu_capability")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def mlflow_tags(env: dict[str, Any]) -> dict[str, str]:
    """The environment as MLflow run tags (``breastseg.torch``, ``breastseg.cpu_isa``, ``breastseg.cpu_model``...)."""
    return {"breastseg.torch": str(env["torch"]), "breastseg.cpu_isa": ",".join(env["cpu_isa"]) or "none",
            "breastseg.cpu_model": str(env["cpu_model"]), "breastseg.isa_fingerprint": env["isa_fingerprint"],
            "breastseg.onednn_max_cpu_isa": str(env["onednn_max_cpu_isa"] or "unset"),
            "breastseg.precision": str(env["precision"])}
