"""Fixtures for the REST service: a small index built with the tiny bi-encoder, and apps over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from winnow.api.app import create_app
from winnow.api.settings import WinnowSettings, load_settings
from winnow.retrieval.corpus import Passage
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.indexing import build_index

DOCS = [
    Passage(
        id="fin-1",
        title="Northwind 10-K",
        text="net revenue increased to 4.1 billion dollars",
        meta={"year": 2021},
    ),
    Passage(
        id="fin-2",
        title="Contoso 10-K",
        text="operating margin declined on higher costs",
        meta={"year": 2019},
    ),
    Passage(
        id="fact-1", text="Claim: vaccines contain chips. Rating: False", meta={"year": 2021, "kind": "fact"}
    ),
    Passage(id="bio-1", text="protein folding in yeast cells under heat stress", meta={"year": 2015}),
    Passage(id="bio-2", text="gene expression of banana plants in drought", meta={"year": 2020}),
]


@pytest.fixture(scope="session")
def served_index(tmp_path_factory: pytest.TempPathFactory, tiny_bi_encoder_path: str) -> Path:
    """A saved five-document index (copy it before a test writes to it)."""
    path = tmp_path_factory.mktemp("served") / "index"
    build_index(DOCS, Embedder(tiny_bi_encoder_path), show_progress=False).save(path)
    return path


@pytest.fixture()
def index_copy(tmp_path: Path, served_index: Path) -> Path:
    import shutil

    target = tmp_path / "index"
    shutil.copytree(served_index, target)
    return target


@pytest.fixture()
def make_settings(index_copy: Path, tiny_cross_encoder_path: str) -> Callable[..., WinnowSettings]:
    def make(**overrides) -> WinnowSettings:
        values = {
            "index": index_copy,
            "reranker": tiny_cross_encoder_path,
            "device": "cpu",
            "batch_wait_ms": 2.0,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture()
def client(make_settings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as c:
        yield c


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``winnow serve``'s app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: WinnowSettings) -> None:
        import threading

        import uvicorn

        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{settings.port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, served_index: Path, tiny_cross_encoder_path: str
) -> Iterator[LiveServer]:
    """A server with API key ``test-key-0123456789`` over a copy of the five-document index."""
    import shutil

    index = tmp_path_factory.mktemp("live") / "index"
    shutil.copytree(served_index, index)
    settings = load_settings(
        index=index,
        reranker=tiny_cross_encoder_path,
        device="cpu",
        port=free_port(),
        api_keys="test-key-0123456789",
        batch_wait_ms=2.0,
    )
    with LiveServer(settings) as server:
        yield server
