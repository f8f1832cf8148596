"""``winnow finetune``: train a cross-encoder reranker on BEIR splits and/or pairs files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from winnow.api.cli.options import add_common, emit, non_negative_int, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a cross-encoder reranker on a BEIR train split and/or pairs files",
        description="Fine-tune a cross-encoder with sentence-transformers' CrossEncoderTrainer (defaults: "
        "BCE on raw logits, batch 16, lr 5e-5, 10%% warmup, seed 42, 1 epoch). Positives come from the "
        "qrels, hard negatives are mined with the first stage; a share of the training queries is held "
        "apart for evaluation, and an interpolation weight with the first stage is tuned on a dev split. "
        "Writes MODEL_DIR (loadable by CrossEncoder(path)) with README.md and winnow.json model cards. "
        "Rerunning the same command resumes from the last checkpoint.",
    )
    _add_data_options(p)
    _add_recipe_options(p)
    _add_mining_options(p)
    _add_tuning_options(p)
    add_common(p)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    """Training data, output folder and base model."""
    p.add_argument(
        "--dataset",
        action="append",
        type=Path,
        default=None,
        help="BEIR folder to train on (repeatable: datasets are mixed)",
    )
    p.add_argument(
        "--split", default="train", help="qrels split to train on (default train; dev when there is no train)"
    )
    p.add_argument(
        "--pairs",
        action="append",
        type=Path,
        default=None,
        help="pairs file (.jsonl/.csv/.tsv: query, document, label; or jsonl query/positive/negatives); "
        "repeatable, mixed with --dataset",
    )
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument(
        "--base",
        default=None,
        help="model to start from: folder, winnow short name or hub name "
        "(default: winnow-general when installed, else the packaged all-MiniLM-L6-v2)",
    )


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    """Hyper-parameters of the training recipe."""
    p.add_argument("--epochs", type=float, default=1.0, help="training epochs (default 1)")
    p.add_argument(
        "--max-steps", type=positive_int, default=None, help="stop after N steps (overrides epochs)"
    )
    p.add_argument("--batch-size", type=positive_int, default=16, help="pairs per step (default 16)")
    p.add_argument("--lr", type=float, default=5e-5, help="learning rate (default 5e-5)")
    p.add_argument("--warmup", type=float, default=0.1, help="linear warmup, fraction of steps (default 0.1)")
    p.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="tokens per pair (default: the model's, capped at 256 on CPU, 512 on GPU)",
    )
    p.add_argument(
        "--eval-steps", type=positive_int, default=None, help="evaluate and checkpoint every N steps"
    )
    p.add_argument(
        "--seed", type=int, default=42, help="seed of training, sampling and the split (default 42)"
    )


def _add_mining_options(p: argparse.ArgumentParser) -> None:
    """How hard negatives are mined and how many queries are held apart."""
    p.add_argument(
        "--first-stage",
        action="append",
        choices=("dense", "bm25", "hybrid"),
        default=None,
        help="first stage that mines hard negatives and tunes the weight (default bm25); once for every "
        "--dataset, or once per --dataset in the same order",
    )
    p.add_argument(
        "--index",
        action="append",
        type=Path,
        default=None,
        help="index directory for dense/hybrid mining; once, or once per --dataset in the same order",
    )
    p.add_argument(
        "--store",
        action="append",
        default=None,
        metavar="URI",
        help="instead of --index: an index directory or postgresql://USER:PASS@HOST/DB[?table=T] to mine "
        "with; once, or once per --dataset in the same order",
    )
    p.add_argument("--embedder", default=None, help="bi-encoder for dense/hybrid mining")
    p.add_argument(
        "--hard-negatives", type=non_negative_int, default=4, help="mined negatives per query (default 4)"
    )
    p.add_argument(
        "--skip-top",
        type=non_negative_int,
        default=2,
        help="top-ranked non-relevant documents skipped as likely unjudged positives (default 2)",
    )
    p.add_argument(
        "--random-negatives", type=non_negative_int, default=0, help="random negatives per query (default 0)"
    )
    p.add_argument(
        "--max-queries", type=positive_int, default=None, help="use only the first N queries per dataset"
    )
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=0.1,
        help="share of training queries held apart for evaluation (default 0.1)",
    )


def _add_tuning_options(p: argparse.ArgumentParser) -> None:
    """Interpolation weight tuning and checkpoints."""
    p.add_argument(
        "--tune-weight-split",
        default="auto",
        help="where to tune the interpolation weight: auto (dev if the dataset has one, else the held-apart "
        "training queries), a split name, heldout, or none",
    )
    p.add_argument(
        "--tune-depth",
        type=positive_int,
        default=30,
        help="first-stage candidates per query for tuning and eval",
    )
    p.add_argument(
        "--tune-max-queries",
        type=positive_int,
        default=None,
        help="tune the interpolation weight on at most N queries per dataset (default: all)",
    )
    p.add_argument("--keep-checkpoints", action="store_true", help="keep OUT/checkpoints after training")


def _finetune_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (recorded in the model card; store passwords redacted)."""
    import shlex

    from winnow.retrieval.store_uri import redact_dsn

    parts = ["winnow", "finetune"]
    for key, value in vars(args).items():
        if key in {"command", "verbose", "json"} or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            parts += [flag] if item is True else [flag, redact_dsn(str(item))]
    return shlex.join(parts)


