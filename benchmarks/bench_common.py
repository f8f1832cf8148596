"""What the benchmark scripts share: the machine's name and the reranker model they time."""

from __future__ import annotations

import platform
from pathlib import Path

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
