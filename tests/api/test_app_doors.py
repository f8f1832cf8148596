"""Issue 22, item 6: closed doors (no open public server, key length, read-only keys, OPTIONS, metrics)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from winnow.api.app import create_app
from winnow.api.cli import main
from winnow.api.settings import load_settings

FULL = "full-key-0123456789abcdef"
READ = "read-key-0123456789abcdef"


@pytest.fixture()
def uvicorn_calls(monkeypatch) -> list[dict]:
    """uvicorn.run replaced by a recorder: `winnow serve` returns instead of serving."""
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    for var in ("API_KEYS", "READ_ONLY_API_KEYS", "ALLOW_UNAUTHENTICATED", "HOST", "CONFIG"):
        monkeypatch.delenv(f"WINNOW_{var}", raising=False)
    return calls


def test_serve_refuses_a_public_host_without_keys(tmp_path: Path, uvicorn_calls, capsys, monkeypatch):
    import winnow.api.app

    def no_models(*args, **kwargs):
        raise AssertionError("the refusal must come before the app is built")

    with monkeypatch.context() as m:
        m.setattr(winnow.api.app, "create_app", no_models)
        for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
            assert main(["serve", "--host", host, "--index", str(tmp_path / "idx")]) == 2
            err = capsys.readouterr().err
            assert "--allow-unauthenticated" in err and "WINNOW_API_KEYS" in err, err
    assert uvicorn_calls == []


@pytest.mark.parametrize(
    "args, env",
    [
        (["--host", "0.0.0.0", "--allow-unauthenticated"], {}),
        (["--host", "0.0.0.0"], {"WINNOW_ALLOW_UNAUTHENTICATED": "true"}),
        (["--host", "0.0.0.0"], {"WINNOW_API_KEYS": FULL}),
        (["--host", "0.0.0.0"], {"WINNOW_READ_ONLY_API_KEYS": READ}),
        (["--host", "127.0.0.1"], {}),
        (["--host", "127.8.9.10"], {}),
        (["--host", "::1"], {}),
        (["--host", "localhost"], {}),
        ([], {}),
    ],
)
def test_serve_starts_when_closed_or_told_so(tmp_path, uvicorn_calls, monkeypatch, args, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--index", str(tmp_path / "idx"), *args]) == 0
    assert len(uvicorn_calls) == 1


@pytest.mark.parametrize("field", ["api_keys", "read_only_api_keys"])
def test_short_api_keys_are_refused(tmp_path, field):
    with pytest.raises(ValidationError, match="at least 16"):
        load_settings(index=tmp_path / "idx", **{field: "short-key"})
    load_settings(index=tmp_path / "idx", **{field: "x" * 16})


def test_read_only_keys_search_and_rerank_but_do_not_write(make_settings):
    settings = make_settings(api_keys=FULL, read_only_api_keys=READ)
    ro = {"Authorization": f"Bearer {READ}"}
    full = {"Authorization": f"Bearer {FULL}"}
    doc = {"documents": [{"id": "new", "text": "a new document"}]}
    with TestClient(create_app(settings)) as c:
        assert c.post("/search", json={"query": "revenue"}, headers=ro).status_code == 200
        cohere = {"query": "q", "documents": ["a", "b"]}
        assert c.post("/v2/rerank", json=cohere, headers=ro).status_code == 200
        assert c.post("/rerank", json={"query": "q", "texts": ["a"]}, headers=ro).status_code == 200
        assert c.get("/documents/fin-1", headers=ro).status_code == 200
        assert c.get("/ready", headers=ro).status_code == 200
        for response in (c.put("/documents", json=doc, headers=ro), c.delete("/documents/fin-1", headers=ro)):
            assert response.status_code == 403, response.text
            assert response.json()["error_type"] == "forbidden"
            assert "read-only" in response.json()["message"]
        assert c.get("/documents/fin-1", headers=ro).status_code == 200  # the DELETE did nothing
        assert c.put("/documents", json=doc, headers=full).status_code == 200
        assert c.delete("/documents/new", headers=full).status_code == 200
        assert c.put("/documents", json=doc).status_code == 401


def test_options_needs_a_key(make_settings):
    with TestClient(create_app(make_settings(api_keys=FULL))) as c:
        for path in ("/search", "/documents/fin-1", "/ready"):
            r = c.options(path)
            assert r.status_code == 401, (path, r.status_code)


def test_cors_preflight_still_works_when_configured(make_settings):
    settings = make_settings(api_keys=FULL, cors_origins="https://app.example")
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(settings)) as c:
        r = c.options("/search", headers={**preflight, "Access-Control-Request-Headers": "authorization"})
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert c.options("/search").status_code == 401  # not a preflight: no way around the key
        assert c.options("/search", headers={"Origin": "https://app.example"}).status_code == 401
        evil = c.options("/search", headers={**preflight, "Origin": "https://evil.example"})
        assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers


def test_unknown_methods_are_other_in_metrics(client):
    client.get("/health")
    for method in ("FOO", "BAR-1", "PROPFIND"):
        assert client.request(method, "/search").status_code in (401, 405)
    text = client.get("/metrics").text
    assert 'method="other"' in text
    assert "FOO" not in text and "BAR-1" not in text and "PROPFIND" not in text
    assert 'method="GET"' in text
