from __future__ import annotations

import random

import pytest

from winnow.rerank.windows import PairTemplate, doc_budget, truncate_query, window_spans


def split_windows(doc_ids, budget, stride, max_windows=None):
    """The token windows the engine scores: ``doc_ids`` sliced at :func:`window_spans`."""
    return [
        list(doc_ids[start:end]) for start, end in window_spans(len(doc_ids), budget, stride, max_windows)
    ]


CASES = [
    (length, budget, stride)
    for length in (0, 1, 7, 50, 63, 64, 65, 100, 257, 1000)
    for budget in (1, 8, 64, 100)
    for stride in {1, max(1, budget // 2), max(1, budget - budget // 4), budget}
]


@pytest.mark.parametrize(("length", "budget", "stride"), CASES)
def test_windows_cover_every_token_within_budget_with_promised_overlap(length: int, budget: int, stride: int):
    doc = list(range(1000, 1000 + length))
    windows = split_windows(doc, budget, stride)
    spans = window_spans(length, budget, stride)

    assert all(len(w) <= budget for w in windows)
    assert {t for w in windows for t in w} == set(doc)  # every token covered
    assert [doc[s:e] for s, e in spans] == windows  # windows are contiguous slices
    assert spans[0][0] == 0 and spans[-1][1] == length  # starts at the start, ends at the document end
    if length <= budget:
        assert windows == [doc]
        return
    assert all(len(w) == budget for w in windows)
    overlaps = [prev[1] - nxt[0] for prev, nxt in zip(spans, spans[1:], strict=False)]
    assert all(o == budget - stride for o in overlaps[:-1])
    assert overlaps[-1] >= budget - stride  # the last window is aligned to the end, it may overlap more
    assert overlaps[-1] < budget  # ... but never repeats a window


def test_short_doc_is_one_window_and_input_is_not_mutated():
    doc = [5, 6, 7]
    windows = split_windows(doc, budget=10, stride=5)
    assert windows == [[5, 6, 7]]
    windows[0].append(99)
    assert doc == [5, 6, 7]


def test_random_documents_property():
    rng = random.Random(42)
    for _ in range(300):
        length, budget = rng.randint(0, 400), rng.randint(1, 80)
        stride = rng.randint(1, budget)
        spans = window_spans(length, budget, stride)
        covered = set()
        for start, end in spans:
            assert 0 <= start < end <= length or (length == 0 and (start, end) == (0, 0))
            assert end - start <= budget
            covered.update(range(start, end))
        assert covered == set(range(length))
        assert [s for s, _ in spans] == sorted({s for s, _ in spans})  # strictly increasing starts


@pytest.mark.parametrize("max_windows", [1, 2, 3, 5])
def test_max_windows_spreads_windows_first_to_last(max_windows: int):
    length, budget, stride = 1000, 100, 50
    assert len(window_spans(length, budget, stride)) > max_windows
    spans = window_spans(length, budget, stride, max_windows=max_windows)
    assert len(spans) == max_windows
    assert spans[0] == (0, budget)
    if max_windows > 1:
        assert spans[-1] == (length - budget, length)
    assert all(e - s == budget for s, e in spans)


def test_max_windows_keeps_full_coverage_when_spread_windows_still_touch():
    # 19 windows at stride 50; 10 evenly spread windows step 100 <= budget: still no gap
    spans = window_spans(1000, 100, 50, max_windows=10)
    covered = {t for s, e in spans for t in range(s, e)}
    assert covered == set(range(1000))


def test_max_windows_not_reached_changes_nothing():
    assert window_spans(300, 100, 50, max_windows=16) == window_spans(300, 100, 50)


@pytest.mark.parametrize(
    ("budget", "stride", "max_windows"),
    [(0, 1, None), (-3, 1, None), (10, 0, None), (10, 11, None), (10, 5, 0)],
)
def test_invalid_arguments_raise(budget: int, stride: int, max_windows: int | None):
    with pytest.raises(ValueError):
        split_windows([1, 2, 3], budget, stride, max_windows)


def test_truncate_query_keeps_at_most_half_the_room():
    assert truncate_query(list(range(100)), max_length=23, num_special=3) == list(range(10))
    assert truncate_query([1, 2], max_length=512, num_special=3) == [1, 2]
    with pytest.raises(ValueError, match="max_length"):
        truncate_query([1], max_length=4, num_special=3)


def test_doc_budget():
    assert doc_budget(query_len=10, max_length=512, num_special=3) == 499
    with pytest.raises(ValueError, match="no room"):
        doc_budget(query_len=509, max_length=512, num_special=3)


def test_pair_template_builds_bert_and_roberta_layouts():
    bert = PairTemplate(prefix=(101,), middle=(102,), suffix=(102,), suffix_types=(1,), b_type=1)
    assert bert.num_special == 3
    ids, types = bert.build([7, 8], [9])
    assert ids == [101, 7, 8, 102, 9, 102]
    assert types == [0, 0, 0, 0, 1, 1]

    roberta = PairTemplate(prefix=(0,), middle=(2, 2), suffix=(2,))
    ids, types = roberta.build([7], [9, 10])
    assert ids == [0, 7, 2, 2, 9, 10, 2]
    assert types == [0] * 7
