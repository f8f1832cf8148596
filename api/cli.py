"""The ``winnow`` command line: index, search, eval and the offline quickstart."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("winnow")

FACTORY_HELP = (
    "faiss index factory string: Flat (exact), HNSW32, IVF4096,SQ8, IVF1024,PQ32 ... (default: Flat)"
)


def int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _add_reranker_options(parser: argparse.ArgumentParser) -> None:
    """Options of how the reranker runs, shared by search and eval."""
    parser.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="reranker tokens per (query, document) pair (default: the model's, at most 512)",
    )
    parser.add_argument(
        "--windows",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score documents longer than a pair leaves room for by their best overlapping window, or "
        "truncate them (--no-windows); default: what the model's card chose on a dev split, else windows",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "onnx-int8"),
        default="torch",
        help="reranker runtime (default torch; onnx and onnx-int8 run on CPU with ONNX Runtime)",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="winnow",
        description="Retrieve with a bi-encoder + FAISS, rerank with a cross-encoder.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="embed a corpus into a FAISS index directory")
    p.add_argument(
        "--corpus", required=True, type=Path, help="BEIR folder, .jsonl file, or folder of .txt/.md files"
    )
    p.add_argument("--out", required=True, type=Path, help="index directory to write (replaced atomically)")
    p.add_argument(
        "--embedder", default=None, help="bi-encoder path or name (default: packaged all-MiniLM-L6-v2)"
    )
    p.add_argument("--factory", default="Flat", help=FACTORY_HELP)
    p.add_argument(
        "--chunk-words", type=positive_int, default=None, help="split documents into windows of N words"
    )
    p.add_argument(
        "--chunk-overlap",
        type=non_negative_int,
        default=None,
        help="words shared by neighbours (N/5)",
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help="embedding batch size")
    _add_common(p)

    p = sub.add_parser("search", help="search an index, optionally reranking with a cross-encoder")
    p.add_argument("query", help="the query text")
    p.add_argument("--index", required=True, type=Path, help="index directory written by `winnow index`")
    p.add_argument("--reranker", default=None, help="cross-encoder path or name; omit for first stage only")
    p.add_argument("--top-k", type=positive_int, default=10, help="results to return (default 10)")
    p.add_argument(
        "--candidates", type=positive_int, default=100, help="first-stage candidates to rerank (default 100)"
    )
    p.add_argument("--first-stage", choices=("dense", "bm25", "hybrid"), default="dense")
    p.add_argument("--embedder", default=None, help="must match the index's embedder (default: the index's)")
    _add_reranker_options(p)
    _add_common(p)

    p = sub.add_parser("quickstart", help="offline demo on the bundled sample corpus: index, search, rerank")
    p.add_argument(
        "--reranker", default=None, help="cross-encoder path or name (default: winnow's shipped one)"
    )
    p.add_argument("--top-k", type=positive_int, default=3, help="results shown per query (default 3)")
    p.add_argument(
        "--candidates", type=positive_int, default=20, help="first-stage candidates reranked (default 20)"
    )
    p.add_argument(
        "--index-dir", type=Path, default=None, help="keep the sample index here (default: temp dir)"
    )
    _add_common(p)

    p = sub.add_parser(
        "eval",
        help="evaluate first stage and reranking on a BEIR split (or --compare reports)",
        description="Evaluate a first stage and a reranker on a BEIR split: ir-measures metrics of "
        "both stages, lift, significance, per-query wins/losses; writes REPORT.json, .md and .png. "
        "With --compare, print one nDCG@10 table of existing reports instead.",
    )
    p.add_argument(
        "--dataset", type=Path, default=None, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    p.add_argument("--split", default="test", help="qrels split to evaluate (default test)")
    p.add_argument("--first-stage", choices=("dense", "bm25", "hybrid"), default="dense")
    p.add_argument(
        "--index", type=Path, default=None, help="index directory to search (default: build one in memory)"
    )
    p.add_argument("--reranker", default=None, help="cross-encoder path or name; omit for first stage only")
    p.add_argument(
        "--depth",
        type=_depths,
        default=[100],
        help="candidates reranked: 100, or a list such as 10,20,50,100 (one pass at the deepest)",
    )
    p.add_argument("--out", type=Path, default=None, help="report JSON to write (.md and .png next to it)")
    p.add_argument("--save-runs", type=Path, default=None, help="directory for TREC run files of both stages")
    p.add_argument(
        "--embedder",
        default=None,
        help="bi-encoder for dense/hybrid (default: the index's or the packaged one)",
    )
    p.add_argument("--max-queries", type=positive_int, default=None, help="evaluate only the first N queries")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the permutation test and bootstrap (default 0)"
    )
    p.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        default=None,
        metavar="REPORT",
        help="reports to tabulate (nDCG@10)",
    )
    p.add_argument(
        "--interpolation-weight",
        type=_weight,
        default=None,
        help="also report the reranker interpolated with the first stage at this weight in [0, 1] "
        "(default: the weight in the reranker's winnow.json card, if any)",
    )
    p.add_argument(
        "--titles",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the reranker reads 'title. text' (default) or the text alone (--no-titles: for sets whose "
        "titles exist on the test split only, such as arguana, with a model trained without them)",
    )
    _add_reranker_options(p)
    _add_common(p)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a cross-encoder reranker on a BEIR train split and/or pairs files",
        description="Fine-tune a cross-encoder with sentence-transformers' CrossEncoderTrainer (defaults: "
        "BCE on raw logits, batch 16, lr 5e-5, 10%% warmup, seed 42, 1 epoch). Positives come from the "
        "qrels, hard negatives are mined with the first stage; a share of the training queries is held "
        "apart for evaluation, and an interpolation weight with the first stage is tuned on a dev split. "
        "Writes MODEL_DIR (loadable by CrossEncoder(path)) with README.md and winnow.json model cards. "
        "Rerunning the same command resumes from the last checkpoint.",
    )
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
    _add_common(p)

    p = sub.add_parser(
        "serve",
        help="serve an index and a reranker over HTTP (search, Cohere/TEI rerank, documents)",
        description="Run the REST service (OpenAPI at /docs). Every setting can also come from WINNOW_* "
        "environment variables or a --config file (see api/settings.py); flags win over both. Set API keys "
        "with WINNOW_API_KEYS=k1,k2 rather than on the command line.",
    )
    p.add_argument(
        "--index", type=Path, default=None, help="index directory (created on first write if missing)"
    )
    p.add_argument(
        "--reranker", default=None, help="cross-encoder path or name, or 'none' (default: winnow-general)"
    )
    p.add_argument("--embedder", default=None, help="bi-encoder (default: the index's)")
    p.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int_at_least(1), default=None, help="port (default 8000)")
    p.add_argument("--config", type=Path, default=None, help=".toml or .json settings file")
    p.add_argument(
        "--no-micro-batching",
        dest="micro_batching",
        action="store_false",
        default=None,
        help="score each rerank request alone (for comparison)",
    )
    p.add_argument(
        "--batch-wait-ms", type=float, default=None, help="micro-batch collection window (default 5)"
    )
    p.add_argument(
        "--torch-threads", type=positive_int, default=None, help="torch threads (default: all cores)"
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnx", "onnx-int8"),
        default=None,
        help="reranker runtime (default torch; onnx and onnx-int8 run on CPU with ONNX Runtime)",
    )
    _add_common(p)
    return parser


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a weight in [0, 1], got {text!r}")
    return value


def _depths(text: str) -> list[int]:
    from rerank.evaluation import parse_depths

    try:
        return parse_depths(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbosity == 0:
        logging.getLogger("winnow").setLevel(logging.INFO)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-file "Loading weights" bars; winnow shows its own


def _emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    print(json.dumps(payload, indent=2, ensure_ascii=False) if as_json else text)


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_index(args: argparse.Namespace) -> int:
    from retrieval.corpus import load_corpus
    from retrieval.embedder import Embedder
    from retrieval.indexing import build_index

    if args.chunk_overlap is not None and args.chunk_words is None:
        raise ValueError("--chunk-overlap needs --chunk-words")
    if args.chunk_words and args.chunk_overlap is not None and args.chunk_overlap >= args.chunk_words:
        raise ValueError(
            f"--chunk-overlap ({args.chunk_overlap}) must be smaller than --chunk-words ({args.chunk_words})"
        )
    started = time.perf_counter()
    passages = load_corpus(args.corpus)
    logger.info("loaded %d documents from %s", len(passages), args.corpus)
    embedder = Embedder(args.embedder, device=args.device, batch_size=args.batch_size)
    index = build_index(
        passages,
        embedder,
        factory=args.factory,
        chunk_words=args.chunk_words,
        chunk_overlap=args.chunk_overlap,
    )
    index.save(args.out)
    summary = {
        "index": str(args.out),
        "documents": len(passages),
        "passages": len(index),
        "embedder": embedder.name,
        "factory": args.factory,
        "chunked": bool(index.extra.get("chunked")),
        "seconds": round(time.perf_counter() - started, 1),
    }
    _emit(
        summary,
        args.json,
        f"indexed {len(passages)} documents as {len(index)} passages into {args.out} "
        f"({args.factory}, {embedder.name}) in {summary['seconds']} s",
    )
    return 0


def _load_reranker(name: str | None, args: argparse.Namespace, show_progress: bool):
    if name is None:
        return None
    from rerank.engine import CrossEncoderEngine

    engine = CrossEncoderEngine(
        name,
        device=args.device,
        show_progress=show_progress,
        max_length=getattr(args, "max_length", None),
        windows=getattr(args, "windows", None),
        backend=getattr(args, "backend", None) or "torch",
    )
    engine.load()
    return engine


def cmd_search(args: argparse.Namespace) -> int:
    from indexes import WinnowIndex
    from rerank.search import TwoStageSearch
    from retrieval.embedder import Embedder, resolve_embedder
    from retrieval.first_stage import make_first_stage

    expected = resolve_embedder(args.embedder)[0] if args.embedder else None
    index = WinnowIndex.load(args.index, expected_embedder=expected)
    embedder = Embedder(args.embedder or index.embedder, device=args.device, show_progress=False)
    if args.first_stage != "bm25":
        embedder.load()  # before the timed search
    first_stage = make_first_stage(args.first_stage, index, embedder)  # a hybrid fuses >= 100 per retriever
    searcher = TwoStageSearch(
        first_stage,
        _load_reranker(args.reranker, args, show_progress=not args.json),
        candidates=args.candidates,
    )
    result = searcher.search(args.query, top_k=args.top_k)
    payload = {
        "query": args.query,
        "first_stage": args.first_stage,
        "reranker": args.reranker,
        "results": [r.to_dict() for r in result.results],
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
    }
    lines = [f"query: {args.query}  ({args.first_stage}{' + ' + args.reranker if args.reranker else ''})"]
    for r in result.results:
        lines.append(
            f"{r.rank:>3}. {r.score:8.3f}  {r.id}  {_short((r.title + ': ' if r.title else '') + r.text)}"
        )
    _emit(payload, args.json, "\n".join(lines))
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from api.quickstart import run_quickstart

    with tempfile.TemporaryDirectory(prefix="winnow-quickstart-") as tmp:
        report = run_quickstart(
            index_dir=args.index_dir or Path(tmp) / "index",
            reranker=args.reranker,
            top_k=args.top_k,
            candidates=args.candidates,
            device=args.device,
            out=None if args.json else sys.stdout,
        )
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rerank.report import compare_reports

    if args.compare:
        if args.dataset is not None:
            raise ValueError("--compare tabulates existing reports; do not combine it with --dataset")
        table = compare_reports(args.compare)
        _emit({"table": table, "reports": [str(p) for p in args.compare]}, args.json, table.rstrip("\n"))
        return 0
    if args.dataset is None or args.out is None:
        raise ValueError(
            "eval needs --dataset BEIR_DIR and --out REPORT.json (or --compare A.json B.json ...)"
        )
    from rerank.report import evaluate
    from retrieval.corpus import load_beir

    dataset = load_beir(args.dataset)
    report = evaluate(
        dataset,
        args.split,
        out=args.out,
        save_runs=args.save_runs,
        seed=args.seed,
        first_stage=args.first_stage,
        index=args.index,
        embedder=args.embedder,
        reranker=_load_reranker(args.reranker, args, show_progress=False),
        depths=args.depth,
        device=args.device,
        max_queries=args.max_queries,
        show_progress=not args.json,
        interpolation_weight=args.interpolation_weight,
        rerank_titles=args.titles,
    )
    _emit(report, args.json, Path(report["files"]["markdown"]).read_text(encoding="utf-8").rstrip("\n"))
    return 0


def _finetune_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (recorded in the model card)."""
    import shlex

    parts = ["winnow", "finetune"]
    for key, value in vars(args).items():
        if key in {"command", "verbose", "json"} or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            parts += [flag] if item is True else [flag, str(item)]
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


