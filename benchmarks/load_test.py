"""Load test of ``winnow serve`` on loopback: N concurrent clients against ``/search`` with reranking, once
with micro-batching on and once off, side by side in one run.

Each client loops: POST /search (a sample query, top_k 10, ``--candidates`` reranked), honouring Retry-After
on 429. The report gives throughput, p50/p95/p99 latency, errors other than 429, the 429 count, and the mean
batch size the server's Prometheus metrics recorded. Writes ``benchmarks/results/load_test.json`` and ``.md``.

    python benchmarks/load_test.py                       # sample corpus, 32 clients, 60 s per mode
    python benchmarks/load_test.py --index work/idx-scifact --queries ../shared/datasets/scifact/queries.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_queries(path: Path | None) -> list[str]:
    from winnow.retrieval.corpus import sample_dataset_path

    path = path or sample_dataset_path() / "queries.jsonl"
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def _sample_index(folder: Path) -> Path:
    from winnow.retrieval.corpus import load_beir, sample_dataset_path
    from winnow.retrieval.embedder import Embedder
    from winnow.retrieval.indexing import build_index

    out = folder / "sample-index"
    build_index(load_beir(sample_dataset_path()).corpus, Embedder(None), show_progress=False).save(out)
    return out


def _untrained_reranker(folder: Path) -> Path:
    """The packaged MiniLM-L6 with a fresh scoring head: the same cost per pair as a trained MiniLM-L6
    cross-encoder, so good enough for a speed test (its ranking is meaningless)."""
    import torch
    from sentence_transformers import CrossEncoder

    from winnow.retrieval.embedder import packaged_minilm_path

    torch.manual_seed(0)
    out = folder / "minilm-l6-cross-encoder"
    CrossEncoder(packaged_minilm_path(), num_labels=1).save(str(out))
    return out


def _metric_sums(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                values[sample.name] = sample.value
    return values


class Server:
    def __init__(self, index: Path, reranker: str, micro_batching: bool, args: argparse.Namespace, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "winnow.api.cli", "serve", "--index", str(index), "--reranker", reranker]
        cmd += ["--port", str(self.port), "--device", args.device, "--batch-wait-ms", str(args.batch_wait_ms)]
        if args.torch_threads:
            cmd += ["--torch-threads", str(args.torch_threads)]
        if not micro_batching:
            cmd.append("--no-micro-batching")
        env = {
            **os.environ,
            "WINNOW_SNAPSHOT_INTERVAL_S": "0",
            "WINNOW_WRITE_LOG": str(log.with_suffix(".wal")),
        }
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.log = log

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _client(
    http: httpx.AsyncClient, queries: list[str], body: dict, end: float, seed: int, out: dict
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < end:
        payload = {**body, "query": rng.choice(queries)}
        start = time.perf_counter()
        try:
            r = await http.post("/search", json=payload)
        except httpx.HTTPError as err:
            out["errors"].append(f"{type(err).__name__}: {err}")
            continue
        elapsed = time.perf_counter() - start
        if r.status_code == 200:
            out["latencies"].append(elapsed)
        elif r.status_code == 429:
            out["rejected"] += 1
            await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
        else:
            out["errors"].append(f"{r.status_code}: {r.text[:200]}")


async def _load(url: str, queries: list[str], args: argparse.Namespace) -> dict:
    body = {"top_k": 10, "candidates": args.candidates, "rerank": True}
    out: dict = {"latencies": [], "errors": [], "rejected": 0}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        for query in queries[:3]:  # warm up: first calls pay for lazy initialisation
            await http.post("/search", json={**body, "query": query})
        before = _metric_sums((await http.get("/metrics")).text)
        start = time.monotonic()
        end = start + args.duration
        await asyncio.gather(*(_client(http, queries, body, end, seed, out) for seed in range(args.clients)))
        wall = time.monotonic() - start
        after = _metric_sums((await http.get("/metrics")).text)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    lat = np.asarray(out["latencies"]) * 1000
    batches = delta("winnow_rerank_batch_pairs_count")
    return {
        "requests_ok": int(lat.size),
        "errors": len(out["errors"]),
        "error_examples": out["errors"][:5],
        "rejected_429": out["rejected"],
        "wall_s": round(wall, 2),
        "throughput_rps": round(lat.size / wall, 3),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "p95": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
            "p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
            "mean": round(float(lat.mean()), 1) if lat.size else None,
        },
        "model_calls": int(batches),
        "pairs_scored": int(delta("winnow_rerank_pairs_scored_total")),
        "mean_batch_pairs": round(delta("winnow_rerank_batch_pairs_sum") / batches, 2) if batches else None,
        "mean_batch_requests": round(delta("winnow_rerank_batch_requests_sum") / batches, 2)
        if batches
        else None,
    }


def _markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [
        "# winnow serve load test",
        "",
        f"{cfg['clients']} concurrent clients for {cfg['duration_s']} s each, POST /search (top_k 10, "
        f"{cfg['candidates']} candidates reranked), loopback, {report['machine']}. Index: {cfg['index']}; "
        f"reranker: {cfg['reranker']}.",
        "",
        "| micro-batching | ok requests | req/s | p50 ms | p95 ms | p99 ms | errors | 429s | model calls "
        "| mean pairs/call | mean requests/call |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in report["runs"].items():
        lat = r["latency_ms"]
        lines.append(
            f"| {mode} | {r['requests_ok']} | {r['throughput_rps']} | {lat['p50']} | {lat['p95']} "
            f"| {lat['p99']} | {r['errors']} | {r['rejected_429']} | {r['model_calls']} "
            f"| {r['mean_batch_pairs']} | {r['mean_batch_requests']} |"
        )
    if "speedup" in report:
        lines += [
            "",
            f"Throughput with micro-batching / without: **{report['speedup']}x** (same run, same machine).",
        ]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--index", type=Path, default=None, help="index directory (default: the sample corpus)"
    )
    parser.add_argument("--queries", type=Path, default=None, help="queries.jsonl (default: the sample's)")
    parser.add_argument("--reranker", default=None, help="cross-encoder (default: MiniLM-L6, untrained head)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per mode")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--modes", default="on,off", help="micro-batching modes to run: on,off")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "load_test")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="winnow-load-") as tmp:
        tmp_path = Path(tmp)
        index = args.index or _sample_index(tmp_path)
        reranker = args.reranker or str(_untrained_reranker(tmp_path))
        queries = _load_queries(args.queries)
        runs = {}
        for mode in args.modes.split(","):
            work_index = tmp_path / f"index-{mode}"
            import shutil

            shutil.copytree(index, work_index)  # the server may write; never touch the original
            server = Server(work_index, reranker, mode == "on", args, tmp_path / f"server-{mode}.log")
            try:
                server.wait_ready()
                print(f"micro-batching {mode}: {args.clients} clients for {args.duration} s ...", flush=True)
                runs[mode] = asyncio.run(_load(server.url, queries, args))
                print(json.dumps(runs[mode]), flush=True)
            finally:
                server.stop()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, device {args.device}",
        "config": {
            "clients": args.clients,
            "duration_s": args.duration,
            "candidates": args.candidates,
            "batch_wait_ms": args.batch_wait_ms,
            "index": str(args.index or "sample corpus (244 passages)"),
            "reranker": args.reranker or "MiniLM-L6 with an untrained head (speed only)",
        },
        "runs": runs,
        "command": " ".join(["python", "benchmarks/load_test.py", *sys.argv[1:]]),
    }
    if runs.get("on") and runs.get("off") and runs["off"]["throughput_rps"]:
        report["speedup"] = round(runs["on"]["throughput_rps"] / runs["off"]["throughput_rps"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(_markdown(report), encoding="utf-8")
    print(_markdown(report))
    failed = any(r["errors"] for r in runs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
