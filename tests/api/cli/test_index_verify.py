"""``winnow index --verify INDEX_DIR``: every file hashed on demand, exit 0 when intact, 2 when not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from winnow.api.cli import main
from winnow.indexes import DocumentRecord, WinnowIndex


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    index = WinnowIndex.create(4, embedder="tiny")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    index.add_records([DocumentRecord(f"d{i}", f"text {i}") for i in range(5)], x)
    index.save(tmp_path / "idx")
    return tmp_path / "idx"


def test_verify_passes_on_a_good_index(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "--verify", str(saved)]) == 0
    assert capsys.readouterr().out.startswith("OK: 3 files")
    assert main(["index", "--verify", str(saved), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["index"] == str(saved)
    assert report["files"] == {"documents.sqlite": "ok", "vectors.faiss": "ok", "vectors.state.npz": "ok"}


def test_verify_fails_on_a_corrupted_file(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = saved / "vectors.state.npz"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert main(["index", "--verify", str(saved)]) == 2
    out = capsys.readouterr().out
    assert "vectors.state.npz" in out and "does not match the sha256" in out and "vectors.faiss" not in out
    assert main(["index", "--verify", str(saved), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["files"]["vectors.faiss"] == "ok"
    assert report["files"]["documents.sqlite"] == "ok"
    assert "does not match the sha256" in report["files"]["vectors.state.npz"]


def test_verify_runs_sqlite_integrity_check_on_the_table(
    saved: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (saved / "documents.sqlite").write_bytes(b"garbage, not a database" * 200)
    assert main(["index", "--verify", str(saved), "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert "integrity check" in report["files"]["documents.sqlite"]
    assert report["files"]["vectors.faiss"] == "ok"


def test_verify_names_a_truncated_file(saved: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (saved / "vectors.faiss").write_bytes(b"x")
    assert main(["index", "--verify", str(saved)]) == 2
    assert "vectors.faiss has 1 bytes" in capsys.readouterr().out


def test_verify_of_a_folder_without_index_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["index", "--verify", str(tmp_path)]) == 2
    assert "is not a winnow index" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: --corpus, --out or --store (or --verify INDEX_DIR)"),
        (["--corpus", "c.jsonl"], "required: --out or --store (or --verify INDEX_DIR)"),
        (["--verify", "idx", "--out", "other"], "do not combine it with --corpus/--out"),
    ],
)
def test_index_options_are_checked_by_argparse(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["index", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: winnow index" in err and message in err
