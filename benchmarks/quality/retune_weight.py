"""Choose, on a dev split, how a fine-tuned model reads long documents (best window or truncation) and its
interpolation weight; store both in its ``winnow.json`` card, which winnow's engine and ranker read.

Both ways are scored on the same first-stage candidates; for each, the weight is tuned with the grid and
formula of ``winnow finetune``'s tuning step; the pair with the best interpolated nDCG@10 wins (ties keep
windows). Never on a test split. The card's earlier tuning is kept as ``interpolation.previous``.

    python benchmarks/quality/retune_weight.py work/domain-arguana ../shared/datasets/arguana \
        --split dev --first-stage hybrid --index work/idx-arguana --depth 20 --max-queries 100
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rerank.engine import CrossEncoderEngine
from rerank.evaluation import run_evaluation
from rerank.finetune import save_card
from rerank.interpolation import FORMULA, tune_weight
from retrieval.corpus import load_beir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="fine-tuned model folder with a winnow.json card")
    parser.add_argument("dataset", help="BEIR folder")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--first-stage", choices=("dense", "bm25", "hybrid"), default="hybrid")
    parser.add_argument("--index", default=None)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-queries", type=int, default=None)
    args = parser.parse_args(argv)
    if args.split == "test":
        parser.error("never tune on a test split")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    card_path = Path(args.model) / "winnow.json"
    card = json.loads(card_path.read_text())
    dataset = load_beir(args.dataset)
    tunings = {}
    for windows in (True, False):
        engine = CrossEncoderEngine(args.model, windows=windows).load()
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
        tunings[windows] = tune_weight([run], depth=args.depth)
        logging.info("windows=%s: %s", windows, json.dumps(tunings[windows].to_dict()))
    windows = max(tunings, key=lambda w: (tunings[w].best, w))
    tuning = tunings[windows]
    tuning.info = {
        "split": f"{dataset.name}/{args.split}",
        "depth": args.depth,
        "first_stage": args.first_stage,
        "formula": FORMULA,
        "by_windows": {str(w).lower(): t.to_dict() for w, t in tunings.items()},
    }
    new = tuning.to_dict()
    if card.get("interpolation"):
        new["previous"] = card["interpolation"]
    card["interpolation"] = new
    card["windows"] = windows
    save_card(args.model, card)
    logging.info("chose windows=%s, weight %.2f on %s", windows, tuning.weight, new["split"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
