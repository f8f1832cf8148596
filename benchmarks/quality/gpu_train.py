"""The general stage on one GPU, end to end, into one output folder: ``make gpu-train OUT=dir``.

Phases (each timed in OUT/train.log and OUT/summary.json):

1. data: SQuAD v1.1 train (all 87,599 questions) with bm25s and dense hard negatives, mined on the machine
   (paragraphs embedded with the packaged all-MiniLM-L6-v2), plus the QED-NQ train pairs;
2. train: ``winnow finetune``'s code (rerank.training.finetune) from the packaged MiniLM with a fresh head,
   256 tokens, bf16, batch 256, lr 2e-4 (sqrt-scaled from the users' 16 / 5e-5), steps planned to fit
   --train-seconds at an assumed throughput and cut by a wall-clock guard; checkpoints in WORK, so the same
   command resumes a killed run;
3. export: the fp16 model in safetensors shards of at most 15 MB (OUT/model), its card taking the shipped
   model's interpolation weight;
4. eval: zero-shot on every shared test split over its best first stage (``winnow eval``'s code path), the new
   model and the shipped rerank/models/winnow-general on the same candidates (OUT/reports);
5. decide: ship only if it beats the shipped model zero-shot with no significant loss on any set
   (summary.json "decision"); installing it stays a separate, reviewed step (ship_general.py).

``--bundle`` packs OUT/model and OUT/reports into OUT/bundle.tar.NN parts of at most 15 MiB, so that what the
device tool returns (at most 8 files of 16 MiB) holds everything: ``cat bundle.tar.* | tar -x``.

    python benchmarks/quality/gpu_train.py --out OUT                      # on a CUDA machine
    python benchmarks/quality/gpu_train.py --out /tmp/smoke --smoke       # CPU, about a minute
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets"
SHIPPED = ROOT / "rerank" / "models" / "winnow-general"
BUNDLE_PART = 15 * 2**20  # the device tool returns files of at most 16 MiB, at most 8 of them
SHARD = "15MB"

logger = logging.getLogger("gpu_train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder: model, reports, summary, log")
    p.add_argument(
        "--work", type=Path, default=None, help="checkpoints (default: work/gpu-train, or OUT/.work)"
    )
    p.add_argument("--datasets", type=Path, default=DEFAULT_DATA, help="the shared BEIR folders")
    p.add_argument("--base", default=None, help="model to start from (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--embedder", default=None, help="bi-encoder for dense negatives and first stages")
    p.add_argument("--shipped", default=str(SHIPPED), help="model to compare with (default: winnow-general)")
    p.add_argument("--device", default=None, help="cuda (default when there is one) or cpu")
    p.add_argument("--questions", type=int, default=None, help="SQuAD train questions (default: all)")
    p.add_argument("--qed-queries", type=int, default=None, help="QED-NQ train queries (default: all)")
    p.add_argument("--bm25-negatives", type=int, default=2)
    p.add_argument("--dense-negatives", type=int, default=2)
    p.add_argument("--skip-top", type=int, default=1, help="non-relevant hits skipped before negatives")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None, help="default: 5e-5 * sqrt(batch / 16)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=None, help="overrides the planned steps")
    p.add_argument("--train-seconds", type=float, default=300.0, help="wall-clock budget of the training")
    p.add_argument(
        "--pairs-per-second", type=float, default=2000.0, help="assumed throughput the steps are planned on"
    )
    p.add_argument("--eval-fraction", type=float, default=0.01, help="questions held apart during training")
    p.add_argument(
        "--eval-queries", type=int, default=None, help="first N test queries per set (default all)"
    )
    p.add_argument("--eval-docs", type=int, default=None, help="cut each test corpus (smoke runs)")
    p.add_argument(
        "--eval-max-length",
        type=int,
        default=None,
        help="tokens per pair in evaluation (default: each model's)",
    )
    p.add_argument("--workers", type=int, default=None, help="tokenizing processes (default 4 on CUDA)")
    p.add_argument("--fp32", action="store_true", help="no bf16 (default: bf16 on CUDA)")
    p.add_argument("--bundle", action="store_true", help="pack model and reports into bundle.tar.NN parts")
    p.add_argument("--resamples", type=int, default=None, help="permutation/bootstrap resamples per test")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="reports without .png plots")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="the CPU smoke configuration: 100 SQuAD questions over 300 other paragraphs, 50 QED-NQ queries, "
        "2 steps of 16 pairs at 128 tokens, fp32, 2 test queries per set over a 100-document slice of each "
        "corpus, read at 128 tokens, no plots (options given explicitly still win)",
    )
    args = p.parse_args(argv)
    if args.smoke:
        smoke = {
            "questions": 100,
            "qed_queries": 50,
            "max_steps": 2,
            "batch_size": 16,
            "max_length": 128,
            "eval_fraction": 0.1,
            "eval_queries": 2,
            "eval_docs": 100,
            "eval_max_length": 128,
            "train_seconds": 120.0,
            "resamples": 200,
            "plots": False,
        }
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:])}
        given |= {"plots"} if "no_plots" in given else set()
        for key, value in smoke.items():
            if key not in given:
                setattr(args, key, value)
        args.fp32 = True
        args.device = args.device or "cpu"
    return args


def setup_logging(out: Path) -> None:
    """Log to OUT/train.log and stdout."""
    out.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (
        logging.FileHandler(out / "train.log", encoding="utf-8"),
        logging.StreamHandler(sys.stdout),
    ):
        handler.setFormatter(fmt)
        root.addHandler(handler)


class Phases:
    """Times each phase, logs it and keeps the figures for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        logger.info("phase %s: start", name)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - t0, 2)
        logger.info("phase %s: done in %.1f s (total %.1f s)", name, self.seconds[name], self.total())
        return result

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 2)


