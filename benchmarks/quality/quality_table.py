"""The quality table: every shared set's best first stage, winnow-general and its domain model, on test.

Every figure is read from a committed report in benchmarks/results/ (written by `winnow eval` or
`first_stage.py`); which report feeds which cell is fixed in SOURCES below, not guessed from file names.
Split sizes (to tell "all N" from "first N of M") are counted from ../shared/datasets/<set>/qrels/test.tsv.

    python benchmarks/quality/quality_table.py            # print the table
    python benchmarks/quality/quality_table.py --write    # put it in README.md between the markers
    python benchmarks/quality/quality_table.py --check    # exit 1 when README.md's table differs
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ROOT.parent / "shared" / "datasets"
README = ROOT / "README.md"
GENERAL_CARD = ROOT / "rerank" / "models" / "winnow-general" / "winnow.json"
START, END = "<!-- quality-table:start -->", "<!-- quality-table:end -->"
METRIC = "nDCG@10"

# The shipped general model as the reports name it: its training folder (the same weights, see
# benchmarks/quality/README.md, "The general stage on CPU") or its shipped path.
GENERAL_MODELS = ("work/general-s2/final-fp16", "rerank/models/winnow-general")


@dataclass(frozen=True)
class Sources:
    """Which committed report (file name in benchmarks/results/) feeds each cell of one set's row."""

    first_stage: str | None  # report holding the set's best first stage on test
    first_stage_name: str | None  # that first stage: dense, bm25 or hybrid
    general: str | None = None  # winnow-general zero-shot with its card's defaults, as users get it
    domain: str | None = None  # the set's domain model, interpolated at its card weight
    general_first_stage: str | None = None  # the general report's first stage, where not the best one
    note: str = ""  # shown under the table


# One entry per folder of ../shared/datasets (tests check that). The best first stage is the one
# first_stages_summary.md ranks first on test, except tatqa, chosen on dev (first_stage_tatqa.json is dev, so
# its test figure comes from the first 300 test queries of the mixed model's report).
SOURCES: dict[str, Sources] = {
    "scifact": Sources(
        "first_stage_scifact_flat.json",
        "hybrid",
        general="general_default_scifact.json",
        # The 8-negative model with its card's choices (windows, w 0.6), re-evaluated with the hybrid fusing
        # 100 per retriever as every path now does (domain_scifact_n8.json fused only the top 21).
        domain="domain_scifact_n8_fusion100.json",
    ),
    "checkthat2020-task2": Sources(
        "first_stage_checkthat2020-task2.json",
        "dense",
        general="general_default_checkthat2020-task2.json",
        domain="domain_checkthat2020-task2.json",
    ),
    "arguana": Sources(
        "first_stage_arguana.json",
        "hybrid",
        general="general_default_arguana.json",
        domain="domain_arguana_notitles_full.json",  # whole split, documents read without titles
        note="arguana domain model: documents read without titles (`--no-titles`), as it was trained and "
        "tuned; that reading was chosen after the first test evaluation (with titles) lost.",
    ),
    "abt-buy": Sources(
        "first_stage_abt-buy.json",
        "hybrid",
        general="general_default_abt-buy.json",
        domain="domain_abt-buy.json",
    ),
    "tatqa": Sources(
        "mixed_zeroshot_tatqa.json",
        "bm25",
        general="general_default_tatqa.json",
        domain="mixed_zeroshot_tatqa.json",  # no tatqa model: the mixed model, never trained on tatqa
        note="tatqa, financebench: no domain model; the cell is the mixed model (scifact, checkthat, "
        "abt-buy, arguana), zero-shot.",
    ),
    "financebench": Sources(
        "first_stage_financebench_chunked200.json",
        "dense",
        general="general_default_financebench.json",
        domain="mixed_zeroshot_financebench.json",
        general_first_stage="bm25",
        note="financebench, winnow-general: over BM25 on whole pages, not the best first stage (dense over "
        "200-word chunks, whose index takes 38 min of 2 idle cores to embed); its lift is against that BM25.",
    ),
    # General training data or easy sets: first stages only, no reranker report.
    "msmarco-instructir-base": Sources("first_stage_msmarco-instructir-base.json", "dense"),
    "qed-nq": Sources("first_stage_qed-nq.json", "dense"),
    "squad-v1.1": Sources("first_stage_squad-v1.json", "bm25"),
}


