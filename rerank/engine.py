"""winnow's cross-encoder scoring engine, built on ``transformers`` directly.

Any ``AutoModelForSequenceClassification`` folder or hub name works, which includes every folder that
sentence-transformers' ``CrossEncoder.save`` writes. Scores are raw logits unless an activation is chosen.
Documents longer than the room a pair leaves them are split into overlapping windows, each window is scored
as its own pair, and a document's score is the maximum over its windows; or they are truncated
(``windows=False``, or a model card that chose truncation on its dev split). ``score_with_readings`` and
``score_pairs_with_readings`` also say how each document was read (:mod:`rerank.reading`).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from winnow.rerank.card import card_interpolation_weight, card_windows, read_card
from winnow.rerank.models import model_load_error, read_model_json, resolve_model
from winnow.rerank.quantized import (
    INT8_BACKENDS,
    QUANTIZED_BACKENDS,
    artifact_dir,
    artifact_path,
    auto_backend,
    backend_missing,
    drop_stale_artifacts,
    open_runner,
    quality_check_failed,
    quantize,
)
from winnow.rerank.reading import Reading, Scored, reading_of
from winnow.rerank.windows import PairTemplate, doc_budget, truncate_query, window_spans
from winnow.retrieval.device import cpu_has_native_bf16, resolve_device

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "CrossEncoderEngine", "pair_template", "resolve_dtype", "sigmoid"]

# "torch" runs the transformers model; "onnx" exports it to ONNX and runs it with ONNX Runtime on CPU;
# "onnx-int8" also quantises the exported weights to int8 (dynamic quantisation); the quantised backends of
# rerank.quantized run OpenVINO (fp32, NNCF int8) and ONNX Runtime static QDQ int8. "auto" (the default) runs
# torch, except on CPU for a model whose card's quality check chose a quantised backend.
BACKENDS = ("torch", "onnx", "onnx-int8", *QUANTIZED_BACKENDS)
_ONNX_OPSET = 17

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_ACTIVATIONS = ("identity", "sigmoid", "tanh", "model")
# sentence-transformers stores the activation as a dotted class path.
_ST_ACTIVATIONS = {
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.Tanh": "tanh",
}
# Encoders whose position table holds two extra rows (padding offset): 514 positions, 512 usable.
_OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "data2vec-text"}
_DEFAULT_CAP = 512
# No tokenizer's token is longer than this many characters in practice: text past ``max_length`` tokens times
# this (times ``max_windows`` with windows) can never reach the model, so it is cut before tokenising.
_MAX_CHARS_PER_TOKEN = 8
_DEFAULT_CHARS_PER_TOKEN = 4.0
_CPU_BATCH, _CPU_BATCH_TOKENS = 32, 8192
_ACCEL_BATCH, _ACCEL_BATCH_TOKENS = 256, 65536


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """``"auto"``: bf16 on CUDA where supported, else fp16 on CUDA; bf16 on a CPU that computes it natively
    (AVX512-BF16/AMX: about 2x fp32 there, same ranking, see benchmarks/README.md); fp32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be a str such as 'auto' or 'bfloat16', got {type(dtype).__name__}")
    key = dtype.strip().lower().removeprefix("torch.")
    if key == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPES)}")
    return _DTYPES[key]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def pair_template(tokenizer: Any) -> PairTemplate:
    """Find where ``tokenizer`` puts special tokens around a pair by encoding a probe pair."""
    a_ids = tokenizer("a", add_special_tokens=False)["input_ids"]
    b_ids = tokenizer("b", add_special_tokens=False)["input_ids"]
    enc = tokenizer("a", "b", add_special_tokens=True, return_token_type_ids=True)
    ids = list(enc["input_ids"])
    types = list(enc.get("token_type_ids") or [0] * len(ids))
    i = _find(ids, a_ids, 0)
    j = _find(ids, b_ids, i + len(a_ids)) if i >= 0 else -1
    if i < 0 or j < 0:
        raise ValueError(f"cannot locate the two texts of a pair in the tokenizer's output {ids}")
    a_end, b_end = i + len(a_ids), j + len(b_ids)
    template = PairTemplate(
        prefix=tuple(ids[:i]),
        middle=tuple(ids[a_end:j]),
        suffix=tuple(ids[b_end:]),
        prefix_types=tuple(types[:i]),
        middle_types=tuple(types[a_end:j]),
        suffix_types=tuple(types[b_end:]),
        a_type=types[i] if a_ids else 0,
        b_type=types[j] if b_ids else 0,
    )
    expected = tokenizer.num_special_tokens_to_add(pair=True)
    if template.num_special != expected:
        raise ValueError(
            f"tokenizer adds {expected} special tokens to a pair but the probe found {template.num_special}; "
            "this tokenizer's pair layout is not supported"
        )
    return template


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for k in range(start, len(haystack) - len(needle) + 1):
        if haystack[k : k + len(needle)] == needle:
            return k
    return -1


