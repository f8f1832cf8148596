"""winnow installs under one name: the wheel holds only ``winnow``, and the four rooms import as ``winnow.*``
from anywhere, never as generic top-level ``api``/``rerank``/``retrieval``/``indexes`` modules."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("api", "rerank", "retrieval", "indexes")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_wheel_top_level_names_are_only_winnow(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=ROOT,
        check=True,
        env=_clean_env(),
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("winnow_rerank-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"winnow"}
    for room in ROOMS:
        assert any(name.startswith(f"winnow/{room}/") for name in names), room
    assert "winnow/rerank/training/finetune.py" in names and "winnow/rerank/evaluation/report.py" in names
    assert any(n.startswith("winnow/retrieval/sample_data/") for n in names)  # the quickstart's corpus
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(wheel) as archive:
        assert "winnow = winnow.api.cli:main" in archive.read(entry_points).decode()
        requires = [
            line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")
        ]
    # an extra that names plain "winnow" would install the unrelated PyPI project of that name
    assert not [
        r for r in requires if r.split(":", 1)[1].strip().startswith(("winnow[", "winnow ", "winnow;"))
    ]
    assert any("winnow-rerank[" in r for r in requires)


def test_installed_package_imports_as_winnow_and_never_as_generic_names(tmp_path):
    script = (
        "import importlib, json\n"
        "import winnow.api, winnow.rerank, winnow.retrieval, winnow.indexes\n"
        "found = []\n"
        f"for name in {ROOMS!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        found.append(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "print(json.dumps(found))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def _python_files() -> list[Path]:
    folders = [*ROOMS, "tests", "benchmarks"]
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py") if "models" not in p.parts]


def test_no_module_imports_a_room_by_its_generic_name():
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in ROOMS
            ]
    assert not offenders, f"import these as winnow.<room>: {offenders}"
