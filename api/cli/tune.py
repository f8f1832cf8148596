"""``winnow tune``: choose a reranker's defaults and record them in its model card: a fine-tuned model's
(windows or truncation, interpolation weight) on a dev split or its held-apart training queries; with
``--set`` (repeated), a general model's (reading, depth, weight) across sets it never trained on, so that no
set loses."""

from __future__ import annotations

import argparse
from pathlib import Path

from winnow.api.cli.options import add_common, emit, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the command and its options."""
    p = subparsers.add_parser(
        "tune",
        help="choose a fine-tuned reranker's windows/truncation and interpolation weight on a dev split",
        description="Score the first stage's candidates of a dev split (or, with --split heldout, the "
        "training queries winnow finetune held apart) with the model reading long documents by their best "
        "window and truncated; tune the interpolation weight for each; keep windows unless truncation wins "
        "with p < 0.05; record the choice in the model's winnow.json card, which every winnow command reads. "
        "Never a test split.",
    )
    p.add_argument(
        "--model", required=True, type=Path, help="fine-tuned model folder with a winnow.json card"
    )
    p.add_argument("--dataset", type=Path, help="BEIR folder the model was trained on")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        type=tuning_set_spec,
        metavar="DIR[,split=S][,first_stage=F][,index=I]",
        help="instead of --dataset: a set the model never trained on (repeat for each); choose reading, "
        "depth and weight across all of them so that none loses significantly (split: dev where it has "
        "one, else train; never test)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="with --set: folder keeping each set's scores, so an interrupted tuning resumes",
    )
    p.add_argument(
        "--split", default="dev", help="dev split to tune on, or heldout: the queries finetune held apart"
    )
    p.add_argument("--first-stage", choices=("dense", "bm25", "hybrid"), default="hybrid")
    p.add_argument("--index", type=Path, default=None, help="index directory of the dataset's corpus")
    p.add_argument("--depth", type=positive_int, default=20, help="candidates per query (default 20)")
    p.add_argument("--max-queries", type=positive_int, default=None, help="tune on the first N queries")
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=0.1,
        help="held-apart share, for cards that do not record it (default 0.1)",
    )
    add_common(p)
    p.set_defaults(check_args=lambda args: _check_args(p, args))


def tuning_set_spec(text: str) -> dict[str, str]:
    """argparse type: ``DIR[,split=S][,first_stage=F][,index=I]``."""
    folder, *options = text.split(",")
    spec = {"dataset": folder}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in ("split", "first_stage", "index") or not value:
            raise argparse.ArgumentTypeError(
                f"expected DIR[,split=S][,first_stage=F][,index=I], got {text!r}"
            )
        spec[key] = value.strip()
    if spec.get("split") == "test":
        raise argparse.ArgumentTypeError("never tune on a test split")
    if spec.get("first_stage", "hybrid") not in ("dense", "bm25", "hybrid"):
        raise argparse.ArgumentTypeError(f"first_stage must be dense, bm25 or hybrid, got {text!r}")
    return spec


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exactly one of --dataset and --set."""
    if (args.dataset is None) == (not args.sets):
        parser.error("give either --dataset (a fine-tuned model) or one --set per set (a general model)")


def run(args: argparse.Namespace) -> int:
    """Tune, write the card, print what was chosen."""
    from winnow.rerank.training.tuning import retune
    from winnow.retrieval.corpus import load_beir

    if args.split == "test":
        raise ValueError("never tune on a test split: use a dev split or heldout")
    if args.sets:
        return _run_across_sets(args)
    card = retune(
        args.model,
        load_beir(args.dataset),
        split=args.split,
        first_stage=args.first_stage,
        index=args.index,
        depth=args.depth,
        max_queries=args.max_queries,
        eval_fraction=args.eval_fraction,
        device=args.device,
        show_progress=not args.json,
    )
    chosen = card["interpolation"]
    comparison = chosen["truncation_vs_windows"]
    text = (
        f"{args.model}: {'windows' if card['windows'] else 'truncation'}, interpolation weight "
        f"{chosen['weight']} on {chosen['split']} (nDCG@10 first stage {chosen['ndcg_first_stage']}, "
        f"interpolated {chosen['ndcg_interpolated']}; truncation vs windows {comparison['difference']:+.4f}, "
        f"p = {comparison['p_value']})"
    )
    emit({"model": str(args.model), "windows": card["windows"], "interpolation": chosen}, args.json, text)
    return 0


def _run_across_sets(args: argparse.Namespace) -> int:
    """``--set``: the general model's defaults across sets."""
    from winnow.rerank.training.defaults import TuningSet, tune_defaults
    from winnow.retrieval.corpus import load_beir

    sets = []
    for spec in args.sets:
        dataset = load_beir(spec["dataset"])
        split = spec.get("split") or ("dev" if "dev" in dataset.qrels else "train")
        sets.append(TuningSet(dataset, split, spec.get("first_stage", "hybrid"), spec.get("index")))
    chosen = tune_defaults(
        args.model,
        sets,
        depths=sorted({10, args.depth}),
        max_queries=args.max_queries,
        device=args.device,
        cache_dir=args.cache,
        show_progress=not args.json,
    )
    lines = [
        f"{args.model}: {'windows' if chosen['windows'] else 'truncation'}, depth {chosen['depth']}, "
        f"interpolation weight {chosen['weight']} (mean nDCG@10 change {chosen['mean_change']:+.4f})"
    ]
    for name, row in chosen["per_set"].items():
        lines.append(
            f"  {name}: first stage {row['first_stage']:.4f} -> {row['ndcg']:.4f} "
            f"({row['change']:+.4f}, p = {row['p_value']}, {row['queries']} queries)"
        )
    if chosen["weight"] == 0:
        lines.append("  weight 0: nothing beats the first stage; reranking with this model is off by default")
    emit({k: v for k, v in chosen.items() if k != "tried"}, args.json, "\n".join(lines))
    return 0
