"""Connecting winnow's batch jobs and replicas to Ray (the optional ``ray`` extra).

``--ray local`` starts a private single-node cluster bound to the loopback interface, with no dashboard and no
usage statistics, and stops it when the job ends; ``--ray ADDRESS`` (``host:6379``, ``ray://host:10001`` or
``auto``) joins an existing cluster and leaves it running. A process already connected to Ray (a notebook,
a test session, a RayJob's entrypoint) keeps its connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TypeVar

logger = logging.getLogger(__name__)

__all__ = [
    "LOCAL",
    "RAY_INSTALL_HINT",
    "cluster_cpus",
    "cluster_gpus",
    "import_ray",
    "is_local",
    "ray_session",
    "with_retries",
]

T = TypeVar("T")

LOCAL = "local"
RAY_INSTALL_HINT = "Ray is not installed: pip install 'winnow-rerank[ray]' (ray[data,serve] >= 2.60)"


def import_ray() -> ModuleType:
    """``ray``, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(RAY_INSTALL_HINT) from err
    return ray


def _loopback_only() -> None:
    """Make a local cluster listen on 127.0.0.1 only: Ray resolves even ``127.0.0.1`` to the routable
    address unless multi-node clustering is off (its Windows/macOS default, switched by this variable)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # inherited by the processes Ray starts
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # ray already imported: the constant was read at import time
        constants.ENABLE_RAY_CLUSTER = False


def is_local(address: str | None) -> bool:
    """Whether ``address`` asks for a private local cluster."""
    return address in (None, "", LOCAL)


def _init_kwargs(address: str | None, num_cpus: int | None) -> dict:
    if is_local(address):
        return {
            "num_cpus": num_cpus,
            "include_dashboard": False,
            "_node_ip_address": "127.0.0.1",
            "logging_level": logging.WARNING,
        }
    return {"address": address, "logging_level": logging.WARNING}


@contextlib.contextmanager
def ray_session(address: str | None = LOCAL, *, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Yield ``ray`` connected to ``address`` (``"local"``: start a loopback cluster of ``num_cpus``).

    Whatever this call started (a local cluster, a client connection) is shut down on exit, even on error;
    a connection that existed before is left as it was.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if is_local(address):
        _loopback_only()
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs = _init_kwargs(address, num_cpus)
    logger.info("connecting to Ray at %s", address or LOCAL)
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_gpus(ray: ModuleType) -> float:
    """GPUs the connected cluster has (0.0 on a CPU-only cluster)."""
    return float(ray.cluster_resources().get("GPU", 0.0))


def cluster_cpus(ray: ModuleType) -> float:
    """CPUs the connected cluster has."""
    return float(ray.cluster_resources().get("CPU", 0.0))


def with_retries(fn: Callable[[], T], what: str, max_attempts: int) -> T:
    """``fn()``, called again (after 0.5 s, 1 s, ... up to 5 s) when it raises, at most ``max_attempts``
    times; the last failure is raised as a RuntimeError that names ``what`` and the original error."""
    for attempt in range(1, max_attempts + 1):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - retried, then re-raised with what it was doing
            if attempt == max_attempts:
                raise RuntimeError(
                    f"{what} failed {attempt} times, last with {type(err).__name__}: {err}"
                ) from err
            logger.warning(
                "%s failed (%s: %s); retrying (%d/%d)",
                what,
                type(err).__name__,
                err,
                attempt + 1,
                max_attempts,
            )
            time.sleep(min(0.5 * 2 ** (attempt - 1), 5.0))
    raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
