"""``winnow serve --ray``: the same FastAPI app (routes, auth, limits, metrics) from N Ray Serve replicas.

Each replica builds the app with :func:`api.app.create_app` from the driver's settings and loads its models
and index in its constructor, so a model that cannot load fails the deployment with its own error (Serve
reports a failed constructor; a lifespan failure would only say "check the replica logs"). Every replica
keeps its own micro-batcher and latency-budget admission (``api/admission.py``): a slow replica answers 429
instead of queueing, and Serve's ``max_ongoing_requests`` bounds what the proxy hands each replica.

Replicas share the store: a PostgreSQL store is written by all of them. An index directory is loaded by
each replica into its own memory, so with more than one replica ``PUT``/``DELETE /documents`` are refused
(409, they would reach one replica only); write with ``winnow index`` and redeploy, or serve a PostgreSQL
store.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from winnow.api.errors import error_response
from winnow.api.settings import WinnowSettings
from winnow.retrieval.ray_cluster import cluster_cpus, cluster_gpus, import_ray

logger = logging.getLogger(__name__)

__all__ = [
    "APP_NAME",
    "DEPLOYMENT_NAME",
    "ReadOnlyDocuments",
    "WinnowReplica",
    "build_app",
    "deploy",
    "shared_store",
    "wait_until_running",
]

APP_NAME = "winnow"
DEPLOYMENT_NAME = "WinnowService"
MAX_ONGOING_REQUESTS = 64  # per replica; beyond it Serve queues at the proxy, admission sheds inside


def shared_store(settings: WinnowSettings) -> bool:
    """Whether every replica reads and writes the same store (PostgreSQL), not a private copy."""
    return bool(getattr(settings, "postgres_uri", None))


class ReadOnlyDocuments:
    """ASGI middleware: refuses document writes (409) on replicas that each hold a private index copy."""

    def __init__(self, app: Any, *, replicas: int) -> None:
        self.app = app
        self.replicas = replicas

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (
            scope.get("type") == "http"
            and scope.get("method") in ("PUT", "POST", "DELETE", "PATCH")
            and str(scope.get("path", "")).startswith("/documents")
        ):
            response = error_response(
                409,
                f"this index directory is served by {self.replicas} replicas, each from its own copy, so "
                "writes are refused: index with `winnow index` and redeploy, serve one replica, or serve a "
                "shared PostgreSQL store (--store postgresql://...)",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class WinnowReplica:
    """One Serve replica: the winnow app, its models and index loaded before the replica reports ready."""

    def __init__(self, settings: WinnowSettings, read_only_replicas: int = 0) -> None:
        from starlette.middleware import Middleware

        from winnow.api.app import create_app

        app = create_app(settings)
        service = app.state.service
        service.load()  # raises the model's or index's own error: the deployment fails with it

        def loaded() -> Any:  # the app's lifespan loads the service: it is loaded already
            return service

        service.load = loaded
        if read_only_replicas > 1:  # innermost: after auth, limits and metrics
            app.user_middleware.append(Middleware(ReadOnlyDocuments, replicas=read_only_replicas))
        self._app = app

    def __serve_build_asgi_app__(self) -> Any:
        return self._app


def deploy(
    settings: WinnowSettings,
    *,
    replicas: int = 1,
    gpus_per_replica: float | None = None,
    cpus_per_replica: float = 1.0,
    startup_timeout_s: float = 900.0,
    name: str = APP_NAME,
    route_prefix: str = "/",
) -> str:
    """Deploy the app on the connected Ray cluster as ``replicas`` replicas; return its URL once all are
    ready. HTTP is served on ``settings.host``/``settings.port`` by Serve's proxy.

    ``gpus_per_replica`` defaults to 1 when the cluster has GPUs (0 otherwise); asking for GPUs a cluster
    does not have is an error rather than a deployment that waits for them forever. A replica that fails to
    start (a model that does not load) raises RuntimeError with its error; so does a deployment not ready
    after ``startup_timeout_s``.
    """
    ray = import_ray()
    from ray import serve

    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    gpus = cluster_gpus(ray)
    if gpus_per_replica is None:
        gpus_per_replica = 1.0 if gpus else 0.0
    if gpus_per_replica < 0:
        raise ValueError(f"gpus_per_replica must be >= 0, got {gpus_per_replica}")
    if gpus_per_replica * replicas > gpus:
        raise ValueError(
            f"{replicas} replicas x {gpus_per_replica:g} GPUs need {replicas * gpus_per_replica:g} GPUs; "
            f"the Ray cluster has {gpus:g}"
        )
    cpus = cluster_cpus(ray)
    if cpus_per_replica * replicas > cpus:
        raise ValueError(
            f"{replicas} replicas x {cpus_per_replica:g} CPUs need {replicas * cpus_per_replica:g} CPUs; "
            f"the Ray cluster has {cpus:g}"
        )
    if gpus_per_replica and settings.device in (None, "cpu"):
        settings = settings.model_copy(update={"device": "cuda"})
    read_only = 0 if shared_store(settings) else replicas
    serve.start(http_options={"host": settings.host, "port": settings.port})
    app = _deployment(replicas, cpus_per_replica, gpus_per_replica).bind(settings, read_only)
    serve._run(app, name=name, route_prefix=route_prefix, _blocking=False)
    wait_until_running(name, startup_timeout_s)
    return f"http://{settings.host}:{settings.port}{route_prefix.rstrip('/')}"


def _deployment(replicas: int, cpus: float, gpus: float) -> Any:
    from ray import serve

    return serve.deployment(
        serve.ingress()(WinnowReplica),
        name=DEPLOYMENT_NAME,
        num_replicas=replicas,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        ray_actor_options={"num_cpus": cpus, "num_gpus": gpus},
        health_check_period_s=10,
        health_check_timeout_s=30,
    )


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The Serve application for config-file deployments (a KubeRay RayService's ``serveConfigV2``,
    ``serve run winnow.api.ray_serve:build_app``): settings from ``WINNOW_*`` environment variables plus any
    setting in ``args``; ``replicas``, ``cpus_per_replica`` and ``gpus_per_replica`` size the deployment
    (a config's ``autoscaling_config`` overrides the count). Over an index directory, document writes are
    refused unless ``writable_index: true`` (only safe with exactly one replica)."""
    from winnow.api.settings import load_settings

    values = dict(args or {})
    replicas = int(values.pop("replicas", 1))
    cpus = float(values.pop("cpus_per_replica", 1.0))
    gpus = float(values.pop("gpus_per_replica", 0.0))
    writable = bool(values.pop("writable_index", False))
    settings = load_settings(**values)
    if gpus and settings.device in (None, "cpu"):
        settings = settings.model_copy(update={"device": "cuda"})
    read_only = 0 if shared_store(settings) or writable else max(replicas, 2)
    return _deployment(replicas, cpus, gpus).bind(settings, read_only)


def wait_until_running(name: str = APP_NAME, timeout_s: float = 900.0, poll_s: float = 0.5) -> None:
    """Block until the Serve application ``name`` runs; raise RuntimeError with Serve's message when it
    failed to deploy, or when it is not running after ``timeout_s`` (e.g. replicas waiting for resources)."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        app = serve.status().applications.get(name)
        status = app.status if app is not None else None
        if status == ApplicationStatus.RUNNING:
            return
        if status == ApplicationStatus.DEPLOY_FAILED:
            raise RuntimeError(f"the winnow deployment failed: {_messages(app)}")
        time.sleep(poll_s)
    app = serve.status().applications.get(name)
    message = _messages(app) if app is not None else ""
    raise RuntimeError(
        f"the winnow deployment is not running after {timeout_s:g} s (status {status}): "
        f"{message or 'no message'}"
    )


def _messages(app: Any) -> str:
    """The application's message and each deployment's (where a replica's constructor error is)."""
    parts = [app.message] if app.message else []
    parts += [f"{name}: {d.message}" for name, d in app.deployments.items() if getattr(d, "message", "")]
    return "\n".join(parts)