def load(name: str, dataset: str, results: Path = RESULTS) -> dict[str, Any]:
    """A committed report, checked to be a test-split report of `dataset`."""
    report = json.loads((results / name).read_text())
    if report.get("dataset") != dataset or report.get("split") != "test":
        raise ValueError(f"{name}: {report.get('dataset')}/{report.get('split')}, expected {dataset}/test")
    return report


def split_size(dataset: str, datasets: Path = DATASETS) -> int:
    """Number of test queries with judgements (what `winnow eval` covers without --max-queries)."""
    lines = (datasets / dataset / "qrels" / "test.tsv").read_text().splitlines()[1:]
    return len({line.split("\t")[0] for line in lines if line.strip()})


def covered(queries: int, total: int) -> str:
    """'all 300' or 'first 300 of 1,294'."""
    if queries > total:
        raise ValueError(f"a report covers {queries} queries of a {total}-query split")
    return f"all {total:,}" if queries == total else f"first {queries:,} of {total:,}"


def p_text(p: float) -> str:
    """A p-value as the quality README writes it."""
    if p < 0.0001:
        return "< 0.0001"
    return f"{p:.2g}"


def model_cells(report: dict[str, Any], total: int) -> list[str]:
    """nDCG@10, lift (vs the report's own first stage), p, 95% CI and queries of the interpolated reranker."""
    sig = report["significance_interpolated"][METRIC]
    low, high = sig["ci95"]
    return [
        f"{report['metrics']['interpolated'][METRIC]:.4f}",
        f"{report['lift_interpolated'][METRIC]:+.4f} (vs {report['metrics']['first_stage'][METRIC]:.4f})",
        p_text(sig["p_value"]),
        f"[{low:+.3f}, {high:+.3f}]",
        covered(report["queries"], total),
    ]


def first_stage_cells(dataset: str, src: Sources, total: int, results: Path) -> list[str]:
    """Best first stage: name, nDCG@10 and queries, from a first_stage.py or a `winnow eval` report."""
    if src.first_stage is None or src.first_stage_name is None:
        return ["no report", "-", "-"]
    report = load(src.first_stage, dataset, results)
    if "results" in report:  # first_stage.py: one row per first stage
        value = {row["first_stage"]: row for row in report["results"]}[src.first_stage_name][METRIC]
    else:
        if report["first_stage"]["name"] != src.first_stage_name:
            raise ValueError(f"{src.first_stage}: first stage {report['first_stage']['name']}")
        value = report["metrics"]["first_stage"][METRIC]
    return [src.first_stage_name, f"{value:.4f}", covered(report["queries"], total)]


def general_cells(dataset: str, src: Sources, total: int, results: Path, card: dict[str, Any]) -> list[str]:
    """winnow-general as users get it: its card's weight and reading (at weight 0, the first stage's order:
    the model is not run)."""
    if src.general is None:
        return ["no report", "-", "-", "-", "-"]
    report = load(src.general, dataset, results)
    reranker = report["reranker"]
    card_weight = card["interpolation"]["weight"]
    if reranker["model"] not in GENERAL_MODELS:
        raise ValueError(f"{src.general}: not winnow-general: {reranker}")
    if card_weight > 0 and reranker.get("windows", True) != card.get("windows", True):
        raise ValueError(f"{src.general}: windows={reranker.get('windows')}, card {card.get('windows')}")
    if report["interpolation"]["weight"] != card_weight:
        raise ValueError(f"{src.general}: weight {report['interpolation']['weight']}, card {card_weight}")
    if report["first_stage"]["name"] != (src.general_first_stage or src.first_stage_name):
        raise ValueError(f"{src.general}: first stage {report['first_stage']['name']}")
    return model_cells(report, total)


