"""Scale-out on Ray, measured as ratios in one run: ingestion docs/s with 1 and 2 Ray Data workers, and
``/search`` requests/s with 1 and 2 Ray Serve replicas.

    python benchmarks/scale_out.py [--docs 600] [--seconds 20] [--clients 8]

Writes benchmarks/results/scale_out.json and .md. The local cluster has as many CPUs as the machine (2 on
the machines this project is measured on): each worker and each replica reserves one CPU and runs torch on
one thread, so 2 workers or 2 replicas use the whole machine, and the load generator and Ray's own processes
share it. The ratios say how far two processes beat one on the same box; they are not a cluster's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import ROOT, cpu_name, pick_model  # noqa: E402

DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
QUERIES = DATASET / "queries.jsonl"


def _passages(limit: int):
    from winnow.retrieval.corpus import load_beir, sample_dataset_path

    path = DATASET if (DATASET / "corpus.jsonl").is_file() else sample_dataset_path()
    dataset = load_beir(path)
    return path.name, dataset.corpus[:limit], list(dataset.queries.values())


def _ingest(passages, workers: int, block_size: int) -> dict:
    from winnow.retrieval.ray_indexing import build_index_ray

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    index = build_index_ray(passages, workers=workers, block_size=block_size, show_progress=False)
    seconds = time.perf_counter() - started
    return {
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "workers": workers,
        "docs": len(passages),
        "seconds": round(seconds, 2),
        "docs_per_s": round(len(passages) / seconds, 2),
        "_index": index,
    }


def _load(url: str, queries: list[str], seconds: float, clients: int, body: dict) -> dict:
    import httpx

    latencies: list[float] = []
    errors = {"count": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            n = i
            while time.monotonic() < stop:
                start = time.perf_counter()
                r = http.post("/search", json={**body, "query": queries[n % len(queries)]})
                elapsed = time.perf_counter() - start
                with lock:
                    if r.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors["count"] += 1
                n += clients

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = sorted(latencies)
    return {
        "load_average_1min_after": round(os.getloadavg()[0], 1),
        "requests": len(lat),
        "errors": errors["count"],
        "seconds": round(wall, 2),
        "requests_per_s": round(len(lat) / wall, 2),
        "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
        "p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=600, help="passages to ingest (SciFact, else the sample)")
    parser.add_argument("--block-size", type=int, default=16, help="passages per Ray Data batch")
    parser.add_argument("--seconds", type=float, default=20.0, help="load per serving configuration")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured load before each measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients (closed loop)")
    parser.add_argument("--candidates", type=int, default=10, help="candidates reranked per /search")
    parser.add_argument(
        "--latency-budget-ms",
        type=float,
        default=0.0,
        help="replicas' admission budget (default 0: off, so requests/s is capacity; the service's default "
        "2000 ms sheds most requests on two busy cores)",
    )
    parser.add_argument("--reranker", default=None, help="cross-encoder (default: winnow-general)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale_out")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from winnow.api.ray_serve import deploy
    from winnow.api.settings import load_settings
    from winnow.retrieval.ray_cluster import ray_session

    name, passages, queries = _passages(args.docs)
    cpus = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="scale-out-"))
    reranker, reranker_note = pick_model(args.reranker, tmp)
    results: dict = {
        "benchmark": "scale_out",
        "machine": {"cpu": cpu_name(), "cores": cpus, "python": platform.python_version()},
        "dataset": name,
        "embedder": "all-MiniLM-L6-v2 (packaged)",
        "reranker": reranker_note,
        "note": f"one machine with {cpus} cores: each Ray worker/replica reserves 1 CPU and runs torch on 1 "
        "thread; the load generator and Ray's processes share the same cores. Ratios from one run.",
    }
    with ray_session("local", num_cpus=cpus):
        from ray import serve

        ingestion = []
        index = None
        for workers in (1, 2):
            run = _ingest(passages, workers, args.block_size)
            index = run.pop("_index")
            ingestion.append(run)
            print(f"ingestion, {workers} worker(s): {run['docs_per_s']} docs/s", file=sys.stderr)
        results["ingestion"] = {
            "runs": ingestion,
            "ratio_2_over_1": round(ingestion[1]["docs_per_s"] / ingestion[0]["docs_per_s"], 2),
            "includes": "actor start-up and model load in each run, the driver's ordered writes",
        }
        index_dir = tmp / "index"
        index.save(index_dir)

        serving = []
        body = {"top_k": 10, "candidates": args.candidates, "rerank": True, "first_stage": "dense"}
        for replicas in (1, 2):
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            settings = load_settings(
                index=index_dir,
                reranker=reranker,
                device="cpu",
                port=port,
                latency_budget_ms=args.latency_budget_ms,
                rerank_timeout_s=120.0,
            )
            try:
                url = deploy(settings, replicas=replicas, startup_timeout_s=600)
                _load(url, queries, args.warmup, args.clients, body)
                run = {
                    "replicas": replicas,
                    "clients": args.clients,
                    **_load(url, queries, args.seconds, args.clients, body),
                }
            finally:
                serve.shutdown()
            serving.append(run)
            print(f"serving, {replicas} replica(s): {run['requests_per_s']} requests/s", file=sys.stderr)
        results["serving"] = {
            "runs": serving,
            "ratio_2_over_1": round(serving[1]["requests_per_s"] / serving[0]["requests_per_s"], 2),
            "request": body,
            "latency_budget_ms": args.latency_budget_ms,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(_markdown(results), encoding="utf-8")
    print(_markdown(results))
    return 0


def _markdown(r: dict) -> str:
    ing, srv = r["ingestion"], r["serving"]
    lines = [
        "# Scale-out on Ray (one run)",
        "",
        f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores. Dataset: {r['dataset']}. "
        f"Embedder: {r['embedder']}. Reranker: {r['reranker']}.",
        "",
        f"**{r['machine']['cores']} cores bound these figures**: {r['note']}",
        "",
        "| what | 1 | 2 | 2 / 1 |",
        "|---|---|---|---|",
        f"| ingestion, docs/s (Ray Data workers, {ing['runs'][0]['docs']} passages) | "
        f"{ing['runs'][0]['docs_per_s']} | {ing['runs'][1]['docs_per_s']} | {ing['ratio_2_over_1']}x |",
        f"| /search, requests/s (Serve replicas, {srv['runs'][0]['clients']} clients, "
        f"{srv['request']['candidates']} candidates reranked) | {srv['runs'][0]['requests_per_s']} | "
        f"{srv['runs'][1]['requests_per_s']} | {srv['ratio_2_over_1']}x |",
        f"| /search p50 / p95 ms | {srv['runs'][0]['p50_ms']} / {srv['runs'][0]['p95_ms']} | "
        f"{srv['runs'][1]['p50_ms']} / {srv['runs'][1]['p95_ms']} | |",
        "",
        f"Replicas' admission budget: {srv['latency_budget_ms']:g} ms (0: off, so requests/s is what a "
        "replica can serve; with the default 2000 ms a replica sheds what it cannot serve in time with 429). "
        f"Ingestion times include {ing['includes']}. Errors (non-200): "
        f"{srv['runs'][0]['errors']} and {srv['runs'][1]['errors']}.",
        "",
        "The machine was shared with other jobs while this ran: the 1-minute load averages (runnable "
        f"processes on {r['machine']['cores']} cores) were {ing['runs'][0]['load_average_1min']} and "
        f"{ing['runs'][1]['load_average_1min']} (before, after each ingestion run), "
        f"{srv['runs'][0]['load_average_1min_after']} and {srv['runs'][1]['load_average_1min_after']} "
        "(after each serving run). Other jobs took a changing share of the cores, so these ratios are "
        "noisy and say nothing about an idle machine or a cluster. A ratio near 1 means that the second "
        "process's start-up (torch import and model load, paid in every run) and the contended cores hid "
        "its work. It does not mean that the work cannot split: the actors and replicas each take their "
        "own batches and requests.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
