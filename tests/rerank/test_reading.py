from __future__ import annotations

import pytest

from winnow.rerank.reading import READ_KINDS, reading_of


def test_one_span_is_whole_or_truncated():
    assert reading_of([(0, 7)], 7).read == "whole"
    cut = reading_of([(0, 5)], 9)
    assert cut.read == "truncated" and cut.tokens == 5 and cut.document_tokens == 9 and not cut.complete
    assert not reading_of([(0, 7)], 7, clipped=True).complete  # cut in characters before tokenising


def test_windows_report_count_best_window_and_gaps():
    covered = reading_of([(0, 4), (3, 7), (6, 10)], 10, best_window=1)
    assert (covered.read, covered.windows, covered.best_window, covered.tokens) == ("windows", 3, 1, 4)
    assert covered.complete
    gaps = reading_of([(0, 4), (8, 12)], 12)
    assert gaps.read == "windows" and not gaps.complete
    assert set(READ_KINDS) == {"whole", "truncated", "windows"}
    with pytest.raises(ValueError):
        reading_of([], 3)
