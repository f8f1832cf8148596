"""``winnow index --ray local`` from the command line, into PostgreSQL (the actors write) and into an index
directory (the driver writes), on the session's Ray cluster (tests/ray_cluster.py)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from winnow.api.cli import main

pytest.importorskip("ray")

SAMPLE = Path(__file__).resolve().parents[3] / "retrieval" / "sample_data"


def _run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_index_into_postgres_on_ray_holds_what_the_single_process_path_holds(
    ray_local, postgres_server, tiny_bi_encoder_path, capsys
):
    single_uri = postgres_server.uri("single_" + uuid.uuid4().hex[:8])
    ray_uri = postgres_server.uri("ray_" + uuid.uuid4().hex[:8])
    base = ["index", "--corpus", str(SAMPLE), "--embedder", tiny_bi_encoder_path, "--json"]
    single = _run_json(capsys, [*base, "--store", single_uri])
    for _ in range(2):  # the second run overwrites: no duplicates
        on_ray = _run_json(capsys, [*base, "--store", ray_uri, "--ray", "local", "--ray-workers", "2"])
    out = json.dumps(on_ray)
    assert postgres_server.password not in out and "***" in on_ray["index"]
    assert on_ray["stored_documents"] == single["stored_documents"] == single["documents"] > 200
    query = ["search", "--embedder", tiny_bi_encoder_path, "--top-k", "5", "--json", "what causes rain"]
    hits = _run_json(capsys, [*query[:1], "--store", single_uri, *query[1:]])["results"]
    ray_hits = _run_json(capsys, [*query[:1], "--store", ray_uri, *query[1:]])["results"]
    assert [h["id"] for h in ray_hits] == [h["id"] for h in hits]
    assert [h["score"] for h in ray_hits] == pytest.approx([h["score"] for h in hits], abs=1e-5)


@pytest.mark.slow
def test_index_directory_on_ray_equals_the_single_process_one(
    ray_local, tiny_bi_encoder_path, tmp_path, capsys
):
    base = ["index", "--corpus", str(SAMPLE), "--embedder", tiny_bi_encoder_path, "--chunk-words", "40"]
    single = _run_json(capsys, [*base, "--out", str(tmp_path / "single"), "--json"])
    on_ray = _run_json(capsys, [*base, "--out", str(tmp_path / "ray"), "--ray", "local", "--json"])
    assert on_ray["passages"] == single["passages"] and on_ray["chunked"] is True
    query = ["search", "--embedder", tiny_bi_encoder_path, "--top-k", "5", "--json", "what causes rain"]
    hits = _run_json(capsys, [*query[:1], "--index", str(tmp_path / "single"), *query[1:]])["results"]
    ray_hits = _run_json(capsys, [*query[:1], "--index", str(tmp_path / "ray"), *query[1:]])["results"]
    assert [h["id"] for h in ray_hits] == [h["id"] for h in hits]
