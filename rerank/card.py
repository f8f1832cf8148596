"""The model card winnow keeps next to a reranker's weights: ``winnow.json`` (machine-readable) and a
summary appended to sentence-transformers' ``README.md``.

This module owns the card: its schema (:data:`CARD_FORMAT`, the keys below), reading, atomic writing, the
README summary, and the settings other modules take from it. ``winnow finetune`` writes it, ``winnow tune``
updates it, and the engine, the ranker, the CLI and the server read their defaults from it:

- ``base``: the model training started from, by name and weights hash (``describe_model``), never a path;
- ``data``, ``recipe``, ``training``, ``eval``, ``thresholds``: what was trained on, how, and its figures;
- ``interpolation``: the weight mixing reranker and first-stage scores (``weight`` in [0, 1]), and where it
  was chosen (``split``) or set (``source``);
- ``windows``: True (score long documents by their best window) or False (truncate), chosen on a dev split;
- ``depth``: how many first-stage candidates to rerank by default, and ``defaults``: how a general model's
  reading, depth and weight were chosen across sets it never trained on (``winnow tune --set``). A weight of
  0 means reranking with the model does not help: winnow keeps the first stage's order and says so
  (:func:`first_stage_only_reason`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from winnow.rerank.models import MODEL_REGISTRY, read_model_json, resolve_model

logger = logging.getLogger(__name__)

__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "base_name",
    "card_depth",
    "card_interpolation_weight",
    "card_windows",
    "first_stage_only_reason",
    "describe_model",
    "read_card",
    "save_card",
    "write_card",
]

CARD_FILE = "winnow.json"
CARD_FORMAT = 1
_SUMMARY_MARKER = "\n## winnow fine-tuning summary\n"
_WEIGHT_FILES = (".safetensors", ".bin")


def read_card(model: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The card of a model (a short name, local folder or hub name), or None when it has none or it is
    unreadable."""
    try:
        location = resolve_model(os.fspath(model))
    except ValueError:
        return None
    card = read_model_json(location, CARD_FILE)
    if card is not None and not isinstance(card, dict):
        logger.warning("ignoring model card of %s: not a JSON object", model)
        return None
    return card


def write_card(model_dir: str | os.PathLike[str], card: dict[str, Any]) -> Path:
    """Write ``card`` as ``model_dir``'s ``winnow.json`` atomically: readers see the old card or the new."""
    path = Path(model_dir) / CARD_FILE
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def save_card(model_dir: str | os.PathLike[str], card: dict[str, Any]) -> None:
    """Write ``card`` (:func:`write_card`) and refresh winnow's summary in the folder's ``README.md``."""
    write_card(model_dir, card)
    _write_readme_summary(Path(model_dir), card)


def card_interpolation_weight(card: dict[str, Any] | None) -> float | None:
    """The interpolation weight a card records (``card["interpolation"]["weight"]``), or None."""
    section = (card or {}).get("interpolation")
    weight = section.get("weight") if isinstance(section, dict) else None
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= float(weight) <= 1.0:
        if weight is not None:
            logger.warning("ignoring invalid interpolation weight %r in a model card", weight)
        return None
    return float(weight)


def card_windows(card: dict[str, Any] | None) -> bool | None:
    """Whether the card chose best-window scoring (True) or truncation (False); None when it chose neither."""
    chosen = (card or {}).get("windows")
    return chosen if isinstance(chosen, bool) else None


def card_depth(card: dict[str, Any] | None) -> int | None:
    """How many first-stage candidates the card says to rerank by default, or None."""
    depth = (card or {}).get("depth")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        if depth is not None:
            logger.warning("ignoring invalid depth %r in a model card", depth)
        return None
    return depth


def first_stage_only_reason(card: dict[str, Any] | None, model: str) -> str | None:
    """Why reranking with ``model`` keeps the first stage's order (its card's weight is 0: nothing it was
    tuned on gained from it), with what to do instead; None when the model reranks."""
    if card_interpolation_weight(card) != 0.0:
        return None
    section = (card or {}).get("interpolation") or {}
    where = section.get("split") or "its tuning queries"
    return (
        f"reranker {model}: its model card sets interpolation weight 0 (on {where} no weight gave a "
        "measurable gain over the first stage without a significant loss somewhere), so results keep the "
        "first stage's order. "
        "Fine-tune a model for your domain (winnow finetune --dataset YOUR_BEIR_DIR --base " + model + ") "
        "or name another reranker; to rerank with this one anyway, pass an interpolation weight."
    )


def describe_model(name: str | None, location: str) -> dict[str, Any]:
    """How a card names a model it was built from, without machine paths.

    A winnow short name or a hub name is recorded as it is; a local folder by a readable name (the packaged
    bi-encoder's package name, else the folder's name) and the sha256 of its weight files, which identifies
    the exact weights wherever they are installed.
    """
    if name in MODEL_REGISTRY:
        return {"model": name}
    folder = Path(location)
    if not folder.is_dir():
        return {"model": name or location}
    return {"model": _folder_name(folder), "sha256": weights_sha256(folder)}


