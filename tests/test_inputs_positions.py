"""Naming a sample by its position in X (inputs/_positions.py)."""

import numpy as np
import pytest

from skltransfer.inputs._positions import (
    index_labels,
    sample_name,
    unreadable_summary,
)


def test_index_labels_only_where_they_are_not_positions():
    pd = pytest.importorskip("pandas")
    assert index_labels(pd.Series(["a.png", "b.png"])) is None
    assert index_labels(["a.png", "b.png"]) is None
    np.testing.assert_array_equal(index_labels(pd.Series([1, 2], index=[5, 6])), [5, 6])
    np.testing.assert_array_equal(
        index_labels(pd.DataFrame({"path": [1, 2]}, index=["x", "y"])), ["x", "y"]
    )


def test_sample_names_say_position_and_label():
    assert sample_name(3) == "Sample 3"
    labels = np.array([10, 11, 12])
    assert sample_name(2, labels) == "Sample at position 2 (index label 12)"


def test_the_summary_counts_every_image_and_lists_the_first_five():
    reasons = {p: f"reason {p}" for p in (40, 3, 7, 12, 9, 30, 21)}
    message = unreadable_summary(reasons, 50)
    assert message.startswith("7 of 50 images could not be read; their rows are NaN")
    assert "Sample 3: reason 3; Sample 7: reason 7" in message
    assert "Sample 21: reason 21; and 2 more." in message
    assert "reason 30" not in message
    labelled = unreadable_summary({1: "empty"}, 2, np.array(["a", "b"]))
    assert labelled.endswith("Sample at position 1 (index label 'b'): empty.")
