"""Ray helpers that need no cluster: the install hint, pool sizing, retries."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from winnow.retrieval.ray_cluster import RAY_INSTALL_HINT, import_ray, is_local, with_retries
from winnow.retrieval.ray_indexing import ray_workers


def _cluster(cpus: float, gpus: float = 0.0) -> SimpleNamespace:
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    return SimpleNamespace(cluster_resources=lambda: resources)


def test_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"winnow-rerank\[ray\]") as err:
        import_ray()
    assert str(err.value) == RAY_INSTALL_HINT


def test_local_addresses():
    assert is_local("local") and is_local(None) and is_local("")
    assert not is_local("auto") and not is_local("ray://head:10001")


def test_pool_is_one_actor_per_gpu_else_per_cpu():
    assert ray_workers(_cluster(2), None) == (2, 0.0)
    assert ray_workers(_cluster(16, gpus=4), None) == (4, 1.0)
    assert ray_workers(_cluster(16, gpus=4), 2) == (2, 1.0)
    assert ray_workers(_cluster(16, gpus=4), 3, gpus=False) == (3, 0.0)
    with pytest.raises(ValueError, match="has no GPUs"):
        ray_workers(_cluster(2), None, gpus=True)
    with pytest.raises(ValueError, match="cluster has 4 GPUs"):
        ray_workers(_cluster(16, gpus=4), 5)


def test_with_retries_retries_then_names_what_failed(monkeypatch):
    monkeypatch.setattr("winnow.retrieval.ray_cluster.time.sleep", lambda s: None)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert with_retries(flaky, "writing batch 7", 3) == "ok" and len(calls) == 3

    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(RuntimeError, match=r"writing batch 7 failed 2 times, last with OSError: disk full"):
        with_retries(broken, "writing batch 7", 2)