def environment(device: str) -> dict[str, Any]:
    """Python, torch and GPU, for the summary."""
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    return info


def load_squad(args: argparse.Namespace) -> Any:
    """SQuAD v1.1 (a slice of its train split in a smoke run)."""
    from winnow.rerank.training.general_stage import slice_dataset
    from winnow.retrieval.corpus import load_beir

    squad = load_beir(args.datasets / "squad-v1.1")
    if args.smoke:  # its questions over their own paragraphs and 300 others
        squad = slice_dataset(squad, "train", max_queries=args.questions, max_docs=300)
    return squad


def train(args: argparse.Namespace, training_set: Any, plan: Any, device: str, work: Path) -> dict[str, Any]:
    from winnow.rerank.card import read_card
    from winnow.rerank.training.finetune import TrainingRecipe, finetune
    from winnow.rerank.training.general_stage import TimeBudget
    from winnow.retrieval.embedder import packaged_minilm_path

    model_dir = work / "model"
    card = read_card(model_dir) if (model_dir / "winnow.json").is_file() else None
    if card and card.get("training", {}).get("global_steps", 0) >= plan.steps:
        logger.info("%s already trained (%d steps): skipping", model_dir, card["training"]["global_steps"])
        return card
    on_cuda = device.startswith("cuda")
    recipe = TrainingRecipe(
        batch_size=plan.batch_size,
        learning_rate=plan.learning_rate,
        max_length=args.max_length,
        max_steps=plan.steps,
        eval_steps=max(plan.steps // 4, min(plan.steps, 2)),  # four evaluations (one in a smoke run)
        logging_steps=max(1, min(25, plan.steps // 20)),
        seed=args.seed,
        bf16=False if args.fp32 else None,
        dataloader_num_workers=args.workers if args.workers is not None else (4 if on_cuda else 0),
    )
    budget = TimeBudget(args.train_seconds)
    card = finetune(
        training_set,
        model_dir,
        base=args.base or packaged_minilm_path(),
        recipe=recipe,
        device=device,
        show_progress=False,
        keep_checkpoints=True,  # a rerun resumes; a finished run's checkpoints stay out of OUT
        tune_weight_split=None,  # a general model's weight is a stated prior, copied from the shipped card
        eval_depth=20,
        command=shlex.join(["python", "benchmarks/quality/gpu_train.py", *sys.argv[1:]]),
        callbacks=[budget],
    )
    card["training"]["stopped_by_time_budget_at_step"] = budget.stopped_at_step
    return card


def export(work: Path, out: Path, shipped: str) -> dict[str, Any]:
    from winnow.rerank.card import card_interpolation_weight, read_card, save_card
    from winnow.rerank.training.finetune import save_fp16_copy

    target = out / "model"
    if target.exists():
        shutil.rmtree(target)
    save_fp16_copy(work / "model", target, max_shard_size=SHARD)
    card = read_card(target) or {}
    shipped_weight = card_interpolation_weight(read_card(shipped))
    if shipped_weight:  # a general model has no domain dev split: its weight is a stated prior
        weight, source = shipped_weight, "copied from the shipped model's card (a stated prior, not tuned)"
    else:  # none, or 0 (the shipped default keeps the first stage's order): rerank at equal weight
        weight, source = 0.5, "equal-weight fusion, a prior fixed before any evaluation (not tuned)"
    card["interpolation"] = {"weight": weight, "source": source, "split": None}
    save_card(target, card)
    shards = sorted(p.name for p in target.glob("*.safetensors"))
    size = sum(p.stat().st_size for p in target.iterdir() if p.is_file())
    logger.info(
        "fp16 model: %s (%d shards, %.1f MiB), weight %.2f", target, len(shards), size / 2**20, weight
    )
    return {"folder": "model", "shards": shards, "mib": round(size / 2**20, 2), "weight": weight}


def bundle(out: Path, folders: tuple[str, ...] = ("model", "reports")) -> list[str]:
    """Pack ``folders`` of ``out`` into ``bundle.tar.NN`` parts of at most 15 MiB and remove them."""
    tar_path = out / "bundle.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in folders:
            if (out / name).exists():
                tar.add(out / name, arcname=name)
    parts = []
    with tar_path.open("rb") as handle:
        while chunk := handle.read(BUNDLE_PART):
            part = out / f"bundle.tar.{len(parts):02d}"
            part.write_bytes(chunk)
            parts.append(part.name)
    tar_path.unlink()
    for name in folders:
        shutil.rmtree(out / name, ignore_errors=True)
    return parts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = args.out.resolve()
    setup_logging(out)
    work = (args.work or (out / ".work" if args.smoke else ROOT / "work" / "gpu-train")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    import torch

    from winnow.rerank.training.general_stage import (
        compare_zero_shot,
        mine_general,
        plan_training,
        ship_decision,
    )
    from winnow.rerank.training.pairs import build_training_set
    from winnow.retrieval.device import resolve_device
    from winnow.retrieval.embedder import Embedder

    device = resolve_device(args.device)
    if not device.startswith("cuda") and not args.smoke and args.device != "cpu":
        logger.error("no CUDA GPU: the full run takes hours on a CPU; use --smoke, or --device cpu to insist")
        return 2
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    phases = Phases()
    summary: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/quality/gpu_train.py", *(argv or sys.argv[1:])]),
        "smoke": args.smoke,
        "environment": environment(device),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    logger.info("device %s; output %s; checkpoints %s", device, out, work)

    squad = phases.run("load_squad", load_squad, args)
    embedder = Embedder(args.embedder, device=device, show_progress=False).load()
    qed = args.datasets / "qed-nq" / "pairs" / "train.jsonl"
    sources, mining = phases.run(
        "mine",
        mine_general,
        squad,
        qed if qed.is_file() else None,
        embedder=embedder,
        questions=args.questions,
        bm25_negatives=args.bm25_negatives,
        dense_negatives=args.dense_negatives,
        skip_top=args.skip_top,
        seed=args.seed,
        device=device,
        qed_queries=args.qed_queries,
    )
    training_set = build_training_set(sources, eval_fraction=args.eval_fraction, seed=args.seed)
    plan = plan_training(
        len(training_set.train),
        batch_size=args.batch_size,
        epochs=args.epochs,
        budget_seconds=args.train_seconds,
        pairs_per_second=args.pairs_per_second,
        learning_rate=args.lr,
        max_steps=args.max_steps,
    )
    logger.info("plan: %s", plan.to_dict())
    summary.update(mining_seconds=mining, data=training_set.summary(), plan=plan.to_dict())

    card = phases.run("train", train, args, training_set, plan, device, work)
    record = card.get("training", {})
    steps, seconds = record.get("global_steps") or 0, record.get("seconds") or 0
    measured = (
        round(steps * plan.batch_size / seconds, 1) if seconds and not record.get("resumed_from") else None
    )
    summary["training"] = {**record, "pairs_per_second_measured": measured, "eval": card.get("eval")}

    summary["model"] = phases.run("export", export, work, out, args.shipped)
    comparisons, per_set = phases.run(
        "eval",
        compare_zero_shot,
        args.datasets,
        {"candidate": str(out / "model"), "shipped": args.shipped},
        out / "reports",
        embedder=embedder,
        device=device,
        max_queries=args.eval_queries,
        max_docs=args.eval_docs,
        n_resamples=args.resamples,
        plots=args.plots,
        max_length=args.eval_max_length,
    )
    complete = args.eval_queries is None and args.eval_docs is None
    decision = ship_decision(comparisons, complete=complete)
    summary.update(
        eval_seconds=per_set,
        zero_shot=[c.to_dict() for c in comparisons],
        decision=decision.to_dict(),
        phases_seconds=phases.seconds,
        total_seconds=phases.total(),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    logger.info("decision: %s (%s)", "SHIP" if decision.ship else "do not ship", "; ".join(decision.reasons))
    if args.bundle:
        summary["bundle"] = bundle(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"{'SHIP' if decision.ship else 'do not ship'}: {'; '.join(decision.reasons)}")
    print(f"summary: {out / 'summary.json'} ({phases.total():.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
