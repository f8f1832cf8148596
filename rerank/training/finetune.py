"""Fine-tune a cross-encoder reranker with sentence-transformers' ``CrossEncoderTrainer``.

The defaults are the recipe winnow's users run (``../shared/SEEDS.md``): one raw-logit output, binary
cross-entropy on the logits, batch 16, lr 5e-5, 10% linear warmup, seed 42, one epoch. Evaluation runs on
queries held apart from the *training* data (accuracy / F1 / precision / recall / average precision with their
best thresholds, and nDCG@10 over the mined first-stage candidates); the best checkpoint by nDCG@10 is kept.
Training is resumable: checkpoints go to ``OUT/checkpoints`` and a rerun with the same data resumes from the
latest one. The saved folder loads with plain ``CrossEncoder(OUT)`` and holds two model cards: ``README.md``
(sentence-transformers') and ``winnow.json`` (base, data, recipe, figures, thresholds, interpolation weight),
which winnow's ranker reads for its defaults.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from winnow.rerank.card import CARD_FORMAT, describe_model, save_card, write_card
from winnow.rerank.models import (
    DEFAULT_RERANKER,
    ModelNotFoundError,
    is_offline,
    resolve_model,
    shipped_models,
)
from winnow.rerank.training.pairs import TrainingSet
from winnow.rerank.training.tuning import tune_interpolation, tuning_split

logger = logging.getLogger(__name__)

__all__ = [
    "CPU_MAX_LENGTH",
    "TrainingRecipe",
    "finetune",
    "resolve_base",
    "save_fp16_copy",
]

CPU_MAX_LENGTH = 256  # tokens per pair when training on CPU (None picks it): longer pairs cost quadratically
GPU_MAX_LENGTH = 512
EVAL_NAME = "heldout"
_INSTALL_HINT = "fine-tuning needs the train extra: pip install 'winnow[train]' (datasets, accelerate)"


@dataclass
class TrainingRecipe:
    """Hyper-parameters; the defaults are the users' recipe. Every field can be overridden.

    :param warmup: linear warmup as a fraction of the training steps.
    :param max_length: tokens per (query, document) pair; None = the model's maximum, capped at 256 on CPU and
        512 on a GPU.
    :param eval_steps: evaluate (and checkpoint) every N steps; None = four times per run.
    :param bf16: mixed precision; None = on CUDA where supported.
    :param pos_weight: BCE weight of positives (e.g. negatives per positive for imbalanced sets); None = 1.
    :param dataloader_num_workers: processes that tokenize batches (0 = the training process; a GPU run
        wants a few, so the GPU does not wait on the tokenizer).
    """

    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.0
    seed: int = 42
    max_length: int | None = None
    max_steps: int | None = None
    eval_steps: int | None = None
    logging_steps: int | None = None
    save_total_limit: int = 2
    gradient_accumulation_steps: int = 1
    pos_weight: float | None = None
    bf16: bool | None = None
    dataloader_num_workers: int = 0

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        for name in ("batch_size", "gradient_accumulation_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_length", "max_steps", "eval_steps", "logging_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.dataloader_num_workers < 0:
            raise ValueError(f"dataloader_num_workers must be >= 0, got {self.dataloader_num_workers}")
        if self.pos_weight is not None and not self.pos_weight > 0:
            raise ValueError(f"pos_weight must be positive, got {self.pos_weight}")


def resolve_base(base: str | None) -> str:
    """The folder (or hub name) to start from, checked before any work.

    None means winnow's shipped general reranker when installed, else the packaged all-MiniLM-L6-v2 bi-encoder
    with a fresh scoring head (which the users' recipe alone barely moves: train a general stage first).

    :raises ModelNotFoundError: for a path that does not exist, or a hub name on an offline machine.
    """
    if base is None:
        if DEFAULT_RERANKER in shipped_models():
            return resolve_model(DEFAULT_RERANKER)
        from winnow.retrieval.embedder import packaged_minilm_path

        logger.warning(
            "no general reranker is installed: starting from the packaged all-MiniLM-L6-v2 bi-encoder with a "
            "fresh scoring head. The users' recipe alone learns little from it; pass --base with a general "
            "cross-encoder (see benchmarks/quality/README.md)"
        )
        return packaged_minilm_path()
    resolved = resolve_model(base)
    if not Path(resolved).is_dir() and is_offline():
        raise ModelNotFoundError(
            f"base model {base!r} is not a local folder and the hub is off (HF_HUB_OFFLINE is set); pass a "
            "model folder or a winnow short name"
        )
    return resolved


def _import_training():
    try:
        import datasets  # noqa: F401
        from sentence_transformers.cross_encoder import (
            CrossEncoder,
            CrossEncoderModelCardData,
            CrossEncoderTrainer,
            CrossEncoderTrainingArguments,
        )
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"{_INSTALL_HINT} ({err})") from err
    return CrossEncoder, CrossEncoderModelCardData, CrossEncoderTrainer, CrossEncoderTrainingArguments


def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


@dataclass
class _Setup:
    """What one :func:`finetune` run settled on before training; filled in step by step."""

    base_path: str
    device: str
    bf16: bool
    show_progress: bool
    max_length: int = 0
    total_steps: int = 0
    eval_steps: int = 0
    rank_metric: str = ""


def finetune(
    training_set: TrainingSet,
    out_dir: str | Path,
    *,
    base: str | None = None,
    recipe: TrainingRecipe | None = None,
    device: str | None = None,
    show_progress: bool | None = None,
    resume: bool = True,
    keep_checkpoints: bool = False,
    tune_weight_split: str | None = "auto",
    tune_depth: int = 30,
    tune_max_queries: int | None = None,
    eval_depth: int = 20,
    command: str | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Train a cross-encoder on ``training_set`` and save it, with its model cards, to ``out_dir``.

    :param base: model to start from (see :func:`resolve_base`); checked before anything else.
    :param device: ``cuda``, ``mps`` or ``cpu``; None picks the best available.
    :param resume: continue from the latest checkpoint in ``out_dir/checkpoints`` when there is one.
    :param keep_checkpoints: keep ``out_dir/checkpoints`` after a successful run (they hold optimizer state).
    :param tune_weight_split: where to tune the interpolation weight (see :func:`tune_interpolation`):
        ``"auto"`` (each BEIR source's dev split when it has one it did not train on, else its held-apart
        training queries), a split name, ``"heldout"``, or None to skip tuning.
    :param eval_depth: first-stage candidates per held-apart query that the nDCG@10 evaluation reorders
        during training (each evaluation scores them all: keep it small on CPU).
    :param command: the command line that ran this, recorded in the card.
    :param callbacks: extra ``transformers.TrainerCallback`` objects (e.g. a wall-clock budget).
    :returns: the ``winnow.json`` card that was written.
    """
    base_path = resolve_base(base)
    recipe = recipe or TrainingRecipe()
    _check_inputs(training_set, tune_weight_split)
    CrossEncoder, CardData, Trainer, Args = _import_training()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = out_dir / "checkpoints"
    setup = _setup(base_path, recipe, device, show_progress)
    model = _build_model(CrossEncoder, CardData, setup, recipe)
    train_dataset, evaluators, samples = _training_data(training_set, recipe, setup, eval_depth)
    trainer = _build_trainer(Trainer, Args, model, train_dataset, recipe, setup, evaluators, checkpoint_dir)
    for callback in callbacks:
        trainer.add_callback(callback)
    resume_from = _resume_point(checkpoint_dir) if resume else None
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started

    figures = _final_figures(evaluators, model)
    model.save_pretrained(str(out_dir))
    training = _training_record(setup, trainer.state, output, seconds, resume_from, bool(evaluators))
    card = _build_card(
        base, setup, recipe, training_set, training, figures, len(samples), eval_depth, command
    )
    write_card(out_dir, card)
    if tune_weight_split:
        _tune_into_card(card, out_dir, training_set, tune_weight_split, tune_depth, tune_max_queries, setup)
    save_card(out_dir, card)
    if not keep_checkpoints and checkpoint_dir.is_dir():
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    logger.info("saved %s (%d steps, %.0f s)", out_dir, trainer.state.global_step, seconds)
    return card


def _resume_point(checkpoint_dir: Path) -> str | None:
    """The latest checkpoint in ``checkpoint_dir`` to resume from, if any (logged)."""
    found = _checkpoints(checkpoint_dir)
    resume_from = str(found[-1]) if found else None
    if resume_from:
        logger.info("resuming from %s", resume_from)
    return resume_from


def _check_inputs(training_set: TrainingSet, tune_weight_split: str | None) -> None:
    """Fail on an empty training set or a bad tuning split now, not after training."""
    if not training_set.train:
        raise ValueError("the training set is empty")
    if tune_weight_split == "test":
        raise ValueError("never tune on a test split: use dev, heldout or auto")
    if tune_weight_split:  # a bad split fails now, not after training
        for source in training_set.sources:
            if source.kind == "beir" and source.dataset is not None:
                tuning_split(source, tune_weight_split)


def _setup(base_path: str, recipe: TrainingRecipe, device: str | None, show_progress: bool | None) -> _Setup:
    """Resolve the device, mixed precision and progress display, and seed torch."""
    import torch

    from winnow.retrieval.device import resolve_device

    if show_progress is None:
        show_progress = logger.getEffectiveLevel() <= logging.INFO
    device = resolve_device(device)
    on_cuda = device.startswith("cuda")
    bf16 = recipe.bf16 if recipe.bf16 is not None else on_cuda and torch.cuda.is_bf16_supported()
    torch.manual_seed(recipe.seed)
    return _Setup(base_path=base_path, device=device, bf16=bf16, show_progress=show_progress)


def _build_model(cross_encoder: Any, card_data: Any, setup: _Setup, recipe: TrainingRecipe) -> Any:
    """The CrossEncoder to train (one raw-logit output), with ``setup.max_length`` settled."""
    import torch

    model = cross_encoder(
        setup.base_path,
        num_labels=1,
        activation_fn=torch.nn.Identity(),  # raw logits, as the users' recipe scores them
        device=setup.device,
        model_card_data=card_data(
            local_files_only=True,
            model_name=f"winnow reranker fine-tuned from {Path(setup.base_path).name}",
        ),
    )
    setup.max_length = _max_length(recipe.max_length, model.max_seq_length, setup.device.startswith("cuda"))
    model.max_seq_length = setup.max_length
    logger.info(
        "base %s on %s, max_length %d, bf16 %s", setup.base_path, setup.device, setup.max_length, setup.bf16
    )
    return model


def _training_data(
    training_set: TrainingSet, recipe: TrainingRecipe, setup: _Setup, eval_depth: int
) -> tuple[Any, list[Any], list]:
    """The training dataset, the held-apart evaluators and their reranking samples; settles the step
    schedule and the metric that picks the best checkpoint in ``setup``."""
    from datasets import Dataset as HFDataset

    train_dataset = _to_dataset(HFDataset, training_set.train)
    evaluators, samples = _evaluators(training_set, recipe.batch_size, eval_depth)
    setup.rank_metric = f"eval_{EVAL_NAME}_ndcg@10" if samples else f"eval_{EVAL_NAME}_average_precision"
    steps_per_epoch = math.ceil(len(train_dataset) / (recipe.batch_size * recipe.gradient_accumulation_steps))
    setup.total_steps = recipe.max_steps or max(1, math.ceil(steps_per_epoch * recipe.epochs))
    setup.eval_steps = recipe.eval_steps or max(1, math.ceil(setup.total_steps / 4))
    return train_dataset, evaluators, samples


def _build_trainer(
    trainer_cls: Any,
    args_cls: Any,
    model: Any,
    train_dataset: Any,
    recipe: TrainingRecipe,
    setup: _Setup,
    evaluators: list[Any],
    checkpoint_dir: Path,
) -> Any:
    """The CrossEncoderTrainer with BCE on raw logits; its logs go to the logger when progress is hidden."""
    import torch

    args = _training_args(args_cls, recipe, setup, evaluators, checkpoint_dir)
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    pos_weight = None if recipe.pos_weight is None else torch.tensor(recipe.pos_weight)
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=BinaryCrossEntropyLoss(model, pos_weight=pos_weight),
        evaluator=evaluators or None,
    )
    if not setup.show_progress:  # the trainer prints log dicts to stdout; send them to the log instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(_LogCallback())
    return trainer


