"""benchmarks/index_speed.py end to end on a tiny synthetic set: every figure of the on-disk sections (open
time and RSS, search latency, filtered search at 1/10/50 %, single-document writes) lands in the JSON with
sane values, the work folder is emptied, and ``--resume`` finds everything recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "index_speed.py"
TINY = [
    "--sizes", "2000", "--real", "", "--indexes", "ivf-sq8", "--queries", "40",
    "--single-queries", "10", "--repeats", "1", "--time-budget", "0.2", "--overhead-repeats", "1",
    "--overhead-seconds", "0.02", "--overhead-min-pairs", "2", "--nprobe", "4", "--filter-queries", "8",
    "--filter-budget", "0.5", "--writes", "3", "--write-budget", "20", "--threads", "1",
]  # fmt: skip


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *TINY, "--out", str(tmp_path / "out"), "--work-dir"]
    done = subprocess.run(
        [*command, str(tmp_path / "work"), *extra], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp_path = tmp_path_factory.mktemp("index_speed")
    _run(tmp_path, "--fresh")
    return tmp_path, json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))


def test_every_on_disk_figure_is_recorded_with_sane_values(run: tuple[Path, dict[str, Any]]) -> None:
    tmp_path, report = run
    entry = report["datasets"]["synthetic-2k"]
    assert set(entry["indexes"]) == {"ivf-sq8"}  # Flat is built (the ground truth), not measured
    features = entry["environment"]["cpu_features"]
    assert features["name"] and features["logical_cores"] >= 1 and "AVX2" in features["isa"]
    for kind, idx in entry["indexes"].items():
        assert "probe_error" not in idx, idx.get("probe_error")
        disk = idx["disk"]
        assert disk["save_s"] > 0 and disk["open_s"] > 0
        assert disk["dir_bytes"] > disk["files_bytes"]["vectors.faiss"] > 0
        assert disk["files_bytes"]["documents.sqlite"] > 0
        assert disk["rss_before_mib"] > 0 and disk["rss_after_open_mib"] > disk["rss_before_mib"]
        assert disk["rss_open_mib"] > 0

        latency = idx["latency"]
        for key in ("batch1", f"batch{entry['settings']['batch']}"):
            figures = latency[key]
            assert figures["calls"] >= 1 and figures["qps"] > 0
            assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]

        filtered = idx["filtered"]
        assert filtered["resolver"]
        assert set(filtered["selectivity"]) == {"1", "10", "50"}
        for pct, row in filtered["selectivity"].items():
            assert row["matching"] == 2000 * int(pct) // 100
            assert row["queries"] >= 5
            assert row["all_k_results"], (kind, pct, row)  # k results whenever >= k documents match
            assert row["queries_with_k_results"] == row["queries"]
            assert row["results_outside_filter"] == 0
            assert row["same_keys_as_by_hand"] and 1 <= row["resolves"] <= row["queries"]
            assert 0.0 <= row["recall_at_k"] <= 1.0
            for part in ("resolve", "search", "total", "keys_where_by_hand"):
                assert 0 < row[part]["p50_ms"] <= row[part]["p99_ms"]
            if int(pct) < 50:  # at most 200 documents match: searched exactly, whatever the index
                assert row["recall_at_k"] == 1.0

        writes = idx["writes"]
        assert writes["done"] == writes["asked"] == 3
        assert writes["documents_after"] == writes["documents_before"] + 3 == 2003
        assert 0 < writes["p50_ms"] <= writes["p99_ms"]
        assert {"vectors.faiss", "documents.sqlite"} <= set(writes["files"])
        assert writes["files"]["vectors.faiss"]["bytes_after"] > 0
    assert not (tmp_path / "work").exists()  # the saved indexes are gone, and the folder with them

    markdown = (tmp_path / "out.md").read_text(encoding="utf-8")
    for heading in ("RSS growth MiB", "batch 1 p50 ms", "resolve p50 / p99 ms", "writes done / asked"):
        assert heading in markdown


def test_resume_skips_what_is_recorded(run: tuple[Path, dict[str, Any]]) -> None:
    tmp_path, report = run
    done = _run(tmp_path, "--resume")
    assert "everything already recorded" in done.stderr
    again = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert again["datasets"]["synthetic-2k"]["indexes"] == report["datasets"]["synthetic-2k"]["indexes"]
