"""Quantised CPU backends for :class:`rerank.engine.CrossEncoderEngine`, and how ``backend="auto"`` picks one.

Backends, all on CPU and all built from the model's ONNX export:

- ``openvino``: the OpenVINO runtime, fp32;
- ``openvino-int8``: OpenVINO running int8 from NNCF post-training quantisation (``ModelType.TRANSFORMER``,
  which keeps softmax, LayerNorm and GELU in float; the classifier head is left out too), with NNCF's
  overflow fix so the model is exact on CPUs without VNNI (AVX2 only) as well;
- ``onnx-qdq-int8``: ONNX Runtime static QDQ int8, per-channel weights, activation ranges calibrated once;
  the classifier head, the attention products (softmax inputs and outputs) and LayerNorm stay fp32, and
  weights use 7 bits (``reduce_range``), which AVX2 CPUs without VNNI need to avoid overflow.

int8 models are calibrated on (query, document) pairs the caller supplies: pairs from the model's own
training data, never a test split. They are cached in the model folder's ``quantized/`` when that is
writable, else under ``$WINNOW_CACHE`` (default ``~/.cache/winnow``) ``/quantized/<name>-<weights hash>``,
each next to a ``<file>.calibration.json`` that records its calibration.

Whether a model may run int8 by default is decided by its quality check (:mod:`rerank.quantize_check`),
recorded in its card's ``cpu_quantization`` section; :func:`auto_backend` reads it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "CHECK_SECTION",
    "DEFAULT_TOLERANCE",
    "INT8_BACKENDS",
    "QUANTIZED_BACKENDS",
    "SOURCE_FILE",
    "artifact_dir",
    "artifact_path",
    "auto_backend",
    "backend_missing",
    "cpu_int8_dot",
    "drop_stale_artifacts",
    "open_runner",
    "read_calibration",
    "quality_check_failed",
    "quantize",
    "sensitive_nodes",
]

QUANTIZED_BACKENDS = ("openvino", "openvino-int8", "onnx-qdq-int8")
INT8_BACKENDS = ("openvino-int8", "onnx-qdq-int8")
CHECK_SECTION = "cpu_quantization"  # the model card's section the quality check writes
DEFAULT_TOLERANCE = 0.005  # the largest nDCG@10 loss against fp32 on any check set that still passes
_FILES = {
    "openvino": "model.onnx",
    "openvino-int8": "openvino-int8.xml",
    "onnx-qdq-int8": "model-qdq-int8.onnx",
}
_PACKAGES = {
    "openvino": ("openvino",),
    "openvino-int8": ("openvino", "nncf"),
    "onnx-qdq-int8": ("onnxruntime",),
}
_CHECK_COMMAND = "python -m winnow.rerank.quantize_check MODEL --write-card"

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def backend_missing(backend: str, *, building: bool = False) -> str | None:
    """What ``backend`` needs that is not installed (None: nothing). ``building``: also what quantising needs
    (NNCF for OpenVINO int8); running a cached OpenVINO int8 model needs only ``openvino``."""
    needed = _PACKAGES.get(backend, ())
    if not building:
        needed = needed[:1]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    extra = "cpu-int8" if backend.startswith("openvino") else "onnx"
    return f"backend {backend!r} needs {', '.join(missing)}: pip install 'winnow-rerank[{extra}]'"


def artifact_dir(model_path: str | os.PathLike[str]) -> Path:
    """Where a model's exported and quantised files live: its folder's ``quantized/`` when writable, else a
    per-model folder under ``$WINNOW_CACHE`` (default ``~/.cache/winnow``)."""
    folder = Path(model_path)
    if folder.is_dir() and os.access(folder, os.W_OK):
        return folder / "quantized"
    from winnow.rerank.card import weights_sha256

    digest = weights_sha256(folder)[:16] if folder.is_dir() else "hub"
    root = Path(os.environ.get("WINNOW_CACHE") or Path.home() / ".cache" / "winnow")
    return root / "quantized" / f"{folder.name}-{digest}"


def artifact_path(folder: Path, backend: str) -> Path:
    """The file ``backend`` runs inside ``folder`` (OpenVINO fp32 reads the ONNX export directly)."""
    if backend not in _FILES:
        raise ValueError(f"no quantised artifact for backend {backend!r}; use one of {QUANTIZED_BACKENDS}")
    return folder / _FILES[backend]


SOURCE_FILE = "source.json"  # in an artifact folder: the sha256 of the weights its files were built from
_BUILT_FILES = (*_FILES.values(), "openvino-int8.bin", "model-int8.onnx")


def drop_stale_artifacts(folder: Path, model_path: str | os.PathLike[str] | None) -> list[str]:
    """Delete the exported and quantised files in ``folder`` unless ``SOURCE_FILE`` says they were built from
    the weights now in ``model_path`` (a model retrained into the same folder must not run its old export),
    then record those weights; the names deleted. Only winnow's own file names are touched."""
    if model_path is None or not Path(model_path).is_dir():
        return []
    from winnow.rerank.card import weights_sha256

    digest = weights_sha256(model_path)
    record = folder / SOURCE_FILE
    try:
        built_from = json.loads(record.read_text(encoding="utf-8")).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        built_from = None
    dropped: list[str] = []
    if built_from != digest:
        for name in _BUILT_FILES:
            for path in (folder / name, folder / f"{name}.calibration.json"):
                if path.is_file():
                    path.unlink()
                    dropped.append(path.name)
        if dropped:
            logger.warning("%s: dropped %s, built from other weights than %s", folder, dropped, model_path)
        folder.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"weights_sha256": digest}) + "\n", encoding="utf-8")
    return dropped