class CrossEncoderEngine:
    """Scores (query, document) pairs with a sequence-classification cross-encoder.

    :param model: local folder, winnow short name or hub name (see :func:`rerank.models.resolve_model`).
    :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; None picks cuda, then mps, then cpu.
    :param dtype: ``"auto"`` (CUDA: bf16 where supported, else fp16; CPU: bf16 where the CPU computes it
        natively, else fp32; MPS: fp32), or an explicit dtype such as ``"float32"``.
    :param max_length: tokens per pair, special tokens included; None = the model's configured maximum,
        capped at 512 and at its position table.
    :param batch_size: most pairs per forward pass; None = 32 on CPU, 256 on an accelerator. Batches are also
        capped at ``max_batch_tokens`` padded tokens (None = 8192 on CPU, 65536 on an accelerator).
    :param windows: split documents longer than the room a pair leaves them into overlapping windows and
        score a document by its best window (True), or truncate them as sentence-transformers'
        ``CrossEncoder`` does (False). None: what the model's card chose on a dev split (``"windows"``), else
        True. Which is better depends on model and data (benchmarks/quality/README.md: windows win on SciFact
        abstracts with short claims, truncation wins on ArguAna's argument pairs).
    :param window_stride: tokens between window starts; None = three quarters of the room for the document
        (windows overlap by a quarter). Clamped to that room.
    :param max_windows: most windows per document; a longer document gets ``max_windows`` evenly spread
        windows. At most ``max_length * max_windows * 8`` characters of a document are tokenised (its head and
        its tail; ``max_length * 8`` characters of its head when truncating), so its cost is bounded whatever
        its length.
    :param activation: None (raw logits), ``"sigmoid"``, ``"tanh"``, or ``"model"`` for the activation the
        model was saved with by sentence-transformers (sigmoid for one label when it saved none).
    :param show_progress: progress bar over batches; None shows it when this module logs at INFO or lower.
    :param trust_remote_code: allow custom model code from the model folder or hub repo.
    :param num_threads: calls ``torch.set_num_threads`` (process-wide) on load; None leaves torch's default.
        With an ONNX backend it also sets ONNX Runtime's intra-op threads (None: torch's thread count).
    :param backend: ``"auto"`` (default): ``"torch"``, except on CPU for a model whose card records a passed
        quality check (:mod:`rerank.quantize_check`) choosing a quantised backend, which then runs; when the
        check failed or the chosen backend cannot run here, fp32 runs and :attr:`backend_note` says why.
        ``"torch"``; ``"onnx"`` (export to ONNX on load, run with ONNX Runtime on CPU, fp32);
        ``"onnx-int8"`` (the same with dynamically quantised int8 weights); ``"openvino"``,
        ``"openvino-int8"``, ``"onnx-qdq-int8"`` (:mod:`rerank.quantized`; int8 needs a cached quantised model
        or ``calibration_pairs``). ONNX backends need the ``onnx`` extra, OpenVINO ones ``cpu-int8``; all
        run on CPU only.
    :param onnx_dir: folder for the exported ``model.onnx`` and quantised files; files already there are
        reused. None: the quantised backends use :func:`rerank.quantized.artifact_dir`; ``onnx`` and
        ``onnx-int8`` export into a temporary folder on every load, removed once the session is open.
    :param calibration_pairs: (query, document) pairs from the model's training data (never a test split) to
        calibrate an int8 backend whose quantised model is not cached yet.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        max_length: int | None = None,
        batch_size: int | None = None,
        windows: bool | None = None,
        window_stride: int | None = None,
        max_windows: int | None = 16,
        activation: str | None = None,
        show_progress: bool | None = False,
        trust_remote_code: bool = False,
        num_threads: int | None = None,
        max_batch_tokens: int | None = None,
        backend: str = "auto",
        onnx_dir: str | Path | None = None,
        calibration_pairs: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be a non-empty str: a local folder, winnow short name or hub name")
        _check_positive("max_length", max_length)
        _check_positive("batch_size", batch_size)
        _check_positive("window_stride", window_stride)
        _check_positive("max_windows", max_windows)
        _check_positive("num_threads", num_threads)
        _check_positive("max_batch_tokens", max_batch_tokens)
        key = None if activation is None else str(activation).strip().lower()
        if key in (None, "none", "identity"):
            key = "identity"
        elif key not in _ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; use None (raw logits), 'sigmoid', 'tanh' or 'model'"
            )
        backend = str(backend).strip().lower()
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use 'auto' or one of {', '.join(BACKENDS)}")
        self._onnx_dir = None if onnx_dir is None else Path(onnx_dir)
        self._calibration_pairs = None if calibration_pairs is None else [tuple(p) for p in calibration_pairs]
        self._runner: Any = None
        self._onnx_inputs: tuple[str, ...] = ()
        self._model_name = model
        self._card: dict[str, Any] | None = None
        self._card_read = False
        self._backend_note: str | None = None
        if backend == "auto":
            backend = "torch"
            if resolve_device(device) == "cpu" and dtype in ("auto", "float32", "fp32", torch.float32):
                backend, self._backend_note = auto_backend(
                    self.card,
                    _local_folder(model),
                    native_bf16=dtype == "auto" and cpu_has_native_bf16(),
                )
                if self._backend_note:  # a warning when the check failed; info when fp32 runs by choice
                    log = logger.warning if quality_check_failed(self.card) else logger.info
                    log("reranker %s %s", model, self._backend_note)
        self._backend = backend
        if backend != "torch":
            if device not in (None, "cpu"):
                raise ValueError(f"backend {backend!r} runs on CPU only; got device={device!r}")
            device = "cpu"
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device) if backend == "torch" else torch.float32
        on_cpu = self._device == "cpu"
        self._batch_size = batch_size or (_CPU_BATCH if on_cpu else _ACCEL_BATCH)
        self._max_batch_tokens = max_batch_tokens or (_CPU_BATCH_TOKENS if on_cpu else _ACCEL_BATCH_TOKENS)
        self._requested_max_length = max_length
        self._windows_arg = None if windows is None else bool(windows)
        self._window_stride = window_stride
        self._max_windows = max_windows
        self._activation = key
        self.show_progress = show_progress
        self._trust_remote_code = trust_remote_code
        self._num_threads = num_threads
        self._lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._template: PairTemplate | None = None
        self._max_length: int | None = None
        self._num_labels = 1
        self._default_activation = "sigmoid"
        self._use_token_types = False
        self._pad_id = 0
        self._chars_per_token = _DEFAULT_CHARS_PER_TOKEN  # measured on the texts scored, for estimates

    # ------------------------------------------------------------------ properties
    @property
    def model_name(self) -> str:
        """The model as given (short name, folder or hub name)."""
        return self._model_name

    @property
    def device(self) -> str:
        """The torch device string the model runs on."""
        return self._device

    @property
    def backend(self) -> str:
        """The backend that runs: ``"torch"`` or one of the CPU backends of :data:`BACKENDS`."""
        return self._backend

    @property
    def backend_note(self) -> str | None:
        """Why ``backend="auto"`` runs fp32 for this model although it looked for a quantised backend (its
        quality check failed, or the chosen backend cannot run here), else None. Also logged as a warning."""
        return self._backend_note

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model weights are loaded in."""
        return self._dtype

    @property
    def max_length(self) -> int:
        """Tokens per pair, special tokens included (loads the model if needed)."""
        self.load()
        assert self._max_length is not None
        return self._max_length

    @property
    def windows(self) -> bool:
        """Whether long documents are scored by their best window (True) or truncated (False): the argument,
        else the card's choice, else True."""
        if self._windows_arg is not None:
            return self._windows_arg
        chosen = card_windows(self.card)
        return True if chosen is None else chosen

    @property
    def activation(self) -> str:
        """Activation on scores: ``"identity"`` (raw logits), ``"sigmoid"``, ``"tanh"`` or ``"model"``."""
        return self._activation

    @property
    def default_activation(self) -> str:
        """The activation sentence-transformers saved with the model (loads the model if needed)."""
        self.load()
        return self._default_activation

    @property
    def card(self) -> dict[str, Any] | None:
        """The model's ``winnow.json`` card (written by ``winnow finetune``), or None; read once, without
        loading the model."""
        if not self._card_read:
            self._card = read_card(self._model_name)
            self._card_read = True
        return self._card

    @property
    def interpolation_weight(self) -> float | None:
        """The interpolation weight tuned for this model (from its card), or None for a pure reranker."""
        return card_interpolation_weight(self.card)

    @property
    def is_loaded(self) -> bool:
        """Whether the tokenizer and model are loaded."""
        return self._model is not None

    # ------------------------------------------------------------------ loading
    def load(self) -> CrossEncoderEngine:
        """Load tokenizer and model once; later calls return at once. Thread-safe."""
        if self._model is not None:
            return self
        with self._lock:
            if self._model is None:
                self._load()
        return self

    def _load(self) -> None:
        path = resolve_model(self._model_name)
        if self._num_threads is not None:
            torch.set_num_threads(self._num_threads)
        remote = self._trust_remote_code
        try:
            config = AutoConfig.from_pretrained(path, trust_remote_code=remote)
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, dtype=self._dtype, trust_remote_code=remote
            )
        except OSError as err:
            new = model_load_error(path, err)
            if new is err:
                raise
            raise new from err
        num_labels = int(getattr(model.config, "num_labels", 1))
        if num_labels not in (1, 2):
            raise ValueError(
                f"model {self._model_name!r} has {num_labels} labels; a reranker needs one relevance logit "
                "(or two labels: not relevant, relevant)"
            )
        template = pair_template(tokenizer)
        st_config = read_model_json(path, "config_sentence_transformers.json") or {}
        sbert_config = read_model_json(path, "sentence_bert_config.json") or {}
        max_length = self._resolve_max_length(config, tokenizer, sbert_config, template.num_special)
        model.to(self._device)
        model.eval()
        self._template = template
        self._max_length = max_length
        self._use_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if self._backend != "torch":
            # the ONNX Runtime / OpenVINO runner replaces the torch model, whose weights are then freed
            self._tokenizer = tokenizer
            self._runner, self._onnx_inputs = self._onnx_session(model, tokenizer)
            model = self._runner
        self._num_labels = num_labels
        self._default_activation = _saved_activation(config, st_config, num_labels)
        self._tokenizer = tokenizer
        self._model = model
        logger.info(
            "loaded cross-encoder %s on %s (%s, max_length=%d, windows=%s)",
            self._model_name,
            self._device,
            str(self._dtype).removeprefix("torch."),
            max_length,
            self.windows,
        )

    def _onnx_session(self, model: Any, tokenizer: Any) -> tuple[Any, tuple[str, ...]]:
        """Export ``model`` to ONNX (once per folder), quantise it for int8 backends, open a CPU runner."""
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(
                f"backend {self._backend!r} needs onnxruntime and onnx: pip install 'winnow-rerank[onnx]'"
            ) from err
        if self._backend in QUANTIZED_BACKENDS:
            missing = backend_missing(self._backend)
            if missing:
                raise ImportError(missing)
            folder = self._onnx_dir or artifact_dir(resolve_model(self._model_name))
            folder.mkdir(parents=True, exist_ok=True)
            return self._quantized_runner(model, tokenizer, folder)
        temp = None if self._onnx_dir is not None else tempfile.TemporaryDirectory(prefix="winnow-onnx-")
        try:
            folder = self._onnx_dir or Path(temp.name)  # type: ignore[union-attr]
            folder.mkdir(parents=True, exist_ok=True)
            return self._onnx_export_and_open(ort, model, tokenizer, folder)
        finally:
            if temp is not None:  # the session holds the model in memory; the files are no longer needed
                temp.cleanup()

    def _quantized_runner(self, model: Any, tokenizer: Any, folder: Path) -> tuple[Any, tuple[str, ...]]:
        """Export to ``folder/model.onnx`` unless present, quantise (calibrating on ``calibration_pairs``)
        unless the quantised model is cached, then open it."""
        fp32 = self._export_onnx(model, tokenizer, folder)
        path = artifact_path(folder, self._backend)
        if self._backend in INT8_BACKENDS and not path.is_file():
            if not self._calibration_pairs:
                raise ValueError(
                    f"backend {self._backend!r}: no quantised model at {path}; pass calibration_pairs (pairs "
                    "from the model's training data, never a test split) or run "
                    "python -m winnow.rerank.quantize_check"
                )
            feeds = self._model_inputs(self._calibration_pairs)
            record = {
                "model": Path(self._model_name).name,
                "pairs": len(self._calibration_pairs),
                "max_length": self._max_length,
            }
            quantize(self._backend, fp32, path, feeds, record)
        return open_runner(self._backend, path, self._num_threads or torch.get_num_threads())

    def _export_onnx(self, model: Any, tokenizer: Any, folder: Path) -> Path:
        """Export ``model`` to ``folder/model.onnx`` unless that file exists; its path."""
        fp32 = folder / "model.onnx"
        drop_stale_artifacts(folder, _local_folder(self._model_name))
        names = ["input_ids", "attention_mask"]
        if "token_type_ids" in getattr(tokenizer, "model_input_names", ()):
            names.append("token_type_ids")
        if not fp32.is_file():
            # padded example rows: a trace on an all-ones mask would drop the masking from the graph
            mask = torch.ones((2, 8), dtype=torch.long)
            mask[1, 5:] = 0
            example = tuple(mask if name == "attention_mask" else torch.ones_like(mask) for name in names)
            if hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation("eager")  # traces to plain ops; SDPA's shortcuts do not
            dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
            dynamic["logits"] = {0: "batch"}
            # written under another name and renamed when whole: a process opening the folder meanwhile
            # never reads half a file, and a crash leaves no model.onnx behind
            partial = fp32.with_name(f".{fp32.name}.{os.getpid()}.partial")
            try:
                with torch.no_grad():
                    torch.onnx.export(
                        model,
                        example,
                        str(partial),
                        input_names=names,
                        output_names=["logits"],
                        dynamic_axes=dynamic,
                        opset_version=_ONNX_OPSET,
                        dynamo=False,
                    )
                os.replace(partial, fp32)
            finally:
                partial.unlink(missing_ok=True)
            logger.info("exported %s to %s", self._model_name, fp32)
        return fp32

    def _onnx_export_and_open(
        self, ort: Any, model: Any, tokenizer: Any, folder: Path
    ) -> tuple[Any, tuple[str, ...]]:
        """Export to ``folder/model.onnx`` unless present (and quantise for int8), then open the session."""
        fp32 = self._export_onnx(model, tokenizer, folder)
        path = fp32
        if self._backend == "onnx-int8":
            path = folder / "model-int8.onnx"
            if not path.is_file():
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph_inputs = tuple(i.name for i in session.get_inputs())
        return (lambda feed: session.run(["logits"], feed)[0]), graph_inputs

    def _resolve_max_length(
        self, config: Any, tokenizer: Any, sbert_config: dict[str, Any], num_special: int
    ) -> int:
        positions = getattr(config, "max_position_embeddings", None)
        usable = None
        if isinstance(positions, int) and positions > 0:
            offset = 2 if getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS else 0
            usable = positions - offset
        if self._requested_max_length is not None:
            max_length = self._requested_max_length
            if usable is not None and max_length > usable:
                logger.warning(
                    "max_length=%d exceeds the %d positions model %s has; using %d",
                    max_length,
                    usable,
                    self._model_name,
                    usable,
                )
                max_length = usable
        else:
            configured = sbert_config.get("max_seq_length")
            if not isinstance(configured, int) or configured <= 0:
                configured = getattr(tokenizer, "model_max_length", None)
            if not isinstance(configured, int) or configured <= 0 or configured > 1_000_000:
                configured = None  # transformers' "no limit" sentinel is a huge integer
            max_length = min(x for x in (configured, _DEFAULT_CAP, usable) if x is not None)
        if max_length < num_special + 2:
            raise ValueError(
                f"max_length={max_length} leaves no room for text next to {num_special} special tokens; "
                "raise it"
            )
        return max_length

    # ------------------------------------------------------------------ scoring
    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """One float32 score per document for ``query`` (raw logits unless an activation was chosen)."""
        documents = _checked_documents(query, documents)
        return self._score([query], [0] * len(documents), documents)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One float32 score per ``(query, document)`` pair (raw logits unless an activation was chosen)."""
        return self._score(*_checked_pairs(pairs))

    def score_with_readings(self, query: str, documents: Sequence[str]) -> Scored:
        """:meth:`score`, and how each document was read (:class:`rerank.reading.Reading`: whole, truncated
        at N tokens, or its best of K windows), taken from the token counts scoring computes anyway."""
        documents = _checked_documents(query, documents)
        readings: list[Reading] = []
        return Scored(self._score([query], [0] * len(documents), documents, readings), readings)

    def score_pairs_with_readings(self, pairs: Sequence[tuple[str, str]]) -> Scored:
        """:meth:`score_pairs`, and how each pair's document was read (see :meth:`score_with_readings`)."""
        readings: list[Reading] = []
        return Scored(self._score(*_checked_pairs(pairs), readings), readings)

    def estimate_windows(self, query: str, documents: Sequence[str]) -> int:
        """Model rows (windows) scoring ``documents`` against ``query`` takes, estimated from their lengths in
        characters without tokenising (characters per token as measured on the texts scored so far, 4 before
        that). Cheap enough to price requests before they queue."""
        self.load()
        assert self._template is not None and self._max_length is not None
        per_token = self._chars_per_token
        room = self._max_length - self._template.num_special
        query_tokens = min(math.ceil(len(query) / per_token), room // 2)
        budget = max(1, room - query_tokens)
        if not self.windows:
            return len(documents)
        stride = self._stride(budget)
        cap = self._max_document_chars()
        total = 0
        for doc in documents:
            tokens = math.ceil(min(len(doc), cap) / per_token)
            count = 1 if tokens <= budget else math.ceil((tokens - budget) / stride) + 1
            total += count if self._max_windows is None else min(count, self._max_windows)
        return total

    def _max_document_chars(self) -> int | None:
        """Characters of a document that can reach the model (None: all)."""
        assert self._max_length is not None
        if not self.windows:
            return self._max_length * _MAX_CHARS_PER_TOKEN
        if self._max_windows is None:
            return None
        return self._max_length * self._max_windows * _MAX_CHARS_PER_TOKEN

    def _score(
        self,
        queries: list[str],
        query_of: list[int],
        documents: list[str],
        readings: list[Reading] | None = None,
    ) -> np.ndarray:
        """Scores of the pairs ``(queries[query_of[i]], documents[i])``; with a ``readings`` list, also
        appends each document's :class:`Reading` to it."""
        if not documents:
            return np.zeros(0, dtype=np.float32)
        self.load()
        full_query_ids = self._tokenize(queries)
        query_ids = [self._truncated_query(ids) for ids in full_query_ids]
        cap = self._max_document_chars()
        clipped = [False] * len(documents)
        if cap is not None:
            clipped = [len(doc) > cap for doc in documents]
            documents = [_clip(doc, cap, tail=self.windows) for doc in documents]
        doc_ids = self._tokenize(documents)
        tokens = sum(len(ids) for ids in doc_ids)
        if tokens:
            ratio = min(max(sum(len(doc) for doc in documents) / tokens, 1.0), float(_MAX_CHARS_PER_TOKEN))
            self._chars_per_token = 0.9 * self._chars_per_token + 0.1 * ratio
        spans: list[list[tuple[int, int]]] | None = None if readings is None else []
        rows, owner = self._build_rows(query_ids, query_of, doc_ids, spans)
        row_scores = self._run_rows(rows)
        scores = np.full(len(documents), -np.inf, dtype=np.float64)
        np.maximum.at(scores, owner, row_scores)
        if readings is not None and spans is not None:
            first = 0  # a pair's rows are consecutive, its windows in document order
            for pair, pair_spans in enumerate(spans):
                count, q = len(pair_spans), query_of[pair]
                best = int(np.argmax(row_scores[first : first + count])) if count > 1 else 0
                first += count
                readings.append(
                    reading_of(
                        pair_spans,
                        len(doc_ids[pair]),
                        best_window=best,
                        clipped=clipped[pair],
                        query_tokens=len(query_ids[q]),
                        query_truncated=len(query_ids[q]) < len(full_query_ids[q]),
                    )
                )
        return self._activate(scores).astype(np.float32)

    def model_inputs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, np.ndarray]]:
        """The model inputs scoring ``pairs`` runs (``input_ids``, ``attention_mask`` and, where the model
        takes them, ``token_type_ids``), batch by batch, as numpy arrays: what int8 calibration feeds it."""
        self.load()
        return self._model_inputs(pairs)

    def _model_inputs(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, np.ndarray]]:
        queries, query_of, documents = _checked_pairs(pairs)
        query_ids = [self._truncated_query(ids) for ids in self._tokenize(queries)]
        cap = self._max_document_chars()
        if cap is not None:
            documents = [_clip(doc, cap, tail=self.windows) for doc in documents]
        rows, _ = self._build_rows(query_ids, query_of, self._tokenize(documents))
        feeds = []
        for batch in self._batches([len(ids) for ids, _ in rows]):
            input_ids, attention_mask, token_types = self._collate([rows[i] for i in batch])
            feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
            if token_types is not None:
                feed["token_type_ids"] = token_types.cpu().numpy()
            feeds.append(feed)
        return feeds

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        with self._tokenizer_lock:
            encoded = self._tokenizer(
                texts,
                add_special_tokens=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )
        return [list(ids) for ids in encoded["input_ids"]]

    def _truncated_query(self, ids: list[int]) -> list[int]:
        assert self._template is not None and self._max_length is not None
        return truncate_query(ids, self._max_length, self._template.num_special)

    def _stride(self, budget: int) -> int:
        if self._window_stride is not None:
            return min(self._window_stride, budget)
        return max(1, budget - budget // 4)

    def _build_rows(
        self,
        query_ids: list[list[int]],
        query_of: list[int],
        doc_ids: list[list[int]],
        spans_out: list[list[tuple[int, int]]] | None = None,
    ) -> tuple[list[tuple[list[int], list[int]]], np.ndarray]:
        """Model inputs ``(input_ids, token_type_ids)`` for every (pair, window), and the pair of each row;
        with ``spans_out``, also each pair's document token spans (one per row, in row order)."""
        assert self._template is not None and self._max_length is not None
        template, num_special = self._template, self._template.num_special
        rows: list[tuple[list[int], list[int]]] = []
        owner: list[int] = []
        capped = 0
        windows = self.windows  # resolved once per call, not per pair
        for pair, (q_index, ids) in enumerate(zip(query_of, doc_ids, strict=True)):
            q_ids = query_ids[q_index]
            budget = doc_budget(len(q_ids), self._max_length, num_special)
            if windows:
                stride = self._stride(budget)
                spans = window_spans(len(ids), budget, stride, self._max_windows)
                capped += _capped(len(ids), budget, stride, self._max_windows)
            else:
                spans = [(0, min(len(ids), budget))]
            for start, end in spans:
                rows.append(template.build(q_ids, ids[start:end]))
                owner.append(pair)
            if spans_out is not None:
                spans_out.append(spans)
        if capped:
            logger.debug(
                "%d of %d documents needed more than max_windows=%d windows; spread their windows evenly",
                capped,
                len(doc_ids),
                self._max_windows,
            )
        return rows, np.asarray(owner, dtype=np.int64)

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Row indices grouped into batches, longest rows first, capped by rows and by padded tokens."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        start = 0
        while start < len(order):
            longest = max(1, lengths[order[start]])
            size = max(1, min(self._batch_size, self._max_batch_tokens // longest))
            batches.append(order[start : start + size])
            start += size
        return batches

    def _run_rows(self, rows: list[tuple[list[int], list[int]]]) -> np.ndarray:
        lengths = [len(ids) for ids, _ in rows]
        batches = self._batches(lengths)
        out = np.empty(len(rows), dtype=np.float64)
        show = self.show_progress
        if show is None:
            show = logger.getEffectiveLevel() <= logging.INFO
        bar = tqdm(batches, desc="Scoring pairs", unit="batch", disable=not show or len(batches) < 2)
        with torch.inference_mode():
            for batch in bar:
                input_ids, attention_mask, token_type_ids = self._collate([rows[i] for i in batch])
                logits = self._forward(input_ids, attention_mask, token_type_ids)
                out[batch] = logits.detach().float().cpu().numpy().reshape(-1)
        return out

    def _collate(
        self, rows: list[tuple[list[int], list[int]]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        width = max(len(ids) for ids, _ in rows)
        if self._device.startswith("cuda") and self._max_length is not None:
            # pad to a multiple of 8 for tensor cores, never past max_length
            width = max(width, min(-(-width // 8) * 8, self._max_length))
        input_ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        token_types = np.zeros((len(rows), width), dtype=np.int64) if self._use_token_types else None
        for r, (ids, types) in enumerate(rows):
            input_ids[r, : len(ids)] = ids
            attention_mask[r, : len(ids)] = 1
            if token_types is not None:
                token_types[r, : len(types)] = types
        return (
            self._to_device(input_ids),
            self._to_device(attention_mask),
            None if token_types is None else self._to_device(token_types),
        )

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """A host array on the model's device; on CUDA through pinned memory, copied asynchronously."""
        tensor = torch.from_numpy(array)
        if self._device.startswith("cuda"):
            return tensor.pin_memory().to(self._device, non_blocking=True)
        return tensor.to(self._device)

    def _forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """One forward pass: the relevance logit of each row, shape ``(batch,)``."""
        kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self._runner is not None:
            feed = {name: kwargs[name].numpy() for name in self._onnx_inputs}
            logits = torch.from_numpy(self._runner(feed))
        else:
            logits = self._model(**kwargs).logits
        if logits.shape[-1] == 2:  # (not relevant, relevant): log-odds of relevant = softmax[:, 1] logit
            return logits[:, 1] - logits[:, 0]
        return logits[:, 0]

    def _activate(self, scores: np.ndarray) -> np.ndarray:
        activation = self._default_activation if self._activation == "model" else self._activation
        if activation == "sigmoid":
            return sigmoid(scores)
        if activation == "tanh":
            return np.tanh(scores)
        return scores

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self._model_name!r}, device={self._device!r}, "
            f"dtype={str(self._dtype).removeprefix('torch.')}, backend={self._backend!r}, "
            f"windows={self.windows}, loaded={self.is_loaded})"
        )


def _local_folder(model: str) -> str | None:
    """The local folder ``model`` resolves to, or None (a hub name, or nothing found)."""
    try:
        path = resolve_model(model)
    except ValueError:
        return None
    return path if Path(path).is_dir() else None


def _check_positive(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int or None, got {value}")


def _checked_documents(query: str, documents: Sequence[str]) -> list[str]:
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError("documents must be a sequence of str (a list), not a single str")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise TypeError(f"documents[{i}] must be a str, got {type(doc).__name__}")
    return list(documents)


def _checked_pairs(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[int], list[str]]:
    """``(queries, query_of, documents)`` of ``pairs``, each distinct query once."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError("pairs must be a sequence of (query, document) tuples")
    query_index: dict[str, int] = {}
    owners: list[int] = []
    documents: list[str] = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"pairs[{i}] must be a (query, document) tuple, got {pair!r:.80}")
        query, doc = pair
        if not isinstance(query, str) or not isinstance(doc, str):
            raise TypeError(
                f"pairs[{i}] must hold two str, got ({type(query).__name__}, {type(doc).__name__})"
            )
        owners.append(query_index.setdefault(query, len(query_index)))
        documents.append(doc)
    return list(query_index), owners, documents


def _clip(text: str, limit: int, *, tail: bool) -> str:
    """``text`` cut to ``limit`` characters: its head, or (``tail``) its head and its tail."""
    if len(text) <= limit:
        return text
    if not tail:
        return text[:limit]
    half = limit // 2
    return text[:half] + " " + text[len(text) - (limit - half) :]


def _capped(length: int, budget: int, stride: int, max_windows: int | None) -> bool:
    """Whether a document of ``length`` tokens needs more than ``max_windows`` windows."""
    if max_windows is None or length <= budget:
        return False
    return math.ceil((length - budget) / stride) + 1 > max_windows


def _saved_activation(config: Any, st_config: dict[str, Any], num_labels: int) -> str:
    """The activation sentence-transformers saved: v6 ``config_sentence_transformers.json``, v4-5
    ``config.json['sentence_transformers']``, older ``sbert_ce_default_activation_function``."""
    path = st_config.get("activation_fn")
    section = getattr(config, "sentence_transformers", None)
    if path is None and isinstance(section, dict):
        path = section.get("activation_fn")
    if path is None:
        path = getattr(config, "sbert_ce_default_activation_function", None)
    if path is None:
        return "sigmoid" if num_labels == 1 else "identity"
    if path not in _ST_ACTIVATIONS:
        logger.warning("unsupported saved activation %s; using sigmoid", path)
        return "sigmoid"
    return _ST_ACTIVATIONS[path]
