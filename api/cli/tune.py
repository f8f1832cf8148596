"""``winnow tune``: choose a fine-tuned model's defaults (windows or truncation, interpolation weight) on a
dev split or its held-apart training queries, and record them in its model card."""

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
    p.add_argument("--dataset", required=True, type=Path, help="BEIR folder the model was trained on")
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


def run(args: argparse.Namespace) -> int:
    """Tune, write the card, print what was chosen."""
    from winnow.rerank.training.tuning import retune
    from winnow.retrieval.corpus import load_beir

    if args.split == "test":
        raise ValueError("never tune on a test split: use a dev split or heldout")
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
