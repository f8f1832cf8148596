"""One local Ray cluster for the whole test session (a cluster takes about 7 s to start).

Registered as a pytest plugin by ``tests/conftest.py``. The cluster has ``num_cpus=2``, listens on the
loopback interface only, runs no dashboard and sends no usage statistics. At the end of the session (also
after failures) Serve and Ray are shut down, and any process of the cluster still alive is killed by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import ModuleType

import pytest

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # loopback only (see retrieval/ray_cluster.py)
    # a replica whose constructor fails is retried once, not three times, so failures surface fast
    "RAY_SERVE_MAX_PER_REPLICA_RETRY_COUNT": "1",
}


def _children() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _with_descendants(pids: set[int]) -> set[int]:
    """``pids`` and every live process below them (Ray's workers hang off its raylet)."""
    import psutil

    out = set(pids)
    for pid in pids:
        try:
            out.update(p.pid for p in psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return out


def _kill(pids: set[int]) -> None:
    import psutil

    for pid in pids:
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGKILL)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


@pytest.fixture(scope="session")
def ray_local() -> Iterator[ModuleType]:
    """``ray``, connected to a local 2-CPU cluster started for this session."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    from winnow.retrieval.ray_cluster import ray_session

    if ray.is_initialized():
        pytest.fail("Ray is already initialised in this test process; tests must use the ray_local fixture")
    before = _children()
    session = ray_session("local", num_cpus=2)
    session.__enter__()
    started = _children() - before  # the cluster's own processes: nothing else this session started
    try:
        yield ray
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception:  # noqa: BLE001 - Serve may never have started
            pass
        pids = _with_descendants(started)
        try:
            session.__exit__(None, None, None)
        finally:
            _kill(pids - {os.getpid()})


@pytest.fixture()
def serve_cleanup(ray_local: ModuleType) -> Iterator[None]:
    """Delete every Serve application a test deployed (the cluster itself stays up)."""
    yield
    from ray import serve

    with contextlib.suppress(Exception):  # nothing deployed
        serve.delete("winnow", _blocking=True)