def base_name(card: dict[str, Any]) -> str:
    """The base model's name as the card records it (older cards may only hold a path)."""
    base = card.get("base") or {}
    return str(base.get("model") or base.get("path") or "unknown")


def weights_sha256(folder: str | os.PathLike[str]) -> str:
    """sha256 over a model folder's weight files, in name order (name and content of each)."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in _WEIGHT_FILES)
    for file in files:
        digest.update(file.name.encode("utf-8"))
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _folder_name(folder: Path) -> str:
    parts = folder.resolve().parts
    if "site-packages" in parts:  # a model shipped in a package: the package names it
        package = parts[parts.index("site-packages") + 1]
        return package.replace("_", "-")
    return folder.resolve().name


def _write_readme_summary(out_dir: Path, card: dict[str, Any]) -> None:
    """Add winnow's summary (data, recipe, figures, thresholds, interpolation) to sentence-transformers'
    README.md model card."""
    readme = out_dir / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    text = text.split(_SUMMARY_MARKER)[0].rstrip("\n")
    data, recipe, training = card["data"], card["recipe"], card["training"]
    lines = [
        _SUMMARY_MARKER,
        f"- base: `{base_name(card)}`",
        f"- data: {data['train_pairs']} training pairs ({data['train_positives']} positive) over "
        f"{data['train_queries']} queries; {data['eval_pairs']} pairs over {data['eval_queries']} queries "
        "held apart for evaluation",
    ]
    for source in data["sources"]:
        lines.append(
            f"  - `{source['name']}` ({source['kind']}): {source['pairs']} pairs, "
            f"{source['positives']} positive"
        )
    lines += [
        f"- recipe: {recipe['loss']}, batch {recipe['batch_size']}, lr {recipe['learning_rate']}, warmup "
        f"{recipe['warmup']:.0%}, seed {recipe['seed']}, {recipe['epochs']} epoch(s), max length "
        f"{card['max_length']}",
        f"- training: {training['global_steps']} steps on {training['device']} in {training['seconds']} s, "
        f"final loss {training['train_loss']}",
    ]
    for kind, values in (card.get("eval") or {}).items():
        if isinstance(values, dict):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, float))
            lines.append(f"- held-apart {kind}: {shown}")
    thresholds = card.get("thresholds")
    if thresholds:
        lines.append(
            f"- calibrated thresholds (raw logits): accuracy {thresholds['accuracy']}, F1 {thresholds['f1']}"
        )
    interpolation = card.get("interpolation")
    defaults = card.get("defaults")
    if defaults:
        reading = "windows" if defaults["windows"] else "truncation"
        lines.append(
            f"- defaults chosen across sets it never trained on: {reading}, depth {defaults['depth']}, "
            f"interpolation weight {defaults['weight']} ({defaults['rule']})"
        )
        for name, row in defaults["per_set"].items():
            lines.append(
                f"  - {name} ({row['queries']} queries): first stage {row['first_stage']}, with the defaults "
                f"{row['ndcg']} ({row['change']:+.4f}, p = {row['p_value']})"
            )
        best = defaults.get("best_reranking")
        if defaults["weight"] == 0.0 and best:  # what reranking would have given, and why it was not taken
            lines.append(
                f"  - the best choice that reranks ({'windows' if best['windows'] else 'truncation'}, depth "
                f"{best['depth']}, weight {best['weight']}) changed nDCG@10 by {best['mean_change']:+.4f} on "
                f"average (pooled p = {best['pooled_gain_p']}): no measurable gain, so the first stage's "
                "order is kept"
            )
    elif interpolation and interpolation.get("split"):
        lines.append(
            f"- interpolation weight {interpolation['weight']} (nDCG@10 on {interpolation.get('split')}: "
            f"pure reranker {interpolation.get('ndcg_pure_reranker')}, first stage "
            f"{interpolation.get('ndcg_first_stage')}, interpolated {interpolation.get('ndcg_interpolated')})"
        )
        for name, row in (interpolation.get("per_dataset") or {}).items():
            lines.append(
                f"  - {name} alone ({row['queries']} queries) would choose {row['weight']}: first stage "
                f"{row['ndcg_first_stage']}, pure {row['ndcg_pure_reranker']}, interpolated "
                f"{row['ndcg_interpolated']}"
            )
    elif interpolation:  # a weight set by hand, not tuned on a split
        lines.append(f"- interpolation weight {interpolation['weight']} ({interpolation.get('source')})")
    if card.get("command"):
        lines += ["", "Trained with:", "", "```console", card["command"], "```"]
    readme.write_text(text + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
