"""Rerank speed: the same real (query, document) pairs scored by every way of running a cross-encoder.

Methods (each in its own subprocess, so each one's peak memory is its own):

- ``st-predict``: sentence-transformers ``CrossEncoder.predict(pairs)`` as users call it (all pairs of a set
  in one call, its default batch size 32);
- ``haystack``: Haystack's stock ``SentenceTransformersSimilarityRanker`` (package
  ``sentence-transformers-haystack``), one ``run(query, documents)`` per query, its default batch size 16;
- ``winnow-torch``: winnow's ``CrossEncoderEngine.score_pairs(pairs)`` (length-sorted token-budget batches),
  ``windows=False`` so it does exactly the work the others do (truncate each pair at ``--max-length``), fp32;
- ``winnow-torch-bf16``: the same in bf16 (``dtype="auto"`` picks it on a CPU with native bf16 and on CUDA);
- ``winnow-onnx`` / ``winnow-onnx-int8``: the same engine with ``backend="onnx"`` / ``"onnx-int8"`` (ONNX
  Runtime on CPU, fp32 / dynamically quantised int8 weights; export and quantisation count as load time);
- ``winnow-openvino`` / ``winnow-openvino-int8`` / ``winnow-onnx-qdq-int8``: the quantised CPU backends of
  ``rerank.quantized`` (OpenVINO fp32; OpenVINO int8 from NNCF post-training quantisation; ONNX Runtime static
  QDQ int8), int8 calibrated on ``--calibration-pairs`` pairs of the general model's training data (SQuAD v1.1
  and QED-NQ train, never a test split; ``rerank.quantize_check.training_pairs``); export, calibration and
  quantisation count as load time unless ``--quantized-dir`` holds them from an earlier run.

The report names the CPU (model, cores, AVX2 / AVX-512 / VNNI / BF16 / AMX), since int8 and bf16 speed
depends on those. With ``--device cuda`` the torch methods run on the GPU (winnow in bf16 with token-budget
batches, the stock paths as users call them, on the same card) and the CPU-only backends are skipped; a short
GPU run (a few minutes) is

    python benchmarks/rerank_speed.py --device cuda --max-length 256 --depth 100 --pairs 10000 \
        --methods st-predict,haystack,winnow-torch --repeats 2 --out benchmarks/results/rerank_speed_cuda

Pairs: the first test queries of each dataset (file order) times their BM25 top ``--depth`` documents (bm25s,
winnow's ``BM25Retriever``), about ``--pairs`` pairs per set. Every method gets the same thread count
(``torch.set_num_threads``), the same device and the same ``--max-length``. Each set is scored once untimed on
its first 8 pairs (warm-up), then timed ``--repeats`` times; the best repeat is reported. Peak memory is the
worker process's peak resident set (``VmHWM`` in ``/proc/self/status``, which exec resets, unlike
``ru_maxrss``; interpreter and torch included), next to the same figure taken after imports, before the model
loads. nDCG@10 (ir_measures) is computed from each method's scores over the
same candidates, next to BM25's own order. Writes ``benchmarks/results/rerank_speed.json`` and ``.md``.

    python benchmarks/rerank_speed.py                                  # CPU, ~300 pairs per set, all cores
    python benchmarks/rerank_speed.py --methods st-predict,haystack,winnow-torch,winnow-openvino-int8
    python benchmarks/rerank_speed.py --pairs 1000 --threads 1 --device cuda --sets scifact,financebench

Model: ``--model``; default the shipped ``winnow-general``, else ``work/general/checkpoints/checkpoint-300``,
else the packaged MiniLM-L6 with a fresh seeded head (same cost per pair as a trained MiniLM-L6
cross-encoder; its quality figures are not meaningful). ``--max-length``: default the model's own
(card, sentence-transformers or tokenizer config; else 512).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import device_name, pick_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ROOT.parent / "shared" / "datasets"
METHODS = (
    "st-predict",
    "haystack",
    "winnow-torch",
    "winnow-torch-bf16",
    "winnow-onnx",
    "winnow-onnx-int8",
    "winnow-openvino",
    "winnow-openvino-int8",
    "winnow-onnx-qdq-int8",
)
CPU_ONLY = ("winnow-onnx", "winnow-openvino")  # method name prefixes that run on CPU only
WARMUP_PAIRS = 8


# ----------------------------------------------------------------------------------------------- workers
def _peak_rss_mib() -> float:
    """This process's peak resident set in MiB (``VmHWM``; falls back to ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _scorer(method: str, model: str, device: str, max_length: int, args: argparse.Namespace) -> Any:
    """A callable ``(pairs, queries) -> scores`` for one method, model loaded."""
    if method == "st-predict":
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(model, device=device, max_length=max_length)
        return (lambda pairs: ce.predict(pairs, show_progress_bar=False)), {"max_length": ce.max_seq_length}
    if method == "haystack":
        from haystack import Document
        from haystack.utils import ComponentDevice
        from haystack_integrations.components.rankers.sentence_transformers import (
            SentenceTransformersSimilarityRanker,
        )

        ranker = SentenceTransformersSimilarityRanker(
            model=model,
            device=ComponentDevice.from_str(device),
            top_k=1_000_000,
            tokenizer_kwargs={"model_max_length": max_length},
        )
        ranker.warm_up()

        def run(pairs: list[list[str]]) -> list[float]:
            by_query: dict[str, list[int]] = {}
            for i, (query, _) in enumerate(pairs):
                by_query.setdefault(query, []).append(i)
            scores = [0.0] * len(pairs)
            for query, rows in by_query.items():
                docs = [Document(id=str(i), content=pairs[i][1]) for i in rows]
                for doc in ranker.run(query=query, documents=docs)["documents"]:
                    scores[int(doc.id)] = float(doc.score)
            return scores

        return run, {"max_length": getattr(ranker._cross_encoder, "max_seq_length", None)}
    if method.startswith("winnow-"):
        from winnow.rerank.engine import CrossEncoderEngine
        from winnow.rerank.quantized import QUANTIZED_BACKENDS

        backend = method.removeprefix("winnow-").removesuffix("-bf16")
        # fp32 unless the method says bf16 ("auto" would pick bf16 on a CPU with native bf16)
        dtype = "bf16" if method.endswith("-bf16") else ("auto" if device.startswith("cuda") else "float32")
        extra: dict[str, Any] = {}
        if backend in QUANTIZED_BACKENDS:
            from winnow.rerank.quantize_check import training_pairs

            extra["onnx_dir"] = Path(args.quantized_dir) / Path(model).name
            if "int8" in backend:
                extra["calibration_pairs"], _ = training_pairs(DATASETS, args.calibration_pairs)
        engine = CrossEncoderEngine(
            model,
            device=device,
            max_length=max_length,
            windows=False,
            activation="model",
            backend=backend,
            dtype=dtype,
            **extra,
        ).load()
        return (lambda pairs: engine.score_pairs([tuple(p) for p in pairs])), {
            "max_length": engine.max_length
        }
    raise ValueError(f"unknown method {method!r}")


