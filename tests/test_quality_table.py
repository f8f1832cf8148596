"""benchmarks/quality/quality_table.py: README.md's quality table is the one the committed reports give."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "quality" / "quality_table.py"
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ROOT.parent / "shared" / "datasets"

pytestmark = [
    pytest.mark.skipif(not RESULTS.is_dir(), reason="benchmarks/results is absent"),
    pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} is absent (split sizes come from it)"),
]


@pytest.fixture(scope="module")
def quality_table() -> ModuleType:
    """The script, imported from its path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("quality_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_current(quality_table: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """The --check logic: README.md between the markers equals the generated table."""
    assert quality_table.main(["--check"]) == 0, capsys.readouterr().err


def test_a_row_per_shared_set(quality_table: ModuleType) -> None:
    """The mapping names every shared set, and the table has exactly one row for each."""
    shared = {path.name for path in DATASETS.iterdir() if (path / "qrels").is_dir()}
    assert set(quality_table.SOURCES) == shared
    rows = [line for line in quality_table.table().splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == list(quality_table.SOURCES)


def test_check_fails_on_a_stale_table(quality_table: ModuleType) -> None:
    """A README whose table differs is caught."""
    text = (ROOT / "README.md").read_text()
    stale = quality_table.replace_table(text, "| stale |\n")
    assert quality_table.readme_table(stale) != quality_table.table()
    assert quality_table.readme_table(quality_table.replace_table(text, quality_table.table())) == (
        quality_table.table()
    )
