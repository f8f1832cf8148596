"""``winnow eval --ray``: the rerank pass on Ray actors gives the same report as in one process."""

from __future__ import annotations

import json

import pytest

from winnow.api.cli import main
from winnow.retrieval.corpus import sample_dataset_path

pytest.importorskip("ray")


def _eval(capsys, tmp_path, name: str, reranker: str, *extra: str) -> dict:
    argv = ["eval", "--dataset", str(sample_dataset_path()), "--split", "test", "--first-stage", "bm25"]
    argv += ["--reranker", reranker, "--depth", "10,30", "--max-length", "64", "--device", "cpu"]
    argv += ["--out", str(tmp_path / f"{name}.json"), "--json", *extra]
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_with_ray_gives_the_single_process_metrics(ray_local, tmp_path, capsys, tiny_cross_encoder_path):
    single = _eval(capsys, tmp_path, "single", tiny_cross_encoder_path)
    on_ray = _eval(capsys, tmp_path, "ray", tiny_cross_encoder_path, "--ray", "local", "--ray-workers", "2")
    assert on_ray["queries"] == single["queries"] > 10
    assert on_ray["metrics"].keys() == single["metrics"].keys()
    for stage, values in single["metrics"].items():
        assert on_ray["metrics"][stage] == pytest.approx(values, abs=1e-9), stage
    assert on_ray["per_query"] == single["per_query"]
    assert on_ray["latency_ms"]["rerank_p50"] > 0