def _worker(args: argparse.Namespace) -> int:
    """Score every set's pairs with one method; write timings, scores and peak RSS to ``--result``."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    sets = json.loads(Path(args.pairs_file).read_text(encoding="utf-8"))
    rss_before = _peak_rss_mib()
    start = time.perf_counter()
    score, info = _scorer(args.worker, args.model, args.device, args.max_length, args)
    load_s = time.perf_counter() - start
    out: dict[str, Any] = {"method": args.worker, "load_s": round(load_s, 2), **info, "sets": {}}
    for name, data in sets.items():
        pairs = data["pairs"]
        score(pairs[:WARMUP_PAIRS])
        best, scores = math.inf, None
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            scores = score(pairs)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        out["sets"][name] = {"seconds": best, "scores": np.asarray(scores, dtype=np.float64).tolist()}
    out["peak_rss_mib"] = _peak_rss_mib()
    out["rss_after_imports_mib"] = rss_before
    if args.device.startswith("cuda"):
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    Path(args.result).write_text(json.dumps(out), encoding="utf-8")
    return 0


# ----------------------------------------------------------------------------------------------- GEMM probe
def gemm_probe(threads: int, m: int = 2048, k: int = 384, n: int = 1536, iters: int = 10) -> dict[str, Any]:
    """Raw matrix-product throughput (GFLOP/s) of this CPU at a MiniLM feed-forward shape (``m`` tokens x
    ``k`` x ``n``): ONNX Runtime fp32 ``MatMul`` and int8 ``MatMulInteger`` (uint8 x int8, what quantised
    rerankers run), torch fp32 and bf16. The int8 / fp32 ratio bounds what any int8 path can gain on this
    CPU: without VNNI/AMX it is about 1."""
    import numpy as np
    import torch

    def best_seconds(call: Any) -> float:
        call()
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(iters):
                call()
            best = min(best, (time.perf_counter() - t0) / iters)
        return best

    flop = 2 * m * k * n
    out: dict[str, Any] = {"shape": [m, k, n], "threads": threads}
    rng = np.random.default_rng(0)
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        for kind, op, (ta, tb, ty), feed in (
            (
                "ort_fp32",
                "MatMul",
                (TensorProto.FLOAT,) * 3,
                {"a": rng.random((m, k), dtype=np.float32), "b": rng.random((k, n), dtype=np.float32)},
            ),
            (
                "ort_int8",
                "MatMulInteger",
                (TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32),
                {
                    "a": rng.integers(0, 255, (m, k), dtype=np.uint8),
                    "b": rng.integers(-127, 127, (k, n), dtype=np.int8),
                },
            ),
        ):
            graph = helper.make_graph(
                [helper.make_node(op, ["a", "b"], ["y"])],
                kind,
                [
                    helper.make_tensor_value_info("a", ta, [m, k]),
                    helper.make_tensor_value_info("b", tb, [k, n]),
                ],
                [helper.make_tensor_value_info("y", ty, [m, n])],
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(
                helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                options,
                providers=["CPUExecutionProvider"],
            )
            out[f"{kind}_gflops"] = round(
                flop / best_seconds(lambda s=session, f=feed: s.run(None, f)) / 1e9, 1
            )
        out["ort_int8_over_fp32"] = round(out["ort_int8_gflops"] / out["ort_fp32_gflops"], 2)
    except ImportError as err:
        out["ort"] = f"not measured: {err}"
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.rand(m, k, dtype=dtype), torch.rand(k, n, dtype=dtype)
            name = f"torch_{str(dtype).removeprefix('torch.')}_gflops"
            out[name] = round(flop / best_seconds(lambda a=a, b=b: a @ b) / 1e9, 1)
    finally:
        torch.set_num_threads(previous)
    return out


# ----------------------------------------------------------------------------------------------- parent
def _build_set(name: str, n_pairs: int, depth: int, split: str) -> dict[str, Any]:
    """The first queries of ``name``'s ``split`` times their BM25 top ``depth`` documents (~``n_pairs``)."""
    from winnow.retrieval.bm25 import BM25Retriever
    from winnow.retrieval.corpus import load_beir

    dataset = load_beir(DATASETS / name)
    queries = dataset.split_queries(split)
    chosen = list(queries.items())[: max(1, math.ceil(n_pairs / depth))]
    texts = {p.id: p.full_text() for p in dataset.corpus}
    bm25 = BM25Retriever(dataset.corpus)
    hits = bm25.retrieve_batch([text for _, text in chosen], top_k=depth)
    pairs, owners = [], []
    for (qid, qtext), query_hits in zip(chosen, hits, strict=True):
        for hit in query_hits:
            pairs.append([qtext, texts[hit.doc_id]])
            owners.append([qid, hit.doc_id, float(hit.score)])
    qrels = {qid: dataset.qrels[split].get(qid, {}) for qid, _ in chosen}
    return {"pairs": pairs, "owners": owners, "qrels": qrels, "queries": len(chosen), "split": split}


