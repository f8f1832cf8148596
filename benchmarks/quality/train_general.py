"""Train winnow's general-relevance reranker from the packaged MiniLM on SQuAD v1.1 + QED-NQ train pairs.

The pairs are built here (SQuAD-specific negatives) and written to OUT/pairs.jsonl; training is
``rerank.finetune.finetune``, the same path as ``winnow finetune``: a share of the questions held apart for
evaluation, best checkpoint by nDCG@10, model cards. The model goes to OUT/final (checkpoints in
OUT/final/checkpoints every --save-steps; re-running the same command resumes); --fp16 also writes
OUT/final-fp16, the half-size copy that ships.

    python benchmarks/quality/train_general.py --out work/general --questions 8000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shlex
import sys
from pathlib import Path

logger = logging.getLogger("train_general")


def build_pairs(
    datasets: Path, n_questions: int, seed: int, same_article: int, bm25_negatives: int
) -> list[dict]:
    from winnow.retrieval.bm25 import BM25Retriever
    from winnow.retrieval.corpus import load_beir

    rng = random.Random(seed)
    squad = load_beir(datasets / "squad-v1.1")
    by_id = {p.id: p for p in squad.corpus}
    by_article: dict[str, list[str]] = {}
    for p in squad.corpus:
        by_article.setdefault(p.title, []).append(p.id)
    train = squad.qrels["train"]
    qids = sorted(train)
    rng.shuffle(qids)
    qids = qids[:n_questions]
    bm25 = BM25Retriever(squad.corpus, show_progress=True)
    mined = bm25.retrieve_batch([squad.queries[q] for q in qids], top_k=10)
    pairs = []
    for qid, hits in zip(qids, mined, strict=True):
        query = squad.queries[qid]
        pos_id = next(iter(train[qid]))
        pos = by_id[pos_id]
        pairs.append({"query": query, "passage": pos.text, "label": 1.0})
        siblings = [d for d in by_article[pos.title] if d != pos_id]
        for d in rng.sample(siblings, min(same_article, len(siblings))):
            pairs.append({"query": query, "passage": by_id[d].text, "label": 0.0})
        others = [h.id for h in hits if h.id != pos_id and by_id[h.id].title != pos.title]
        for d in others[:bm25_negatives]:
            pairs.append({"query": query, "passage": by_id[d].text, "label": 0.0})
    qed = datasets / "qed-nq" / "pairs" / "train.jsonl"
    if qed.is_file():
        for line in qed.read_text().splitlines():
            rec = json.loads(line)
            pairs.append({"query": rec["query"], "passage": rec["positive"], "label": 1.0})
            for neg in rec.get("negatives", [])[:3]:
                pairs.append({"query": rec["query"], "passage": neg, "label": 0.0})
    rng.shuffle(pairs)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "datasets"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base", default=None, help="base model (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--questions", type=int, default=8000)
    parser.add_argument("--same-article", type=int, default=2)
    parser.add_argument("--bm25-negatives", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--save-steps", type=int, default=200, help="evaluate and checkpoint every N steps")
    parser.add_argument(
        "--eval-fraction", type=float, default=0.02, help="questions held apart for evaluation"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fp16", action="store_true", help="also write OUT/final-fp16 (the shippable copy)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from winnow.rerank.training.finetune import TrainingRecipe, finetune, save_fp16_copy
    from winnow.rerank.training.pairs import build_training_set, load_pairs_file
    from winnow.retrieval.embedder import packaged_minilm_path

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data_file = args.out / "pairs.jsonl"
    if not data_file.is_file():
        pairs = build_pairs(args.datasets, args.questions, args.seed, args.same_article, args.bm25_negatives)
        tmp = data_file.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        tmp.rename(data_file)
    training_set = build_training_set(
        [load_pairs_file(data_file)], eval_fraction=args.eval_fraction, seed=args.seed
    )
    recipe = TrainingRecipe(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        max_length=args.max_length,
        max_steps=args.max_steps,
        eval_steps=args.save_steps,
    )
    finetune(
        training_set,
        args.out / "final",
        base=args.base or packaged_minilm_path(),
        recipe=recipe,
        device=args.device,
        show_progress=True,
        keep_checkpoints=True,
        tune_weight_split=None,  # a general model's weight is tuned per domain
        command=shlex.join(["python", *sys.argv]),
    )
    logger.info("saved %s", args.out / "final")
    if args.fp16:
        logger.info("fp16 copy: %s", save_fp16_copy(args.out / "final", args.out / "final-fp16"))


if __name__ == "__main__":
    main()
