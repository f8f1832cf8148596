"""benchmarks/quality/gpu_train.py (``make gpu-train``) in its CPU smoke configuration, with tiny models."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import DATASETS_DIR

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "quality" / "gpu_train.py"
SETS = ("scifact", "checkthat2020-task2", "arguana", "abt-buy", "tatqa", "financebench")

pytestmark = [
    pytest.mark.slow,
    # 66 s of CPU time (user + sys) measured; 5-8 min of wall clock on a machine at load average 12-22
    pytest.mark.timeout(1800),
    pytest.mark.integration,
    pytest.mark.skipif(
        not all((DATASETS_DIR / name / "corpus.jsonl").is_file() for name in (*SETS, "squad-v1.1")),
        reason=f"shared datasets not found under {DATASETS_DIR}",
    ),
]


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory, tiny_cross_encoder_path, tiny_bi_encoder_path) -> Path:
    out = tmp_path_factory.mktemp("gpu-train") / "out"
    command = [
        sys.executable,
        str(SCRIPT),
        "--out",
        str(out),
        "--smoke",
        "--datasets",
        str(DATASETS_DIR),
        "--base",
        tiny_cross_encoder_path,
        "--embedder",
        tiny_bi_encoder_path,
        "--shipped",
        tiny_cross_encoder_path,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1700)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "do not ship: not a complete measurement" in done.stdout
    return out


def test_output_folder_holds_shards_card_reports_summary_and_log(smoke_out: Path):
    model = smoke_out / "model"
    assert list(model.glob("*.safetensors")) and (model / "config.json").is_file()
    card = json.loads((model / "winnow.json").read_text())
    assert card["max_length"] == 128 and card["training"]["global_steps"] == 2
    assert card["interpolation"]["weight"] == 0.5  # the tiny "shipped" model has no card: the stated prior
    for name in SETS:
        for model_name in ("candidate", "shipped"):
            report = json.loads((smoke_out / "reports" / f"{name}_{model_name}.json").read_text())
            assert report["queries"] == 2 and report["metrics"]["reranked"] is not None
            assert (smoke_out / "reports" / f"{name}_{model_name}.md").is_file()
    summary = json.loads((smoke_out / "summary.json").read_text())
    assert summary["smoke"] is True
    assert [c["dataset"] for c in summary["zero_shot"]] == list(SETS)
    assert all(c["candidate_vs_shipped"]["n"] == 2 for c in summary["zero_shot"])
    assert summary["decision"]["ship"] is False
    assert set(summary["phases_seconds"]) == {"load_squad", "mine", "train", "export", "eval"}
    sources = {s["name"] for s in summary["data"]["sources"]}
    assert {"squad-v1.1/train+bm25", "squad-v1.1/train+dense", "train.jsonl"} <= sources
    log = (smoke_out / "train.log").read_text()
    assert "phase train: done" in log and "phase eval: done" in log
    assert list((smoke_out / ".work" / "model" / "checkpoints").glob("checkpoint-*"))  # a rerun resumes


def test_bundle_packs_what_the_device_tool_returns(smoke_out: Path, tmp_path: Path):
    spec = importlib.util.spec_from_file_location("gpu_train", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    copy = tmp_path / "out"
    subprocess.run(["cp", "-r", str(smoke_out), str(copy)], check=True)
    parts = module.bundle(copy)
    assert parts and all((copy / p).stat().st_size <= module.BUNDLE_PART for p in parts)
    assert not (copy / "model").exists() and not (copy / "reports").exists()
    joined = tmp_path / "joined.tar"
    joined.write_bytes(b"".join((copy / p).read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        names = tar.getnames()
    assert "model/winnow.json" in names and "reports/scifact_candidate.json" in names
