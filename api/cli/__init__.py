"""The ``winnow`` command line (``winnow --help``); :func:`main` is the console script."""

from winnow.api.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