def cmd_finetune(args: argparse.Namespace) -> int:
    from rerank.finetune import TrainingRecipe, finetune, resolve_base
    from rerank.training_data import build_training_set, load_pairs_file, mine_beir

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
    datasets = args.dataset or []
    first_stages = _per_dataset("--first-stage", args.first_stage or ["bm25"], datasets)
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
    data, training = card["data"], card["training"]
    lines = [
        f"trained {args.out} from {card['base']['model'] or card['base']['path']}: "
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
    _emit(card, args.json, "\n".join(lines))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from pydantic import ValidationError

        from api.app import create_app
        from api.settings import load_settings
    except ImportError as err:
        raise ValueError(
            f"winnow serve needs the serve extra ({err.name} is missing): pip install 'winnow[serve]'"
        ) from None

    try:
        settings = load_settings(
            args.config,
            index=args.index,
            reranker=args.reranker,
            embedder=args.embedder,
            host=args.host,
            port=args.port,
            device=args.device,
            micro_batching=args.micro_batching,
            batch_wait_ms=args.batch_wait_ms,
            backend=args.backend,
            torch_threads=args.torch_threads,
        )
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        hint = " (pass --index DIR or set WINNOW_INDEX)" if "index: Field required" in problems else ""
        raise ValueError(f"invalid settings: {problems}{hint}") from None
    app = create_app(settings)
    level = "debug" if args.verbose > 1 else "info"
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=level, timeout_graceful_shutdown=30)
    return 0


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "quickstart": cmd_quickstart,
    "eval": cmd_eval,
    "finetune": cmd_finetune,
    "serve": cmd_serve,
}


def main(argv: list[str] | None = None) -> int:
    from indexes import WinnowIndexError

    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, OSError, WinnowIndexError) as err:
        if args.verbose > 1:
            raise
        print(f"winnow {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