def _training_args(
    args_cls: Any, recipe: TrainingRecipe, setup: _Setup, evaluators: list[Any], checkpoint_dir: Path
) -> Any:
    """The trainer's arguments: the recipe, the schedule in ``setup``, best checkpoint kept when evaluated."""
    return args_cls(
        output_dir=str(checkpoint_dir),
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps or -1,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=max(recipe.batch_size, 32),
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate,
        warmup_steps=recipe.warmup,  # a float in [0, 1) is a fraction of the steps
        weight_decay=recipe.weight_decay,
        seed=recipe.seed,
        bf16=setup.bf16,
        use_cpu=setup.device == "cpu",
        eval_strategy="steps" if evaluators else "no",
        eval_steps=setup.eval_steps,
        save_strategy="steps",
        save_steps=setup.eval_steps,
        save_total_limit=recipe.save_total_limit,
        load_best_model_at_end=bool(evaluators),
        metric_for_best_model=setup.rank_metric if evaluators else None,
        greater_is_better=True if evaluators else None,
        logging_steps=recipe.logging_steps or max(1, min(50, setup.eval_steps)),
        disable_tqdm=not setup.show_progress,
        dataloader_num_workers=recipe.dataloader_num_workers,
        report_to="none",
    )


def _training_record(
    setup: _Setup, state: Any, output: Any, seconds: float, resume_from: str | None, evaluated: bool
) -> dict[str, Any]:
    """The card's ``training`` section: where and how long it trained, the loss history, the best step."""
    return {
        "device": setup.device,
        "bf16": setup.bf16,
        "global_steps": state.global_step,
        "epochs": round(float(state.epoch or 0.0), 4),
        "seconds": round(seconds, 1),
        "train_loss": _round(output.training_loss),
        "loss_history": [
            {"step": e["step"], "loss": _round(e["loss"])} for e in state.log_history if "loss" in e
        ],
        "resumed_from": resume_from,
        "best_metric": {"name": setup.rank_metric, "value": _round(state.best_metric)} if evaluated else None,
        "best_checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
    }