def _ndcg10(owners: list[list[Any]], scores: list[float], qrels: dict[str, dict[str, int]]) -> float:
    import ir_measures
    from ir_measures import nDCG

    run: dict[str, dict[str, float]] = {}
    for (qid, doc_id, _), score in zip(owners, scores, strict=True):
        run.setdefault(qid, {})[doc_id] = float(score)
    qrels = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    return float(ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10])


def _token_stats(model: str, pairs: list[list[str]], max_length: int) -> dict[str, float]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    enc = tokenizer(
        [q for q, _ in pairs], [d for _, d in pairs], truncation=True, max_length=max_length, verbose=False
    )
    lengths = [len(ids) for ids in enc["input_ids"]]
    full = tokenizer([q for q, _ in pairs], [d for _, d in pairs], verbose=False)["input_ids"]
    return {
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "truncated_share": round(sum(len(ids) > max_length for ids in full) / len(full), 3),
    }


def _model_max_length(model: str) -> int:
    """The model's own maximum: its winnow card's ``max_length``, sentence-transformers' ``max_seq_length``,
    the tokenizer's ``model_max_length``; else 512."""
    from winnow.rerank.models import read_model_json

    for file, key in (
        ("winnow.json", "max_length"),
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        value = (read_model_json(model, file) or {}).get(key)
        if isinstance(value, int) and 0 < value <= 100_000:
            return value
    return 512


def _markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    cpu = report["cpu"]
    flags = ", ".join(f"{k.upper()} {'yes' if v else 'no'}" for k, v in cpu["isa"].items())
    lines = [
        "# Rerank speed: the same pairs, every method, one run",
        "",
        f"Device: **{report['device_name']}** ({cfg['device']}), {cfg['threads']} torch threads, "
        f"{report['cpu_count']} cores visible. Model: {cfg['model_note']}. max_length {cfg['max_length']}, "
        f"best of {cfg['repeats']} timed run(s) after a warm-up.",
        "",
        f"CPU: {cpu['name']}, {cpu['cores']} logical cores; {flags}.",
        "",
    ]
    gemm = cpu.get("gemm") or {}
    if "torch_float32_gflops" in gemm:
        lines += [
            f"Raw matrix products ({' x '.join(map(str, gemm['shape']))}, {gemm['threads']} threads, "
            "GFLOP/s): "
            f"ONNX Runtime fp32 {gemm.get('ort_fp32_gflops', '-')}, int8 {gemm.get('ort_int8_gflops', '-')} "
            f"(int8 / fp32 = {gemm.get('ort_int8_over_fp32', '-')}: the most any int8 path can gain here); "
            f"torch fp32 {gemm['torch_float32_gflops']}, bf16 {gemm['torch_bfloat16_gflops']}.",
            "",
        ]
    for name, s in report["sets"].items():
        lines += [
            f"## {name} ({s['split']}): {s['pairs']} pairs, {s['queries']} queries x BM25 top "
            f"{cfg['depth']}, "
            f"mean {s['mean_tokens']} tokens a pair, {s['truncated_share']:.0%} truncated",
            "",
            "| method | pairs/s | x st-predict | x haystack | nDCG@10 | change vs fp32 torch "
            "| max abs score diff vs st-predict |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| BM25 order (no rerank) | - | - | - | {s['bm25_ndcg10']:.4f} | - | - |",
        ]
        for method, r in s["methods"].items():
            lines.append(
                f"| {method} | {r['pairs_per_s']} | {r['ratio_to_st_predict']} | {r['ratio_to_haystack']} "
                f"| {r['ndcg10']:.4f} | {r['ndcg10_change_vs_fp32']:+.4f} "
                f"| {r['max_abs_diff_vs_st_predict']:.2e} |"
            )
        lines.append("")
    lines += [
        "## All sets together (mixed lengths)",
        "",
        "| method | pairs/s | x st-predict | x haystack | worst nDCG@10 change vs fp32 | default-safe "
        "(>= -0.005) | peak RSS MiB | RSS after imports MiB | load s |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for method, r in report["overall"].items():
        safe = "yes" if r["worst_ndcg10_change_vs_fp32"] >= -0.005 else "**no**"
        lines.append(
            f"| {method} | {r['pairs_per_s']} | {r['ratio_to_st_predict']} | {r['ratio_to_haystack']} "
            f"| {r['worst_ndcg10_change_vs_fp32']:+.4f} | {safe} | {r['peak_rss_mib']} "
            f"| {r['rss_after_imports_mib']} | {r['load_s']} |"
        )
    if report.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in report["skipped"].items())]
    lines += [
        "",
        "pairs/s = pairs / wall seconds of the timed call(s), tokenisation included. Peak RSS = the worker "
        "process's VmHWM (one process per method, interpreter and torch included).",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="cross-encoder folder (default: see above)")
    parser.add_argument(
        "--sets",
        default="scifact,financebench,checkthat2020-task2",
        help="dataset folders under shared/datasets",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--pairs", type=int, default=300, help="about this many pairs per set")
    parser.add_argument("--depth", type=int, default=10, help="BM25 candidates per query")
    parser.add_argument(
        "--max-length", type=int, default=None, help="tokens per pair for every method (default: the model's)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads, every method"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--calibration-pairs", type=int, default=256, help="int8 calibration (training data)")
    parser.add_argument(
        "--emulated-bf16", action="store_true", help="time winnow-torch-bf16 on a CPU without native bf16 too"
    )
    parser.add_argument(
        "--quantized-dir",
        default=None,
        help="keep exported/quantised models here (default: a temporary folder)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "rerank_speed")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        return _worker(args)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    skipped: dict[str, str] = {}
    if "haystack" in methods:
        try:
            import haystack_integrations.components.rankers.sentence_transformers  # noqa: F401
        except ImportError as err:
            skipped["haystack"] = f"sentence-transformers-haystack not importable ({err})"
            methods.remove("haystack")
    if args.device == "cpu" and "winnow-torch-bf16" in methods and not args.emulated_bf16:
        from winnow.retrieval.device import cpu_has_native_bf16

        if not cpu_has_native_bf16():  # slow when emulated, and never winnow's choice
            skipped["winnow-torch-bf16"] = (
                "this CPU has no native bf16 (AVX512-BF16/AMX): torch emulates it (see the GEMM probe's bf16 "
                "figure) and winnow's dtype='auto' runs fp32 here; --emulated-bf16 times it anyway"
            )
            methods.remove("winnow-torch-bf16")
    cpu_only = [m for m in methods if m.startswith(CPU_ONLY)]
    if cpu_only and args.device != "cpu":
        skipped.update({m: "ONNX Runtime / OpenVINO backends run on CPU only" for m in cpu_only})
        methods = [m for m in methods if m not in cpu_only]
    elif cpu_only:
        from winnow.rerank.quantized import QUANTIZED_BACKENDS, backend_missing

        for method in cpu_only:
            backend = method.removeprefix("winnow-")
            missing = backend_missing(backend, building=True) if backend in QUANTIZED_BACKENDS else None
            try:
                import onnx as _onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            except ImportError as err:
                missing = f"onnxruntime/onnx not importable ({err})"
            if missing:
                skipped[method] = missing
                methods.remove(method)
    with tempfile.TemporaryDirectory(prefix="winnow-rerank-speed-") as tmp:
        tmp_path = Path(tmp)
        model, note = pick_model(args.model, tmp_path)
        if args.max_length is None:
            args.max_length = _model_max_length(model)
        quantized_dir = args.quantized_dir or str(tmp_path / "quantized")
        sets: dict[str, dict[str, Any]] = {}
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            print(f"building pairs for {name} ...", flush=True)
            sets[name] = _build_set(name, args.pairs, args.depth, args.split)
            sets[name].update(_token_stats(model, sets[name]["pairs"], args.max_length))
        pairs_file = tmp_path / "pairs.json"
        pairs_file.write_text(
            json.dumps({n: {"pairs": s["pairs"]} for n, s in sets.items()}), encoding="utf-8"
        )
        results: dict[str, dict[str, Any]] = {}
        for method in methods:
            print(f"{method}: scoring ...", flush=True)
            result = tmp_path / f"{method}.json"
            cmd = [sys.executable, __file__, "--worker", method, "--pairs-file", str(pairs_file)]
            cmd += ["--result", str(result), "--model", model, "--device", args.device]
            cmd += ["--threads", str(args.threads), "--max-length", str(args.max_length)]
            cmd += ["--repeats", str(args.repeats), "--quantized-dir", quantized_dir]
            cmd += ["--calibration-pairs", str(args.calibration_pairs)]
            proc = subprocess.run(cmd, check=False)
            if proc.returncode != 0 or not result.is_file():
                skipped[method] = f"worker failed with exit code {proc.returncode}"
                continue
            results[method] = json.loads(result.read_text(encoding="utf-8"))

    import numpy as np

    reference = "st-predict" if "st-predict" in results else next(iter(results))
    stock = "haystack" if "haystack" in results else reference
    exact = "winnow-torch" if "winnow-torch" in results else reference  # fp32: the quality reference
    report_sets: dict[str, Any] = {}
    for name, s in sets.items():
        ref_time = results[reference]["sets"][name]["seconds"]
        ref_scores = np.asarray(results[reference]["sets"][name]["scores"])
        stock_time = results[stock]["sets"][name]["seconds"]
        exact_ndcg = _ndcg10(s["owners"], results[exact]["sets"][name]["scores"], s["qrels"])
        rows = {}
        for method, r in results.items():
            run = r["sets"][name]
            n = len(s["pairs"])
            rows[method] = {
                "seconds": round(run["seconds"], 3),
                "pairs_per_s": round(n / run["seconds"], 1),
                "ratio_to_st_predict": round(ref_time / run["seconds"], 2),
                "ratio_to_haystack": round(stock_time / run["seconds"], 2),
                "ndcg10": round(_ndcg10(s["owners"], run["scores"], s["qrels"]), 4),
                "ndcg10_change_vs_fp32": round(
                    _ndcg10(s["owners"], run["scores"], s["qrels"]) - exact_ndcg, 4
                ),
                "max_abs_diff_vs_st_predict": float(np.max(np.abs(np.asarray(run["scores"]) - ref_scores))),
            }
        report_sets[name] = {
            "split": s["split"],
            "pairs": len(s["pairs"]),
            "queries": s["queries"],
            "mean_tokens": s["mean_tokens"],
            "truncated_share": s["truncated_share"],
            "bm25_ndcg10": round(_ndcg10(s["owners"], [o[2] for o in s["owners"]], s["qrels"]), 4),
            "methods": rows,
        }
    total_pairs = sum(len(s["pairs"]) for s in sets.values())
    overall = {}
    ref_total = sum(r["seconds"] for r in results[reference]["sets"].values())
    stock_total = sum(r["seconds"] for r in results[stock]["sets"].values())
    for method, r in results.items():
        seconds = sum(x["seconds"] for x in r["sets"].values())
        overall[method] = {
            "pairs_per_s": round(total_pairs / seconds, 1),
            "ratio_to_st_predict": round(ref_total / seconds, 2),
            "ratio_to_haystack": round(stock_total / seconds, 2),
            # the quality guard: the worst nDCG@10 change against fp32 torch over the sets
            "worst_ndcg10_change_vs_fp32": min(
                x["methods"][method]["ndcg10_change_vs_fp32"] for x in report_sets.values()
            ),
            "peak_rss_mib": r["peak_rss_mib"],
            "rss_after_imports_mib": r["rss_after_imports_mib"],
            "load_s": r["load_s"],
            "max_length": r["max_length"],
            **({"peak_cuda_mib": r["peak_cuda_mib"]} if "peak_cuda_mib" in r else {}),
        }
    import torch

    from winnow.rerank.quantize_check import cpu_info

    report = {
        "device_name": device_name(args.device),
        "cpu_count": os.cpu_count(),
        "cpu": {**cpu_info(), "gemm": gemm_probe(args.threads) if args.device == "cpu" else None},
        "torch": torch.__version__,
        "config": {
            "device": args.device,
            "threads": args.threads,
            "model": model,
            "model_note": note,
            "max_length": args.max_length,
            "depth": args.depth,
            "pairs_per_set": args.pairs,
            "repeats": args.repeats,
            "calibration_pairs": args.calibration_pairs,
        },
        "sets": report_sets,
        "overall": overall,
        "skipped": skipped,
        "command": " ".join(["python", "benchmarks/rerank_speed.py", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(_markdown(report), encoding="utf-8")
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
