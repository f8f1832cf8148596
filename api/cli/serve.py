"""``winnow serve``: the REST service over an index and a reranker."""

from __future__ import annotations

import argparse
import copy
import ipaddress
from pathlib import Path
from typing import Any

from winnow.api.cli.options import RERANK_BACKENDS, add_common, int_at_least, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser(
        "serve",
        help="serve an index and a reranker over HTTP (search, Cohere/TEI rerank, documents)",
        description="Run the REST service (OpenAPI at /docs). Every setting can also come from WINNOW_* "
        "environment variables or a --config file (see api/settings.py); flags win over both. Set API keys "
        "with WINNOW_API_KEYS=k1,k2 rather than on the command line.",
    )
    p.add_argument(
        "--index", type=Path, default=None, help="index directory (created on first write if missing)"
    )
    p.add_argument(
        "--store",
        default=None,
        metavar="URI",
        help="instead of --index: an index directory, or postgresql://USER:PASS@HOST/DB[?table=T] (pgvector; "
        "prefer WINNOW_STORE, which keeps the password off the command line)",
    )
    p.add_argument(
        "--reranker", default=None, help="cross-encoder path or name, or 'none' (default: winnow-general)"
    )
    p.add_argument("--embedder", default=None, help="bi-encoder (default: the index's)")
    p.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int_at_least(1), default=None, help="port (default 8000)")
    p.add_argument("--config", type=Path, default=None, help=".toml or .json settings file")
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="serve on a non-loopback host without API keys: anyone who reaches it can write and delete",
    )
    p.add_argument(
        "--no-micro-batching",
        dest="micro_batching",
        action="store_false",
        default=None,
        help="score each rerank request alone (for comparison)",
    )
    p.add_argument(
        "--batch-wait-ms", type=float, default=None, help="micro-batch collection window (default 5)"
    )
    p.add_argument(
        "--torch-threads", type=positive_int, default=None, help="torch threads (default: all cores)"
    )
    p.add_argument(
        "--backend",
        choices=RERANK_BACKENDS,
        default=None,
        help="reranker runtime (default auto: on CPU the quantised backend the model's own quality check "
        "chose, else torch fp32, and /ready says why; onnx* and openvino* run on CPU)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS|local",
        help="serve from Ray Serve replicas: 'local' (the default when the flag has no value) starts a "
        "private loopback cluster; ADDRESS (host:6379, ray://host:10001, auto) joins a running one. Needs "
        "pip install 'winnow-rerank[ray]'",
    )
    p.add_argument(
        "--replicas", type=positive_int, default=None, help="Serve replicas with --ray (default 1)"
    )
    p.add_argument(
        "--gpus-per-replica",
        type=float,
        default=None,
        help="GPUs each replica reserves with --ray (default: 1 when the cluster has GPUs, else 0)",
    )
    add_common(p)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from pydantic import ValidationError

        from winnow.api.app import create_app
        from winnow.api.settings import load_settings
    except ImportError as err:
        raise ValueError(
            f"winnow serve needs the serve extra ({err.name} is missing): pip install 'winnow[serve]'"
        ) from None

    try:
        settings = load_settings(
            args.config,
            index=args.index,
            store=args.store,
            reranker=args.reranker,
            embedder=args.embedder,
            host=args.host,
            port=args.port,
            device=args.device,
            micro_batching=args.micro_batching,
            batch_wait_ms=args.batch_wait_ms,
            backend=args.backend,
            torch_threads=args.torch_threads,
            allow_unauthenticated=args.allow_unauthenticated,
        )
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        hint = (
            " (pass --index DIR or --store URI, or set WINNOW_INDEX or WINNOW_STORE)"
            if "index: Field required" in problems
            else ""
        )
        raise ValueError(f"invalid settings: {problems}{hint}") from None
    if not settings.authenticated and not is_loopback(settings.host) and not settings.allow_unauthenticated:
        raise ValueError(
            f"refusing to serve on {settings.host} without API keys: anyone who can reach it could write and "
            "delete documents. Set WINNOW_API_KEYS (and WINNOW_READ_ONLY_API_KEYS), bind --host 127.0.0.1, "
            "or pass --allow-unauthenticated (WINNOW_ALLOW_UNAUTHENTICATED=true) if a proxy in front "
            "authenticates"
        )
    if args.ray is not None:
        return _serve_on_ray(args, settings)
    if args.replicas is not None or args.gpus_per_replica is not None:
        raise ValueError("--replicas and --gpus-per-replica need --ray [ADDRESS|local]")
    app = create_app(settings)
    level = "debug" if args.verbose > 1 else "info"
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=level,
        log_config=access_log_config(log_document_ids=settings.log_document_ids),
        timeout_graceful_shutdown=30,
    )
    return 0


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds only this machine: ``localhost``, 127.0.0.0/8 or ::1."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to any interface


def access_log_config(*, log_document_ids: bool) -> dict[str, Any]:
    """uvicorn's logging config, with document ids dropped from access-log paths unless asked for."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    if not log_document_ids:
        config.setdefault("filters", {})["winnow_drop_document_ids"] = {
            "()": "winnow.api.access_log.DropDocumentIds"
        }
        config["loggers"]["uvicorn.access"].setdefault("filters", []).append("winnow_drop_document_ids")
    return config


def _serve_on_ray(args: argparse.Namespace, settings: Any) -> int:
    """Deploy the app on Ray Serve and serve until interrupted; the deployment is removed on exit (and Serve
    stopped with the private cluster of ``--ray local``)."""
    import signal
    import sys
    import time

    from winnow.api.ray_serve import APP_NAME, deploy
    from winnow.retrieval.ray_cluster import is_local, ray_session

    what = getattr(settings, "store_name", None) or settings.index

    def stop(signum: int, frame: Any) -> None:  # SIGTERM (Kubernetes, systemd) cleans up as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with ray_session(args.ray):
        from ray import serve

        try:
            url = deploy(settings, replicas=args.replicas or 1, gpus_per_replica=args.gpus_per_replica)
            print(
                f"winnow serving {what} at {url} from {args.replicas or 1} Serve replica(s); Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
        finally:
            try:
                serve.delete(APP_NAME)
            finally:
                if is_local(args.ray):
                    serve.shutdown()