def _build_card(
    base: str | None,
    setup: _Setup,
    recipe: TrainingRecipe,
    training_set: TrainingSet,
    training: dict[str, Any],
    figures: dict[str, Any],
    reranking_queries: int,
    eval_depth: int,
    command: str | None,
) -> dict[str, Any]:
    """The ``winnow.json`` card, before the interpolation weight is tuned."""
    return {
        "format": CARD_FORMAT,
        "kind": "winnow cross-encoder reranker",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base": describe_model(base, setup.base_path),
        "scores": "raw logits (identity activation); thresholds below are on this scale",
        "max_length": setup.max_length,
        "data": training_set.summary(),
        "recipe": {
            **asdict(recipe),
            "loss": "BinaryCrossEntropyLoss on raw logits",
            "warmup_steps": recipe.warmup,
            "total_steps": setup.total_steps,
            "eval_steps": setup.eval_steps,
        },
        "training": training,
        "eval": {
            "data": "queries held apart from the training data (never a test split)",
            "candidates_per_query": eval_depth,
            "queries": len(training_set.eval_queries),
            "pairs": len(training_set.eval),
            "reranking_queries": reranking_queries,
            **figures,
        },
        "thresholds": _thresholds(figures),
        "interpolation": None,
        "command": command,
    }


def _tune_into_card(
    card: dict[str, Any],
    out_dir: Path,
    training_set: TrainingSet,
    split: str,
    depth: int,
    max_queries: int | None,
    setup: _Setup,
) -> None:
    """Tune the interpolation weight of the saved model, record it in ``card`` (rewritten), and warn when
    the reranker adds nothing to the first stage."""
    tuning = tune_interpolation(
        out_dir,
        training_set,
        split=split,
        depth=depth,
        max_queries=max_queries,
        device=setup.device,
        show_progress=setup.show_progress,
    )
    if tuning is None:
        return
    card["interpolation"] = tuning.to_dict()
    write_card(out_dir, card)
    if tuning.weight == 0.0:
        logger.warning(
            "the tuned interpolation weight is 0: on %s this reranker adds nothing to the first "
            "stage "
            "(nDCG@10 pure reranker %.4f, first stage %.4f); winnow will rank by the first stage. "
            "Train longer, on more data, or from a general cross-encoder (--base)",
            tuning.info.get("split"),
            tuning.scores.get(1.0, float("nan")),
            tuning.scores.get(0.0, float("nan")),
        )