def _per_dataset(flag: str, values: list, datasets: list) -> list:
    """``values`` given once (shared by every dataset) or once per ``--dataset``, in order."""
    if len(values) == 1:
        return values * len(datasets)
    if len(values) != len(datasets):
        raise ValueError(
            f"{flag} was given {len(values)} times for {len(datasets)} --dataset: give it once for all of "
            "them or once per --dataset, in the same order"
        )
    return values


def run(args: argparse.Namespace) -> int:
    from winnow.rerank.training.finetune import TrainingRecipe, finetune, resolve_base
    from winnow.rerank.training.pairs import build_training_set

    if not args.dataset and not args.pairs:
        raise ValueError("finetune needs training data: --dataset BEIR_DIR and/or --pairs FILE")
    if args.split == "test":
        raise ValueError("refusing to train on a test split; train on train (or dev), report on test")
    if args.base is not None:
        resolve_base(args.base)  # a missing base fails before any work
    recipe = TrainingRecipe(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        max_length=args.max_length,
        max_steps=args.max_steps,
        eval_steps=args.eval_steps,
    )
    tune_split = None if args.tune_weight_split.lower() in {"none", "no", "off"} else args.tune_weight_split
    sources = _load_sources(args)
    training_set = build_training_set(sources, eval_fraction=args.eval_fraction, seed=args.seed)
    card = finetune(
        training_set,
        args.out,
        base=args.base,
        recipe=recipe,
        device=args.device,
        show_progress=not args.json,
        keep_checkpoints=args.keep_checkpoints,
        tune_weight_split=tune_split,
        tune_depth=args.tune_depth,
        tune_max_queries=args.tune_max_queries,
        command=_finetune_command(args),
    )
    emit(card, args.json, "\n".join(_summary_lines(card, args.out)))
    return 0


def _load_sources(args: argparse.Namespace) -> list[Any]:
    """The pairs files, then each ``--dataset`` mined with its first stage and index."""
    from winnow.rerank.training.mining import mine_beir
    from winnow.rerank.training.pairs import load_pairs_file

    datasets = args.dataset or []
    first_stages = _per_dataset("--first-stage", args.first_stage or ["bm25"], datasets)
    if args.index and args.store:
        raise ValueError("give either --index DIR or --store URI, not both")
    if args.store:
        indexes = _per_dataset("--store", args.store, datasets)
    else:
        indexes = _per_dataset("--index", args.index or [None], datasets)
    sources = [load_pairs_file(path) for path in args.pairs or []]
    for path, first_stage, index in zip(datasets, first_stages, indexes, strict=True):
        sources.append(
            mine_beir(
                path,
                args.split,
                first_stage=first_stage,
                hard_negatives=args.hard_negatives,
                skip_top=args.skip_top,
                random_negatives=args.random_negatives,
                candidates=args.tune_depth,
                seed=args.seed,
                index=index,
                embedder=args.embedder,
                device=args.device,
                max_queries=args.max_queries,
                show_progress=not args.json,
            )
        )
    return sources


def _summary_lines(card: dict[str, Any], out: Path) -> list[str]:
    """What the trained model's card says, for people: steps, held-apart nDCG@10, thresholds, weight."""
    data, training = card["data"], card["training"]
    lines = [
        f"trained {out} from {card['base']['model'] or card['base']['path']}: "
        f"{training['global_steps']} steps on {training['device']} in {training['seconds']} s, "
        f"{data['train_pairs']} pairs "
        f"({data['train_positives']} positive), final loss {training['train_loss']}",
    ]
    reranking = card["eval"].get("reranking")
    if reranking:
        lines.append(
            f"held-apart queries ({card['eval']['reranking_queries']}): nDCG@10 first stage "
            f"{reranking.get('base_ndcg@10')} -> reranked {reranking.get('ndcg@10')}"
        )
    if card.get("thresholds"):
        lines.append(
            f"calibrated thresholds (raw logits): accuracy {card['thresholds']['accuracy']}, "
            f"F1 {card['thresholds']['f1']}"
        )
    weight = card.get("interpolation")
    if weight:
        lines.append(
            f"interpolation weight {weight['weight']} on {weight['split']}: nDCG@10 first stage "
            f"{weight['ndcg_first_stage']}, pure reranker {weight['ndcg_pure_reranker']}, interpolated "
            f"{weight['ndcg_interpolated']}"
        )
    return lines
