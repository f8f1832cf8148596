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


@pytest.mark.integration
def test_rag_10k_notebook_runs(tiny_cross_encoder_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell of notebooks/rag_10k.ipynb runs: hybrid retrieval -> WinnowRanker -> ChatPromptBuilder
    over 20 FinanceBench pages (tiny reranker for speed; the notebook defaults to winnow-general)."""
    if not (DATASETS_DIR / "financebench" / "corpus.jsonl").is_file():
        pytest.skip(f"dataset 'financebench' not found at {DATASETS_DIR / 'financebench'}")
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e .[dev])")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e .[dev])")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed (pip install -e .[dev])")

    monkeypatch.setenv("WINNOW_RERANKER", tiny_cross_encoder_path)
    monkeypatch.setenv("WINNOW_DATASETS", str(DATASETS_DIR))
    monkeypatch.setenv("HAYSTACK_TELEMETRY_ENABLED", "False")
    notebook = nbformat.read(NOTEBOOKS_DIR / "rag_10k.ipynb", as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the notebook with outputs cleared"
    )
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    shown = "".join(out.get("data", {}).get("text/markdown", "") for out in outputs)
    assert "20 pages of 3M_2018_10K" in text and "(from WINNOW_RERANKER)" in text
    assert "----- system -----" in text and "----- user -----" in text, text
    assert "Question: What is the FY2018" in text
    assert "[3M_2018_10K_p" in text  # the sources' ids head their text in the prompt
    assert "dense rank" in shown and "BM25 rank" in shown and "windows" in shown  # ranks and readings shown
    assert "loaded back:" in text
