"""GPU path of the scoring engine: runs where CUDA is available, skips cleanly elsewhere (CI has no GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from winnow.rerank.engine import CrossEncoderEngine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PAIRS_DOCS = ["net revenue increased", "cash flow " * 300, "apple banana cherry", "the claim is false"]


def test_cuda_half_precision_matches_cpu_fp32(tiny_cross_encoder_path):
    cpu = CrossEncoderEngine(tiny_cross_encoder_path, device="cpu")
    gpu = CrossEncoderEngine(tiny_cross_encoder_path, device="cuda")
    assert gpu.device.startswith("cuda") and gpu.dtype in (torch.bfloat16, torch.float16)
    expected = cpu.score("revenue question", PAIRS_DOCS)
    got = gpu.score("revenue question", PAIRS_DOCS)
    assert np.argsort(-got).tolist() == np.argsort(-expected).tolist()
    np.testing.assert_allclose(got, expected, rtol=0.05, atol=0.05)
