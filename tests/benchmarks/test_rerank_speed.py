"""benchmarks/rerank_speed.py's GEMM probe: the raw fp32 / int8 / bf16 matrix-product throughput that bounds
what a quantised path can gain on the CPU it runs on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gemm_probe_reports_every_kernel_and_the_int8_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    script = ROOT / "benchmarks" / "rerank_speed.py"
    spec = importlib.util.spec_from_file_location("rerank_speed_probe", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "rerank_speed_probe", module)
    spec.loader.exec_module(module)
    probe = module.gemm_probe(1, m=64, k=32, n=48, iters=2)
    assert probe["shape"] == [64, 32, 48] and probe["threads"] == 1
    for key in ("ort_fp32_gflops", "ort_int8_gflops", "torch_float32_gflops", "torch_bfloat16_gflops"):
        assert probe[key] > 0, key
    assert probe["ort_int8_over_fp32"] == pytest.approx(
        probe["ort_int8_gflops"] / probe["ort_fp32_gflops"], abs=0.01
    )
