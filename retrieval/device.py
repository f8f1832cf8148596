"""Which torch device a model runs on: the one asked for, else cuda, then mps, then cpu."""

from __future__ import annotations

import os
from functools import cache


def resolve_device(device: str | None) -> str:
    """``device`` checked by torch, or the best available: cuda, then mps, then cpu."""
    import torch

    if device is not None:
        try:
            return str(torch.device(device))
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"unknown device {device!r}; use e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'") from err
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@cache
def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU computes bf16 natively (AVX512-BF16 or AMX-BF16, e.g. Zen 4, Sapphire Rapids).

    Elsewhere torch emulates bf16 on CPU, which is slower than fp32, so callers keep fp32 there. The
    environment variable ``WINNOW_CPU_BF16`` (``1``/``0``) overrides the detection.
    """
    forced = os.environ.get("WINNOW_CPU_BF16", "").strip().lower()
    if forced in {"1", "true", "yes", "on"}:
        return True
    if forced in {"0", "false", "no", "off"}:
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
