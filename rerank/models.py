"""Where a reranker model comes from: a short name winnow ships, a local folder or a Hugging Face Hub name."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RERANKER",
    "MODEL_REGISTRY",
    "ModelNotFoundError",
    "is_offline",
    "model_load_error",
    "read_model_json",
    "resolve_model",
    "shipped_models",
]

_PACKAGE_DIR = Path(__file__).resolve().parent

# Short names of the reranker models winnow ships as package data, mapped to their folder (relative paths are
# relative to the ``rerank`` package). Short names are resolved before local folders and hub names.
MODEL_REGISTRY: dict[str, str] = {"winnow-general": "models/winnow-general"}

# The reranker winnow uses when none is named (once it is installed with the package).
DEFAULT_RERANKER = "winnow-general"


class ModelNotFoundError(ValueError):
    """A model name that is neither a registered short name, nor a local folder, nor loadable from the hub."""


def is_offline() -> bool:
    """Whether Hugging Face Hub access is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _registered_path(name: str) -> Path:
    path = Path(MODEL_REGISTRY[name])
    return path if path.is_absolute() else _PACKAGE_DIR / path


def shipped_models() -> list[str]:
    """Short names of the registered models whose folders are installed."""
    return [name for name in MODEL_REGISTRY if (_registered_path(name) / "config.json").is_file()]


def _looks_like_path(name: str) -> bool:
    """A name that can only mean a filesystem path (hub names are ``name`` or ``org/name``)."""
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or name in {".", ".."} or "\\" in name


def resolve_model(name_or_path: str) -> str:
    """Resolve a model to what ``from_pretrained`` should load.

    - a short name in :data:`MODEL_REGISTRY` -> the absolute path of the folder winnow ships;
    - an existing local folder -> its absolute path;
    - anything else -> unchanged, as a Hugging Face Hub name (e.g. ``cross-encoder/ms-marco-MiniLM-L6-v2``).
      Whether the hub is reachable is only known when loading; see :func:`model_load_error`.

    :raises ModelNotFoundError: for a registered model whose folder is missing, or a name that can only be a
        path (absolute, ``./``, ``~``) but is not a folder.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        kind = type(name_or_path).__name__
        raise TypeError(f"model must be a str (short name, folder or hub name), got {kind}")
    name = os.fspath(name_or_path).strip()
    if not name:
        raise ValueError("model must be a non-empty name or path")
    if name in MODEL_REGISTRY:
        path = _registered_path(name)
        if not path.is_dir():
            raise ModelNotFoundError(
                f"winnow model {name!r} is registered at {path} but that folder is missing; reinstall winnow"
            )
        return str(path)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise ModelNotFoundError(f"{name!r} is a file, not a model folder; pass the folder with config.json")
    if _looks_like_path(name):
        raise ModelNotFoundError(f"model folder {name!r} does not exist; check the path")
    return name


def model_load_error(name: str, error: BaseException) -> Exception:
    """The error to raise when ``from_pretrained`` failed on a resolved ``name``.

    A name that is not a local folder failed as a hub name: say so, since that is the usual cause on an
    offline machine. Other failures (a broken local folder) are returned unchanged.
    """
    if Path(name).is_dir():
        return error
    known = ", ".join(sorted(MODEL_REGISTRY)) or "none yet"
    offline = " (HF_HUB_OFFLINE is set)" if is_offline() else ""
    return ModelNotFoundError(
        f"could not load model {name!r}: not a local folder; hub names need network access{offline}. "
        f"Pass a local model folder, a winnow short name (registered: {known}), or download the model on a "
        f"machine with network access. Underlying error: {error}"
    )


def read_model_json(path: str, filename: str) -> Any:
    """A JSON file of a model folder or hub repo (``path`` as :func:`resolve_model` returns it), or None when
    it is absent or unreadable."""
    try:
        if Path(path).is_dir():
            file = Path(path) / filename
            return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
        from transformers.utils import cached_file

        resolved = cached_file(
            path,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        return json.loads(Path(resolved).read_text(encoding="utf-8")) if resolved else None
    except (OSError, ValueError) as err:
        logger.debug("could not read %s of %s: %s", filename, path, err)
        return None