def read_calibration(path: Path) -> dict[str, Any] | None:
    """The calibration record kept next to a quantised file, or None."""
    record = path.with_name(path.name + ".calibration.json")
    try:
        return json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sensitive_nodes(onnx_path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Nodes of an exported encoder that int8 hurts most, by kind: ``classifier`` (the head's MatMul/Gemm
    nodes), ``attention`` (MatMuls of two activations: the query-key product feeding softmax and the
    softmax-value product) and ``layernorm`` (LayerNormalization nodes)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    weights |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    kinds: dict[str, list[str]] = {"classifier": [], "attention": [], "layernorm": []}
    for node in graph.node:
        name = node.name.lower()
        if node.op_type in ("MatMul", "Gemm") and ("classifier" in name or "pooler" in name):
            kinds["classifier"].append(node.name)
        elif node.op_type == "MatMul" and not any(i in weights for i in node.input):
            kinds["attention"].append(node.name)
        elif node.op_type == "LayerNormalization":
            kinds["layernorm"].append(node.name)
    return kinds


def quantize(
    backend: str,
    fp32_onnx: Path,
    out: Path,
    feeds: Iterable[dict[str, np.ndarray]],
    record: dict[str, Any],
) -> Path:
    """Quantise ``fp32_onnx`` to int8 for ``backend``, calibrating on the model inputs ``feeds`` (batches of
    pairs from the model's training data); write it to ``out`` and ``record`` (plus what was kept in float)
    to ``out``'s ``.calibration.json``."""
    missing = backend_missing(backend, building=True)
    if missing:
        raise ImportError(missing)
    feeds = list(feeds)
    if not feeds:
        raise ValueError("quantising needs calibration pairs (none were given)")
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = sensitive_nodes(fp32_onnx)
    start = time.perf_counter()
    if backend == "openvino-int8":
        _quantize_openvino(fp32_onnx, out, feeds, kept["classifier"])
        in_float = {
            "classifier": kept["classifier"],
            "by NNCF's transformer preset": "softmax, LayerNorm, GELU",
        }
    elif backend == "onnx-qdq-int8":
        _quantize_onnx_static(fp32_onnx, out, feeds, kept["classifier"] + kept["attention"])
        in_float = {k: v for k, v in kept.items()}
    else:
        raise ValueError(f"backend {backend!r} is not an int8 backend; use one of {INT8_BACKENDS}")
    full = {
        **record,
        "backend": backend,
        "calibration_batches": len(feeds),
        "calibration_rows": int(sum(len(f["input_ids"]) for f in feeds)),
        "kept_in_float": in_float,
        "seconds": round(time.perf_counter() - start, 1),
    }
    out.with_name(out.name + ".calibration.json").write_text(
        json.dumps(full, indent=2) + "\n", encoding="utf-8"
    )
    logger.info("quantised %s for %s in %.0f s", fp32_onnx, backend, full["seconds"])
    return out


def _quantize_openvino(
    fp32_onnx: Path, out: Path, feeds: list[dict[str, np.ndarray]], classifier: list[str]
) -> None:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    model = ov.Core().read_model(str(fp32_onnx))
    names = {op.get_friendly_name() for op in model.get_ops()}
    # OpenVINO keeps ONNX node names; the head's names are matched by pattern in case they differ
    ignored = nncf.IgnoredScope(
        names=[n for n in classifier if n in names], patterns=[".*classifier.*"], validate=False
    )
    quantized = nncf.quantize(
        model,
        nncf.Dataset(feeds),
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(feeds),
        ignored_scope=ignored,
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
    )
    ov.save_model(quantized, str(out))


def _quantize_onnx_static(
    fp32_onnx: Path, out: Path, feeds: list[dict[str, np.ndarray]], exclude: list[str]
) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(
        str(fp32_onnx),
        str(out),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        op_types_to_quantize=["MatMul", "Gemm"],
    )


def open_runner(backend: str, path: Path, threads: int) -> tuple[Runner, tuple[str, ...]]:
    """A thread-safe callable ``feed -> logits`` running ``path`` on CPU with ``threads`` threads, and the
    input names it takes."""
    if backend.startswith("openvino"):
        import openvino as ov

        compiled = ov.Core().compile_model(
            str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        )
        local = threading.local()  # an infer request is not thread-safe: one per calling thread

        def run_ov(feed: dict[str, np.ndarray]) -> np.ndarray:
            request = getattr(local, "request", None)
            if request is None:
                request = local.request = compiled.create_infer_request()
            request.infer(feed)
            return np.array(request.get_output_tensor(0).data, copy=True)

        return run_ov, tuple(i.get_any_name() for i in compiled.inputs)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run_ort(feed: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, feed)[0]

    return run_ort, tuple(i.name for i in session.get_inputs())


def cpu_int8_dot() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX). Without them int8
    matrix products run on AVX2 emulation, which measured slower than fp32 (benchmarks/README.md)."""
    forced = os.environ.get("WINNOW_CPU_INT8", "").strip().lower()
    if forced in {"1", "true", "yes", "on"}:
        return True
    if forced in {"0", "false", "no", "off"}:
        return False
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                return bool(set(line.split(":", 1)[1].split()) & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    return False


def _int8_slow_here(chosen: str, section: dict[str, Any]) -> str | None:
    """Why an int8 backend the check chose on one CPU would be slower than fp32 on this one, or None: the
    check measured its speed-up on a CPU with int8 dot products, and this one has none."""
    if chosen not in INT8_BACKENDS or cpu_int8_dot():
        return None
    isa = ((section.get("cpu") or {}).get("isa")) or {}
    if isa and not (isa.get("vnni") or isa.get("amx")):
        return None  # the check itself ran without int8 dot products: its speed-up holds here
    return "this CPU has no int8 dot-product instructions (VNNI/AMX), where int8 runs slower than fp32"


def quality_check_failed(card: dict[str, Any] | None) -> bool:
    """Whether the card records a quality check that no quantised backend passed (the model must run fp32).
    Otherwise fp32 runs by choice or circumstance (nothing that passed was faster, or the chosen backend
    cannot run on this machine): worth a note, not a warning."""
    section = (card or {}).get(CHECK_SECTION)
    if not isinstance(section, dict) or section.get("default") in QUANTIZED_BACKENDS:
        return False
    candidates = section.get("candidates") or {}
    return not any(isinstance(r, dict) and r.get("passed") for r in candidates.values())


def auto_backend(
    card: dict[str, Any] | None, model_path: str | None, *, native_bf16: bool = False
) -> tuple[str, str | None]:
    """The CPU backend ``backend="auto"`` runs for a model, and why it runs fp32 when its card's quality check
    did not clear an int8 backend or that backend cannot run here (None: nothing to report).

    A model whose card records no check runs fp32 (``torch``) without a note: that is the exact path.
    ``native_bf16``: torch would run bf16 here (a CPU with AVX512-BF16/AMX, dtype "auto"), which beats a
    checked fp32 backend (OpenVINO fp32), so ``torch`` runs then; an int8 choice still stands."""
    section = (card or {}).get(CHECK_SECTION)
    if not isinstance(section, dict):
        return "torch", None
    chosen = section.get("default")
    if chosen not in QUANTIZED_BACKENDS:
        reason = section.get("reason") or "no int8 backend passed the model's quality check"
        return "torch", f"runs fp32: {reason}"
    if native_bf16 and chosen not in INT8_BACKENDS:
        return "torch", None
    slow = _int8_slow_here(chosen, section)
    if slow:
        return "torch", f"runs fp32: its quality check chose {chosen}, but {slow}"
    missing = backend_missing(chosen)
    if missing:
        return "torch", f"runs fp32: its quality check chose {chosen}, but {missing}"
    if model_path is None:
        return "torch", f"runs fp32: its quality check chose {chosen}, but the model is not a local folder"
    path = artifact_path(artifact_dir(model_path), chosen)
    if chosen in INT8_BACKENDS and not path.is_file():  # fp32 backends export on first use
        return "torch", (
            f"runs fp32: its quality check chose {chosen}, but the quantised model {path} is missing; "
            f"rebuild it with `{_CHECK_COMMAND}`"
        )
    return chosen, None