class _LogCallback(TrainerCallback):
    """Trainer callback: training logs (loss, learning rate, evaluation figures) to this module's logger."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        if logs:
            shown = {k: _round(v, 4) for k, v in logs.items() if k != "total_flos"}
            logger.info("step %d: %s", state.global_step, shown)


def _max_length(requested: int | None, model_max: int | None, on_cuda: bool) -> int:
    cap = GPU_MAX_LENGTH if on_cuda else CPU_MAX_LENGTH
    if requested is not None:
        return requested
    return min(x for x in (model_max, cap) if x)


def _to_dataset(factory: Any, pairs: Sequence[Any]) -> Any:
    return factory.from_dict(
        {
            "query": [p.query for p in pairs],
            "document": [p.document for p in pairs],
            "label": [float(p.label) for p in pairs],
        }
    )


def _evaluators(training_set: TrainingSet, batch_size: int, depth: int) -> tuple[list[Any], list]:
    from sentence_transformers.cross_encoder.evaluation import (
        CrossEncoderClassificationEvaluator,
        CrossEncoderRerankingEvaluator,
    )

    evaluators: list[Any] = []
    held = training_set.eval
    labels = [int(p.label >= 0.5) for p in held]
    if held and 0 < sum(labels) < len(labels):
        evaluators.append(
            CrossEncoderClassificationEvaluator(
                [[p.query, p.document] for p in held],
                labels,
                name=EVAL_NAME,
                batch_size=max(batch_size, 32),
                show_progress_bar=False,
            )
        )
    elif held:
        logger.warning("the held-apart pairs have a single class; no classification figures")
    samples = training_set.reranking_samples(depth)
    if samples:
        evaluators.append(
            CrossEncoderRerankingEvaluator(
                samples,
                at_k=10,
                always_rerank_positives=False,  # comparable with the first stage's own order
                name=EVAL_NAME,
                batch_size=max(batch_size, 32),
                show_progress_bar=False,
            )
        )
    if not evaluators:
        logger.warning("no held-apart evaluation (eval fraction 0 or too few queries): keeping the last step")
    return evaluators, samples


def _final_figures(evaluators: list[Any], model: Any) -> dict[str, Any]:
    """The evaluators' figures for the model as saved (the best checkpoint)."""
    figures: dict[str, Any] = {}
    prefix = f"{EVAL_NAME}_"
    for evaluator in evaluators:
        kind = "classification" if "Classification" in type(evaluator).__name__ else "reranking"
        values = evaluator(model)
        figures[kind] = {k.removeprefix(prefix): _round(v) for k, v in values.items()}
    return figures


