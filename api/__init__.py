"""winnow.api: the REST service (``create_app``) and the ``winnow`` command line (``winnow.api.cli``)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("winnow-rerank")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.0.0"
