"""Which torch device a model runs on: the one asked for, else cuda, then mps, then cpu."""

from __future__ import annotations


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