def _thresholds(figures: dict[str, Any]) -> dict[str, Any] | None:
    cls = figures.get("classification")
    if not cls:
        return None
    return {
        "accuracy": cls.get("accuracy_threshold"),
        "f1": cls.get("f1_threshold"),
        "scale": "raw logit",
        "note": "score >= threshold means relevant; calibrated on the held-apart training queries",
    }


def _round(value: Any, digits: int = 6) -> Any:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return round(number, digits) if math.isfinite(number) else None


def save_fp16_copy(model_dir: str | Path, out_dir: str | Path, *, max_shard_size: str = "45MB") -> Path:
    """Write a float16 copy of a trained model folder (weights in safetensors shards of at most
    ``max_shard_size``, model cards and tokenizer copied): half the size, for shipping as package data.
    Its config says float32, so ``CrossEncoder(path)`` and winnow's engine compute in float32 (or bf16)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelNotFoundError(f"{model_dir} is not a model folder (no config.json)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in model_dir.iterdir():
        weights = file.suffix in {".safetensors", ".bin"} or file.name.endswith(".index.json")
        if file.is_file() and not weights and file.name != "config.json":
            shutil.copy2(file, out_dir / file.name)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float16)
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    # Stored in fp16, computed in fp32: transformers loads with dtype="auto" (sentence-transformers'
    # CrossEncoder(path) too) and would otherwise run fp16 on CPU, which is slow.
    config_path = out_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["dtype"] = "float32"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out_dir