def domain_cells(dataset: str, src: Sources, total: int, results: Path) -> list[str]:
    """The set's domain model at its card's weight: model name (weight), then the model cells."""
    if src.domain is None:
        return ["no report", "-", "-", "-", "-", "-"]
    report = load(src.domain, dataset, results)
    interpolation = report["interpolation"]
    if interpolation["source"] != "model card":
        raise ValueError(f"{src.domain}: weight from {interpolation['source']}, not the model card")
    if report["first_stage"]["name"] != src.first_stage_name:
        raise ValueError(f"{src.domain}: first stage {report['first_stage']['name']}")
    name = Path(report["reranker"]["model"]).name
    return [f"{name} (w {interpolation['weight']:g}, top {report['depth']})", *model_cells(report, total)]


def table(results: Path = RESULTS, datasets: Path = DATASETS, card: Path = GENERAL_CARD) -> str:
    """The Markdown table (with its notes), one row per set of SOURCES."""
    general_card = json.loads(card.read_text())
    card_weight = general_card["interpolation"]["weight"]
    depths = sorted({load(s.general, d, results)["depth"] for d, s in SOURCES.items() if s.general})
    general = f"winnow-general (w {card_weight:g}, top {'/'.join(map(str, depths))})"
    if card_weight == 0:  # the card keeps the first stage's order: the model is not run, depth is moot
        general = "winnow-general as shipped (w 0: the first stage's order)"
    header = (
        "| set (test) | best first stage | nDCG@10 | queries "
        f"| {general}: nDCG@10 | lift | p | 95% CI of lift | queries "
        "| domain model (card weight) | nDCG@10 | lift | p | 95% CI of lift | queries |"
    )
    lines = [header, "|---|---|---:|---|---:|---:|---:|---|---|---|---:|---:|---:|---|---|"]
    for dataset, src in SOURCES.items():
        total = split_size(dataset, datasets)
        cells = [
            *first_stage_cells(dataset, src, total, results),
            *general_cells(dataset, src, total, results, general_card),
            *domain_cells(dataset, src, total, results),
        ]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    notes = [
        "",
        "Generated by `python benchmarks/quality/quality_table.py --write` from the reports in "
        "`benchmarks/results/` (the mapping at the top of the script says which report feeds which cell). "
        "Rerankers: the first stage's top N, interpolated with it at the weight shown; lift, paired-t p and "
        "bootstrap 95% CI are against the first stage of the same report (its nDCG@10 after *vs*), which can "
        "differ from the best-first-stage column in queries and fusion depth.",
        *(f"\n{src.note}" for src in SOURCES.values() if src.note),
    ]
    return "\n".join(lines + notes) + "\n"


def readme_table(text: str) -> str:
    """What README.md holds between the markers."""
    if START not in text or END not in text:
        raise ValueError(f"README.md lacks {START} ... {END}")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def replace_table(text: str, new: str) -> str:
    """README text with `new` between the markers."""
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    return f"{before}{START}\n{new}{END}{after}"


def main(argv: list[str] | None = None) -> int:
    """Print the table, or --write it into README.md, or --check README.md against it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="update README.md between the markers")
    group.add_argument("--check", action="store_true", help="exit 1 when README.md's table differs")
    args = parser.parse_args(argv)
    new = table()
    if args.write:
        README.write_text(replace_table(README.read_text(), new))
        print(f"wrote the quality table into {README}")
    elif args.check:
        if readme_table(README.read_text()) != new:
            print("README.md's quality table is stale: run quality_table.py --write", file=sys.stderr)
            return 1
        print("README.md's quality table is up to date")
    else:
        print(new, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
