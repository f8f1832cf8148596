"""Filter size limits checked in time bounded by the limits, and matching errors raised as ValueErrors."""

from __future__ import annotations

import time

import pytest
from haystack.errors import FilterError

from winnow.retrieval.corpus import Passage
from winnow.retrieval.embedder import Embedder
from winnow.retrieval.indexing import build_index
from winnow.retrieval.metadata_filter import (
    FilterLimitError,
    FilterMatchError,
    check_filter_limits,
    matching_document_ids,
)

COND = {"field": "meta.year", "operator": "==", "value": 2020}


def test_limits_are_checked_without_walking_the_whole_filter():
    huge = {"field": "meta.year", "operator": "in", "value": list(range(2_000_000))}
    wide = {"operator": "OR", "conditions": [COND] * 2_000_000}
    for filters, what in ((huge, "values"), (wide, "nodes")):
        start = time.perf_counter()
        with pytest.raises(FilterLimitError) as err:
            check_filter_limits(filters, max_nodes=256, max_values=1024)
        assert time.perf_counter() - start < 0.05
        assert err.value.what == what and str(err.value.limit) in str(err.value)
    check_filter_limits({"operator": "AND", "conditions": [COND] * 255}, max_nodes=256, max_values=1)
    with pytest.raises(FilterLimitError, match="field"):
        check_filter_limits({**COND, "field": "meta." + "a." * 200}, max_nodes=256, max_values=1024)
    assert issubclass(FilterLimitError, FilterError)


@pytest.fixture(scope="module")
def index(tiny_bi_encoder_path):
    docs = [
        Passage(id="a", text="alpha", meta={"year": 2020, "tags": ["x"], "when": "2024-05-01"}),
        Passage(id="b", text="beta", meta={"year": 2018, "when": "2020-01-01"}),
    ]
    return build_index(docs, Embedder(tiny_bi_encoder_path, show_progress=False), show_progress=False)


def test_matching_errors_are_value_errors(index):
    with pytest.raises(FilterMatchError, match="'a'") as err:
        matching_document_ids(index, {"field": "meta.tags", "operator": ">", "value": 1})
    assert isinstance(err.value, ValueError)
    with pytest.raises(FilterError, match="dates"):
        matching_document_ids(index, {"field": "meta.when", "operator": ">", "value": "x" * 10_000})
    after = {"field": "meta.when", "operator": ">", "value": "2023-01-01"}
    assert matching_document_ids(index, after) == ["a"]  # a date string is parsed once, compared as a date
    assert matching_document_ids(index, {**after, "value": "March 3 2019"}) == ["a", "b"]
