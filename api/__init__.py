"""winnow: api. The REST service (``create_app``) and the ``winnow`` command line."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("winnow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.0.0"
