"""``winnow search --reranker --json`` says when the model card keeps the first stage's order."""

from __future__ import annotations

import json

import pytest

from tests.rerank.helpers import model_with_card


@pytest.mark.parametrize("weight, noted", [(0.0, True), (1.0, False)])
def test_cli_search_reports_the_note(weight, noted, tiny_cross_encoder_path, tmp_path, served_index, capsys):
    from winnow.api.cli import main

    model = model_with_card(tiny_cross_encoder_path, tmp_path / "m", {"interpolation": {"weight": weight}})
    code = main(["search", "--index", str(served_index), "--reranker", model, "--json", "apple"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["reranked"] is (not noted)
    assert ("note" in payload) is noted
