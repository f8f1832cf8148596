"""What the benchmark scripts share: the machine's name and features, and the reranker model they time."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# A partially trained cross-encoder from an earlier CPU run, used when winnow-general is not installed.
CHECKPOINT = ROOT / "work" / "general" / "checkpoints" / "checkpoint-300"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# /proc/cpuinfo flags worth reporting for vector search and inference, and the name each is shown under
ISA_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512F",
    "avx512bw": "AVX-512BW",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
}


def cpu_features() -> dict[str, Any]:
    """The CPU's name, logical and physical cores, and which ``ISA_FLAGS`` it has (``/proc/cpuinfo``;
    flags and physical cores are ``None`` where that file is missing)."""
    flags: set[str] | None = None
    physical: set[tuple[str, str]] = set()
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        info = ""
    package = core = ""
    for line in info.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "flags" and flags is None:
            flags = set(value.split())
        elif key == "physical id":
            package = value
        elif key == "core id":
            core = value
            physical.add((package, core))
    return {
        "name": cpu_name(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
        "isa": None if flags is None else {label: flag in flags for flag, label in ISA_FLAGS.items()},
    }


def isa_summary(features: dict[str, Any]) -> str:
    """``features``' ISA flags in a line: those present, then those absent."""
    isa = features.get("isa")
    if not isa:
        return "ISA flags unknown"
    has = [label for label, present in isa.items() if present]
    lacks = [label for label, present in isa.items() if not present]
    return f"has {', '.join(has) or 'none of them'}; lacks {', '.join(lacks) or 'none'}"


def device_name(device: str) -> str:
    """The GPU's name for a CUDA device, else the CPU's."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def fresh_minilm(folder: Path) -> str:
    """The packaged MiniLM-L6 with a seeded fresh scoring head, saved under ``folder`` (speed only)."""
    import torch
    from sentence_transformers import CrossEncoder

    from winnow.retrieval.embedder import packaged_minilm_path

    torch.manual_seed(0)
    out = folder / "minilm-l6-cross-encoder"
    CrossEncoder(packaged_minilm_path(), num_labels=1).save(str(out))
    return str(out)


def pick_model(requested: str | None, tmp: Path) -> tuple[str, str]:
    """(model folder or name, a note for the report): ``requested``, else the shipped winnow-general, else
    the earlier CPU checkpoint, else the packaged MiniLM with a fresh head saved under ``tmp``."""
    from winnow.rerank.models import DEFAULT_RERANKER, resolve_model, shipped_models

    if requested:
        return requested, requested
    if DEFAULT_RERANKER in shipped_models():
        return resolve_model(DEFAULT_RERANKER), f"{DEFAULT_RERANKER} (winnow's shipped general reranker)"
    if CHECKPOINT.is_dir():
        return str(CHECKPOINT), "work/general/checkpoints/checkpoint-300 (MiniLM-L6, partially trained)"
    note = "packaged MiniLM-L6 with a fresh seeded head (speed only; quality not meaningful)"
    return fresh_minilm(tmp), note
