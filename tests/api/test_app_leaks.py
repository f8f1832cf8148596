"""Issue 22, item 7: nothing leaks (model paths in responses, document ids in the access log, pins)."""

from __future__ import annotations

import logging
import logging.config
import sys
from pathlib import Path

import pytest

from winnow.api.cli import main
from winnow.api.cli.serve import access_log_config
from winnow.api.service import display_name

ROOT = Path(__file__).resolve().parents[2]


def test_ready_and_search_show_model_names_not_paths(client, tiny_cross_encoder_path, tiny_bi_encoder_path):
    ready = client.get("/ready").json()
    assert ready["reranker"] == Path(tiny_cross_encoder_path).name
    assert ready["embedder"] == Path(tiny_bi_encoder_path).name
    search = client.post("/search", json={"query": "revenue", "top_k": 2}).json()
    assert search["reranked"] and search["reranker"] == Path(tiny_cross_encoder_path).name
    for text in (client.get("/ready").text, client.post("/search", json={"query": "revenue"}).text):
        assert str(Path(tiny_cross_encoder_path).parent) not in text
        assert str(Path(tiny_bi_encoder_path).parent) not in text


@pytest.mark.parametrize(
    "name, shown",
    [
        ("winnow-general", "winnow-general"),
        ("cross-encoder/ms-marco-MiniLM-L6-v2", "cross-encoder/ms-marco-MiniLM-L6-v2"),
        ("/srv/build/alice/models/my-ranker", "my-ranker"),
        ("/srv/build/alice/models/my-ranker/", "my-ranker"),
        ("./models/my-ranker", "my-ranker"),
        ("~/models/my-ranker", "my-ranker"),
        ("a/b/c", "c"),
        ("C:\\Users\\alice\\my-ranker", "my-ranker"),
    ],
)
def test_display_name(name, shown):
    assert display_name(name) == shown


@pytest.fixture()
def uvicorn_access_logger():
    """uvicorn's loggers as they were, restored after a test configures them."""
    names = ("uvicorn", "uvicorn.access", "uvicorn.error")
    saved = {
        n: (lg.handlers[:], lg.filters[:], lg.level, lg.propagate)
        for n, lg in ((n, logging.getLogger(n)) for n in names)
    }
    yield logging.getLogger("uvicorn.access")
    for name, (handlers, filters, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.filters[:], lg.level, lg.propagate = handlers, filters, level, propagate


def _log_access(logger: logging.Logger, path: str) -> None:
    # the call uvicorn's protocols make for every response
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "DELETE", path, "1.1", 200)


@pytest.mark.parametrize("keep_ids", [False, True])
def test_access_log_drops_document_ids(uvicorn_access_logger, capsys, keep_ids):
    logging.config.dictConfig(access_log_config(log_document_ids=keep_ids))
    _log_access(uvicorn_access_logger, "/documents/alice@example.com")
    _log_access(uvicorn_access_logger, "/documents/folder/doc%201?x=1")
    _log_access(uvicorn_access_logger, "/search")
    out = capsys.readouterr().out
    assert "/search" in out
    if keep_ids:
        assert "alice@example.com" in out and "doc%201" in out
    else:
        assert "alice" not in out and "doc%201" not in out, out
        assert out.count("DELETE /documents/{doc_id}") == 2, out


def test_serve_drops_document_ids_by_default(tmp_path, monkeypatch):
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.delenv("WINNOW_LOG_DOCUMENT_IDS", raising=False)
    assert main(["serve", "--index", str(tmp_path / "idx")]) == 0
    access = calls[-1]["log_config"]["loggers"]["uvicorn.access"]
    assert access.get("filters") == ["winnow_drop_document_ids"]
    monkeypatch.setenv("WINNOW_LOG_DOCUMENT_IDS", "true")
    assert main(["serve", "--index", str(tmp_path / "idx")]) == 0
    assert not calls[-1]["log_config"]["loggers"]["uvicorn.access"].get("filters")


def test_unhandled_error_log_has_the_route_template_not_the_id(client, monkeypatch, caplog):
    service = client.app.state.service

    def broken(doc_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "get", broken)
    with caplog.at_level(logging.ERROR):
        assert client.get("/documents/alice@example.com").status_code == 500
    assert "/documents/{doc_id:path}" in caplog.text
    assert "alice@example.com" not in caplog.text


def test_pyproject_requires_fixed_torch_and_h11():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["serve"]
    assert "torch>=2.6" in project["dependencies"]
    assert "h11>=0.16" in requirements
