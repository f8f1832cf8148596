"""Load test of ``winnow serve`` on loopback: 8, 32 and 128 concurrent clients against ``/search`` with
reranking, one level after the other against one server, in one run (``--modes on,off`` adds a server without
micro-batching for comparison).

Each client loops: POST /search (a sample query, top_k 10, ``--candidates`` reranked), honouring Retry-After
on 429. For each level the report gives the throughput of admitted requests, their p50/p95/p99 latency, the
share of requests answered 429 (the latency budget's admission control), errors other than 429, and the mean
batch size the server's Prometheus metrics recorded. Each level stops after ``--duration`` seconds or
``--max-requests`` requests. Writes ``benchmarks/results/load_test.json`` and ``.md``.

    python benchmarks/load_test.py                       # sample corpus, 8/32/128 clients, 40 s each
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
        if args.latency_budget_ms is not None:
            env["WINNOW_LATENCY_BUDGET_MS"] = str(args.latency_budget_ms)
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
    http: httpx.AsyncClient,
    queries: list[str],
    body: dict,
    end: float,
    seed: int,
    out: dict,
    limit: int,
    delay: float = 0.0,
) -> None:
    rng = random.Random(seed)
    await asyncio.sleep(delay)  # clients arrive over the ramp-up, not all in the same millisecond
    while time.monotonic() < end and out["sent"] < limit:
        out["sent"] += 1
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
            retry = float(r.headers.get("Retry-After", "1"))
            await asyncio.sleep(min(retry, max(0.0, end - time.monotonic())))
        else:
            out["errors"].append(f"{r.status_code}: {r.text[:200]}")


async def _load(url: str, queries: list[str], args: argparse.Namespace, clients: int) -> dict:
    body = {"top_k": 10, "candidates": args.candidates, "rerank": True}
    out: dict = {"latencies": [], "errors": [], "rejected": 0, "sent": 0}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        for query in queries[:3]:  # warm up: first calls pay for lazy initialisation (and measure a rate)
            await http.post("/search", json={**body, "query": query})
        before = _metric_sums((await http.get("/metrics")).text)
        start = time.monotonic()
        end = start + args.duration
        ramp = args.ramp_up / clients
        await asyncio.gather(
            *(
                _client(http, queries, body, end, seed, out, args.max_requests, delay=seed * ramp)
                for seed in range(clients)
            )
        )
        wall = time.monotonic() - start
        after = _metric_sums((await http.get("/metrics")).text)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    lat = np.asarray(out["latencies"]) * 1000
    batches = delta("winnow_rerank_batch_pairs_count")
    answered = lat.size + out["rejected"] + len(out["errors"])
    return {
        "clients": clients,
        "ramp_up_s": args.ramp_up,
        "requests_ok": int(lat.size),
        "errors": len(out["errors"]),
        "error_examples": out["errors"][:5],
        "rejected_429": out["rejected"],
        "share_429": round(out["rejected"] / answered, 4) if answered else None,
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
    budget = cfg["latency_budget_ms"]
    lines = [
        "# winnow serve load test",
        "",
        f"{', '.join(map(str, cfg['clients']))} concurrent clients (starting spread over "
        f"{cfg.get('ramp_up_s', 0)} s), {cfg['duration_s']} s per level (at most "
        f"{cfg['max_requests']} requests), POST /search (top_k 10, {cfg['candidates']} candidates reranked), "
        f"loopback, {report['machine']}. Index: {cfg['index']}; reranker: {cfg['reranker']}. Latency budget: "
        f"{'server default (2000)' if budget is None else budget} ms. Latencies are of admitted (200) "
        "requests; rejected ones got 429 at once and retried after Retry-After.",
        "",
        "| micro-batching | clients | ok requests | req/s | p50 ms | p95 ms | p99 ms | 429 share | 429s "
        "| errors | model calls | mean pairs/call | mean requests/call |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, levels in report["runs"].items():
        for r in levels:
            lat = r["latency_ms"]
            lines.append(
                f"| {mode} | {r['clients']} | {r['requests_ok']} | {r['throughput_rps']} | {lat['p50']} "
                f"| {lat['p95']} | {lat['p99']} | {r['share_429']} | {r['rejected_429']} | {r['errors']} "
                f"| {r['model_calls']} | {r['mean_batch_pairs']} | {r['mean_batch_requests']} |"
            )
    for mode, ratios in report.get("throughput_vs_first_level", {}).items():
        text = ", ".join(f"{clients} clients {ratio}x" for clients, ratio in ratios.items())
        lines += ["", f"Throughput relative to the first level (micro-batching {mode}): {text}."]
    if "speedup" in report:
        lines += [
            "",
            f"Throughput with micro-batching / without (first level): **{report['speedup']}x** (same run).",
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
    parser.add_argument("--clients", default="8,32,128", help="concurrent clients per level, comma-separated")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds per level")
    parser.add_argument("--max-requests", type=int, default=5000, help="most requests sent per level")
    parser.add_argument(
        "--ramp-up", type=float, default=2.0, help="seconds over which a level's clients start (default 2)"
    )
    parser.add_argument("--pause", type=float, default=5.0, help="seconds between levels (the queue drains)")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--modes", default="on", help="micro-batching modes to run: on,off")
    parser.add_argument(
        "--latency-budget-ms", type=float, default=None, help="the server's budget (default: its own, 2000)"
    )
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--torch-threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "load_test")
    args = parser.parse_args()
    levels = [int(n) for n in str(args.clients).split(",") if n.strip()]
    if not levels or min(levels) < 1:
        parser.error("--clients needs positive integers, e.g. 8,32,128")

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
                runs[mode] = []
                for i, clients in enumerate(levels):
                    if i:
                        time.sleep(args.pause)
                    print(f"micro-batching {mode}: {clients} clients for {args.duration} s ...", flush=True)
                    runs[mode].append(asyncio.run(_load(server.url, queries, args, clients)))
                    print(json.dumps(runs[mode][-1]), flush=True)
            finally:
                server.stop()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, device {args.device}",
        "config": {
            "clients": levels,
            "duration_s": args.duration,
            "ramp_up_s": args.ramp_up,
            "max_requests": args.max_requests,
            "latency_budget_ms": args.latency_budget_ms,
            "candidates": args.candidates,
            "batch_wait_ms": args.batch_wait_ms,
            "index": str(args.index or "sample corpus (244 passages)"),
            "reranker": args.reranker or "MiniLM-L6 with an untrained head (speed only)",
        },
        "runs": runs,
        "command": " ".join(["python", "benchmarks/load_test.py", *sys.argv[1:]]),
    }
    report["throughput_vs_first_level"] = {
        mode: {r["clients"]: round(r["throughput_rps"] / results[0]["throughput_rps"], 3) for r in results}
        for mode, results in runs.items()
        if results and results[0]["throughput_rps"]
    }
    if runs.get("on") and runs.get("off") and runs["off"][0]["throughput_rps"]:
        report["speedup"] = round(runs["on"][0]["throughput_rps"] / runs["off"][0]["throughput_rps"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(_markdown(report), encoding="utf-8")
    print(_markdown(report))
    failed = any(r["errors"] for results in runs.values() for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
