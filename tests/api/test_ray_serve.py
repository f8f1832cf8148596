"""``winnow serve --ray``: the app on Ray Serve replicas (api/ray_serve.py), on the local test cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import free_port
from winnow.api.app import create_app
from winnow.api.settings import WinnowSettings, load_settings

pytest.importorskip("ray")

KEY = "test-key-0123456789"
SEARCH = {"query": "revenue billion dollars", "top_k": 3, "candidates": 5}
RERANK = {"query": "banana drought", "documents": ["gene expression of banana plants", "net revenue", "x"]}


@pytest.fixture(scope="module")
def served_settings(tmp_path_factory, served_index: Path, tiny_cross_encoder_path: str) -> WinnowSettings:
    import shutil

    index = tmp_path_factory.mktemp("ray-served") / "index"
    shutil.copytree(served_index, index)
    return load_settings(
        index=index,
        reranker=tiny_cross_encoder_path,
        device="cpu",
        port=free_port(),
        api_keys=KEY,
        batch_wait_ms=2.0,
        max_body_bytes=50_000,
    )


@pytest.fixture()
def two_replicas(ray_local, served_settings: WinnowSettings) -> Iterator[str]:
    from ray import serve

    from winnow.api.ray_serve import deploy

    try:
        yield deploy(served_settings, replicas=2, startup_timeout_s=300)
    finally:
        serve.delete("winnow", _blocking=True)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_two_replicas_answer_search_and_rerank_as_one_process(two_replicas, served_settings):
    from ray import serve

    replicas = serve.status().applications["winnow"].deployments["WinnowService"].replica_states
    assert replicas.get("RUNNING") == 2
    with TestClient(create_app(served_settings)) as local:
        expected_search = local.post("/search", json=SEARCH, headers=_auth()).json()
        expected_rerank = local.post("/v2/rerank", json=RERANK, headers=_auth()).json()
    with httpx.Client(base_url=two_replicas, timeout=60) as http:
        assert http.get("/health").status_code == 200
        assert http.post("/search", json=SEARCH).status_code == 401  # same auth
        for _ in range(4):  # the proxy spreads these over both replicas
            got = http.post("/search", json=SEARCH, headers=_auth())
            assert got.status_code == 200, got.text
            results = got.json()["results"]
            assert [r["id"] for r in results] == [r["id"] for r in expected_search["results"]]
            assert [r["score"] for r in results] == pytest.approx(
                [r["score"] for r in expected_search["results"]], abs=1e-5
            )
            got = http.post("/v2/rerank", json=RERANK, headers=_auth())
            assert got.status_code == 200, got.text
            results = got.json()["results"]
            assert [r["index"] for r in results] == [r["index"] for r in expected_rerank["results"]]
            assert [r["relevance_score"] for r in results] == pytest.approx(
                [r["relevance_score"] for r in expected_rerank["results"]], abs=1e-5
            )
        assert http.post("/search", content=b"x" * 60_000, headers=_auth()).status_code == 413  # limits
        metrics = http.get("/metrics", headers=_auth())
        assert metrics.status_code == 200 and "winnow" in metrics.text
        # an index directory is a private copy per replica: writes are refused, not lost on one replica
        put = http.put("/documents", json={"documents": [{"id": "n", "text": "new"}]}, headers=_auth())
        assert put.status_code == 409 and "replicas" in put.json()["message"]


@pytest.mark.slow
def test_a_replica_whose_model_fails_to_load_fails_the_deployment_with_that_error(
    ray_local, served_settings, tmp_path
):
    from winnow.api.ray_serve import deploy

    broken = tmp_path / "broken-reranker"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    settings = served_settings.model_copy(update={"reranker": str(broken)})
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="deployment failed") as failure:
            deploy(settings, replicas=1, startup_timeout_s=240, name="broken", route_prefix="/broken")
    finally:
        from ray import serve

        serve.delete("broken", _blocking=True)
    assert "broken-reranker" in str(failure.value)  # the model's own error, not "check the logs"
    assert time.monotonic() - started < 240


def test_private_index_copies_refuse_writes_after_auth(make_settings):
    """No cluster needed: the middleware replicas over an index directory get."""
    from starlette.middleware import Middleware

    from winnow.api.ray_serve import ReadOnlyDocuments

    app = create_app(make_settings(api_keys=KEY))
    app.user_middleware.append(Middleware(ReadOnlyDocuments, replicas=3))
    with TestClient(app) as client:
        doc = {"documents": [{"id": "n", "text": "new"}]}
        assert client.put("/documents", json=doc).status_code == 401  # auth first
        put = client.put("/documents", json=doc, headers=_auth())
        assert put.status_code == 409 and "3 replicas" in put.json()["message"]
        assert client.delete("/documents/fin-1", headers=_auth()).status_code == 409
        assert client.get("/documents/fin-1", headers=_auth()).status_code == 200
        assert client.post("/search", json=SEARCH, headers=_auth()).status_code == 200


def test_gpu_and_cpu_requests_beyond_the_cluster_are_refused(monkeypatch, make_settings):
    from types import SimpleNamespace

    import winnow.api.ray_serve as ray_serve

    fake = SimpleNamespace(cluster_resources=lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray_serve, "import_ray", lambda: fake)
    settings = make_settings()
    with pytest.raises(ValueError, match="need 2 GPUs; the Ray cluster has 0"):
        ray_serve.deploy(settings, replicas=2, gpus_per_replica=1)
    with pytest.raises(ValueError, match="need 3 CPUs; the Ray cluster has 2"):
        ray_serve.deploy(settings, replicas=3)
