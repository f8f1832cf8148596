"""ONNX Runtime graph variants of a cross-encoder against torch fp32, on the same pairs, in one process.

A side experiment of issue 21 (what int8 and graph fusion give on the CPU at hand), kept so that its
figures can be rerun. Variants, each scoring the same length-sorted, token-budgeted batches:

- ``torch-fp32``: the model in torch (the quality reference: nDCG@10 changes are against it);
- ``torch-dynamic-int8``: ``torch.ao.quantization.quantize_dynamic`` on every ``Linear`` (fbgemm);
- ``ort-fp32``: winnow's ONNX export (``backend="onnx"``) in ONNX Runtime, all graph optimisations on;
- ``ort-fused-fp32``: the export through ONNX Runtime's transformer optimiser (``model_type="bert"``:
  fused Attention, SkipLayerNormalization, BiasGelu);
- ``ort-fused-dynamic-int8`` / ``-7bit``: that fused graph with dynamic int8 weights, per channel, 8-bit or
  7-bit (``reduce_range``, which CPUs without VNNI need against overflow);
- ``ort-dynamic-int8-7bit``: the unfused export with per-channel 7-bit dynamic int8.

Pairs: the first ``--queries`` queries of dev/train splits (never test) times their BM25 top 10, as the
quality check of ``rerank.quantize_check`` draws them. Timing: best of ``--repeats`` after a warm-up, wall
seconds, tokenisation included; the report also holds ``rerank_speed.gemm_probe`` for this CPU. Writes
``benchmarks/results/onnx_graph_variants.json`` and ``.md``.

    python benchmarks/onnx_graph_variants.py --threads 2     # ~10 min on 2 AVX2 cores
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import pick_model
from rerank_speed import DATASETS, RESULTS, gemm_probe

SETS = "scifact:train,checkthat2020-task2:dev,tatqa:dev"
TOKEN_BUDGET = 4096  # tokens a batch (rows x padded length), as the engine batches on CPU


def _batches(tokenizer: Any, pairs: list[tuple[str, str]], max_length: int) -> list[tuple[np.ndarray, dict]]:
    enc = tokenizer(
        [q for q, _ in pairs], [d for _, d in pairs], truncation=True, max_length=max_length, verbose=False
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]
    lengths = np.array([len(ids) for ids in enc["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    out, start = [], 0
    while start < len(order):
        width = int(lengths[order[start]])
        rows = order[start : start + max(1, TOKEN_BUDGET // width)]
        start += len(rows)
        feed = {name: np.zeros((len(rows), width), dtype=np.int64) for name in names}
        for r, i in enumerate(rows):
            for name in names:
                feed[name][r, : lengths[i]] = enc[name][i]
        out.append((rows, feed))
    return out


def _variants(model: str, folder: Path, threads: int) -> dict[str, Any]:
    """name -> callable(feed) -> logits; builds the ONNX files in ``folder``."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from winnow.rerank.engine import CrossEncoderEngine

    CrossEncoderEngine(model, backend="onnx", onnx_dir=folder, device="cpu").score_pairs([("a", "b")])
    config = AutoConfig.from_pretrained(model)
    fused = optimize_model(
        str(folder / "model.onnx"),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=1,
    )
    fused.save_model_to_file(str(folder / "fused.onnx"))
    files = {"ort-fp32": "model.onnx", "ort-fused-fp32": "fused.onnx"}
    for name, source, reduce_range in (
        ("ort-fused-dynamic-int8", "fused.onnx", False),
        ("ort-fused-dynamic-int8-7bit", "fused.onnx", True),
        ("ort-dynamic-int8-7bit", "model.onnx", True),
    ):
        files[name] = f"{name}.onnx"
        quantize_dynamic(
            str(folder / source),
            str(folder / files[name]),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused ops' outputs
        )
    net = AutoModelForSequenceClassification.from_pretrained(model, dtype=torch.float32).eval()

    def torch_runner(module: Any) -> Any:
        def run(feed: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                return module(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.float().numpy()

        return run

    def ort_runner(path: Path) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = [i.name for i in session.get_inputs()]
        return lambda feed: session.run(None, {k: feed[k] for k in inputs})[0]

    runners = {
        "torch-fp32": torch_runner(net),
        "torch-dynamic-int8": torch_runner(
            torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
        ),
    }
    runners.update({name: ort_runner(folder / file) for name, file in files.items()})
    return runners


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="cross-encoder folder (default: winnow-general)")
    parser.add_argument("--sets", default=SETS, help="dataset:split,... (dev or train splits)")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, default=RESULTS / "onnx_graph_variants")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from winnow.rerank.quantize_check import beir_check_set, cpu_info, ndcg10

    torch.set_num_threads(args.threads)
    sets = []
    for spec in args.sets.split(","):
        name, split = spec.split(":")
        sets.append(beir_check_set(DATASETS / name, split, queries=args.queries))
    with tempfile.TemporaryDirectory(prefix="winnow-onnx-variants-") as tmp:
        model, note = pick_model(args.model, Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(model)
        runners = _variants(model, Path(tmp) / "onnx", args.threads)
        batches = {s.name: _batches(tokenizer, s.pairs, args.max_length) for s in sets}
        results: dict[str, dict[str, Any]] = {}
        for variant, run in runners.items():
            results[variant] = {}
            for s in sets:
                run(batches[s.name][-1][1])  # warm-up on the shortest batch
                best, scores = math.inf, np.zeros(len(s.pairs), dtype=np.float32)
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    tokenised = _batches(tokenizer, s.pairs, args.max_length)  # tokenisation counts
                    for rows, feed in tokenised:
                        scores[rows] = run(feed).reshape(-1)
                    best = min(best, time.perf_counter() - t0)
                results[variant][s.name] = {"seconds": best, "scores": scores.copy()}
            print(
                variant,
                {
                    k: round(len(s.pairs) / v["seconds"], 1)
                    for s, (k, v) in zip(sets, results[variant].items(), strict=True)
                },
                flush=True,
            )
    rows: dict[str, dict[str, Any]] = {}
    for variant, per_set in results.items():
        rows[variant] = {}
        for s in sets:
            ref, mine = results["torch-fp32"][s.name], per_set[s.name]
            rows[variant][s.name] = {
                "pairs_per_s": round(len(s.pairs) / mine["seconds"], 1),
                "speed_vs_torch_fp32": round(ref["seconds"] / mine["seconds"], 2),
                "ndcg10_change_vs_fp32": round(
                    ndcg10(s.owners, mine["scores"], s.qrels) - ndcg10(s.owners, ref["scores"], s.qrels), 4
                ),
                "max_abs_score_diff": round(float(np.abs(mine["scores"] - ref["scores"]).max()), 3),
            }
    report = {
        "cpu": {**cpu_info(), "gemm": gemm_probe(args.threads)},
        "config": {**{k: v for k, v in vars(args).items() if k != "out"}, "model": model, "model_note": note},
        "sets": {s.name: {"split": s.split, "pairs": len(s.pairs), "queries": s.queries} for s in sets},
        "variants": rows,
        "command": " ".join(["python", "benchmarks/onnx_graph_variants.py", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    gemm = report["cpu"]["gemm"]
    isa = ", ".join(k.upper() for k, v in report["cpu"]["isa"].items() if v) or "none listed"
    lines = [
        "# ONNX Runtime graph variants vs torch fp32 (same pairs, one run)",
        "",
        f"CPU: {report['cpu']['name']} ({isa}), {args.threads} threads. Raw GEMM GFLOP/s: ORT fp32 "
        f"{gemm.get('ort_fp32_gflops')}, ORT int8 {gemm.get('ort_int8_gflops')}, torch fp32 "
        f"{gemm.get('torch_float32_gflops')}, torch bf16 {gemm.get('torch_bfloat16_gflops')}. "
        f"Model: {note}, max_length {args.max_length}.",
        "",
        "| variant | "
        + " | ".join(f"{s.name} ({s.split}) pairs/s, x fp32, nDCG@10 change" for s in sets)
        + " |",
        "|---|" + "---|" * len(sets),
    ]
    for variant, per_set in rows.items():
        cells = [
            f"{r['pairs_per_s']}, {r['speed_vs_torch_fp32']}x, {r['ndcg10_change_vs_fp32']:+.4f}"
            for r in per_set.values()
        ]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{report['command']}`", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
