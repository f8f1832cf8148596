"""Execute the notebooks end to end so they cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATASETS_DIR

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 600


@pytest.mark.integration
def test_quickstart_eval_notebook_runs(tiny_cross_encoder_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell of notebooks/quickstart_eval.ipynb runs without error (tiny reranker, SciFact slice)."""
    if not (DATASETS_DIR / "scifact" / "corpus.jsonl").is_file():
        pytest.skip(f"dataset 'scifact' not found at {DATASETS_DIR / 'scifact'}")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e .[dev])")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e .[dev])")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e .[dev])")

    # The kernel inherits this process's environment: the tiny reranker keeps the run short and independent
    # of whether a trained reranker ships; the datasets folder is passed explicitly.
    monkeypatch.setenv("WINNOW_RERANKER", tiny_cross_encoder_path)
    monkeypatch.setenv("WINNOW_DATASETS", str(DATASETS_DIR))
    notebook = nbformat.read(NOTEBOOKS_DIR / "quickstart_eval.ipynb", as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the notebook with outputs cleared"
    )
    # "python3" is launched with this interpreter (jupyter_client swaps a bare "python" for sys.executable).
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()  # raises CellExecutionError (with the traceback) when a cell fails

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "from the WINNOW_RERANKER environment variable" in text
    assert "nDCG@10: first stage" in text
    assert any("image/png" in out.get("data", {}) for out in outputs), "the evaluation plot was not shown"
