"""Choose, on a dev split, how a fine-tuned model reads long documents (best window or truncation) and its
interpolation weight; store both in its ``winnow.json`` card, which winnow's engine and ranker read.

Both ways are scored on the same first-stage candidates; for each, the weight is tuned with the grid and
formula of ``winnow finetune``'s tuning step. Windows (winnow's default) stay unless truncation's interpolated
nDCG@10 beats them with p < 0.05 (paired t over the tuning queries): on SciFact's 81 held-apart queries
truncation led by 0.007 and then lost on test, while on ArguAna dev it led by far and won on test. Never on
a test split. The card's earlier tuning is kept as ``interpolation.previous``.

    python benchmarks/quality/retune_weight.py work/domain-arguana ../shared/datasets/arguana \
        --split dev --first-stage hybrid --index work/idx-arguana --depth 20 --max-queries 100

A set without a dev split (scifact) uses ``--split heldout``: the queries ``winnow finetune`` held apart
from its training split, rebuilt from the card (source, mining settings, seed, held-apart share) and checked
against the card's count, searched with the first stage that mined them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from rerank.engine import CrossEncoderEngine
from rerank.evaluation import run_evaluation
from rerank.finetune import save_card, tune_interpolation
from rerank.interpolation import FORMULA, WeightTuning, tune_weight
from rerank.statistics import paired_t_test
from rerank.training_data import TrainingSet, build_training_set, mine_beir
from retrieval.corpus import Dataset, load_beir

ALPHA = 0.05  # truncation replaces windows only on this much evidence


def _dev_tuning(model: str, dataset: Dataset, args: argparse.Namespace, windows: bool) -> WeightTuning:
    engine = CrossEncoderEngine(model, windows=windows).load()
    run = run_evaluation(
        dataset,
        args.split,
        first_stage=args.first_stage,
        index=args.index,
        reranker=engine,
        depths=[args.depth],
        max_queries=args.max_queries,
        interpolation_weight=1.0,
    )
    tuning = tune_weight([run], depth=args.depth)
    split = f"{dataset.name}/{args.split}"
    tuning.info = {"split": split, "depth": args.depth, "first_stage": args.first_stage}
    return tuning


def rebuild_training_set(
    card: dict, dataset: Dataset, index: str | None, eval_fraction: float, depth: int
) -> TrainingSet:
    """The training set ``winnow finetune`` built for a one-dataset model, from its card's settings, with
    ``depth`` first-stage candidates per query as ``--tune-depth`` keeps them. (Models mined before every
    hybrid fused 100 hits per retriever fused only about ``depth``; rebuilt now, their held-apart candidates
    follow the fusion ``winnow eval`` uses today, not the one they were tuned on.)"""
    sources = card["data"]["sources"]
    if len(sources) != 1 or sources[0].get("kind") != "beir":
        raise SystemExit("--split heldout needs a model trained on one BEIR dataset")
    source, seed = sources[0], card["recipe"]["seed"]
    mined = mine_beir(
        dataset,
        source["split"],
        first_stage=source["first_stage"],
        hard_negatives=source["hard_negatives"],
        skip_top=source["skip_top"],
        random_negatives=source["random_negatives"],
        candidates=depth,
        seed=seed,
        index=index,
        max_queries=source.get("max_queries"),  # cards before it was recorded: models trained on all queries
    )
    fraction = card["data"].get("eval_fraction", eval_fraction)
    training_set = build_training_set([mined], eval_fraction=fraction, seed=seed)
    if len(training_set.eval_queries) != card["data"]["eval_queries"]:
        raise SystemExit(
            f"rebuilt {len(training_set.eval_queries)} held-apart queries, the card says "
            f"{card['data']['eval_queries']}: pass the --eval-fraction the model was trained with"
        )
    return training_set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="fine-tuned model folder with a winnow.json card")
    parser.add_argument("dataset", help="BEIR folder")
    parser.add_argument(
        "--split", default="dev", help="dev split to tune on, or heldout: the queries finetune held apart"
    )
    parser.add_argument("--first-stage", choices=("dense", "bm25", "hybrid"), default="hybrid")
    parser.add_argument("--index", default=None)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument(
        "--eval-fraction", type=float, default=0.1, help="held-apart share, when the card does not record it"
    )
    args = parser.parse_args(argv)
    if args.split == "test":
        parser.error("never tune on a test split")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    card_path = Path(args.model) / "winnow.json"
    card = json.loads(card_path.read_text())
    dataset = load_beir(args.dataset)
    training_set = None
    if args.split == "heldout":
        training_set = rebuild_training_set(card, dataset, args.index, args.eval_fraction, args.depth)
    tunings: dict[bool, WeightTuning] = {}
    for windows in (True, False):
        if training_set is None:
            tunings[windows] = _dev_tuning(args.model, dataset, args, windows)
        else:
            found = tune_interpolation(
                args.model,
                training_set,
                split="heldout",
                depth=args.depth,
                max_queries=args.max_queries,
                windows=windows,
                show_progress=True,
            )
            assert found is not None  # a BEIR source always has held-apart queries here
            tunings[windows] = found
        logging.info("windows=%s: %s", windows, json.dumps(tunings[windows].to_dict()))
    gain = tunings[False].best - tunings[True].best
    p_value = paired_t_test(tunings[True].per_query, tunings[False].per_query)
    windows = not (gain > 0 and p_value < ALPHA)
    tuning = tunings[windows]
    tuning.info = {
        **tuning.info,
        "formula": FORMULA,
        "by_windows": {str(w).lower(): t.to_dict() for w, t in tunings.items()},
        "truncation_vs_windows": {
            "difference": round(gain, 6),
            "p_value": None if math.isnan(p_value) else round(p_value, 6),  # NaN: fewer than two queries
            "rule": f"truncation only when its interpolated nDCG@10 beats windows, p < {ALPHA} (paired t)",
        },
    }
    new = tuning.to_dict()
    if card.get("interpolation"):
        new["previous"] = card["interpolation"]
    card["interpolation"] = new
    card["windows"] = windows
    save_card(args.model, card)
    logging.info(
        "chose windows=%s, weight %.2f on %s (truncation %+.4f, p = %.3f)",
        windows,
        tuning.weight,
        new["split"],
        gain,
        p_value,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
