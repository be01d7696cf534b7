"""Naming a sample by its position in X (inputs/_positions.py)."""

import numpy as np
import pytest

from skltransfer.inputs._positions import index_labels, sample_name


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
