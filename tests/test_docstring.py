"""Shared parameter texts filled into docstrings (_docstring.py)."""

import re

import pytest

from skltransfer import FineTuneClassifier, PretrainedTextEmbeddings
from skltransfer._docstring import _SHARED, fill_doc


def test_fill_doc_fills_the_class_and_its_methods():
    @fill_doc
    class Documented:
        """Parameters
        ----------
        {verbose}
        Literal {{braces}}.
        """

        def fit(self):
            """{cache}"""

    assert _SHARED["verbose"] in Documented.__doc__
    assert "Literal {braces}." in Documented.__doc__
    assert Documented.fit.__doc__ == _SHARED["cache"]


def test_an_unknown_placeholder_fails_at_import_time():
    def documented():
        """{no_such_text}"""

    with pytest.raises(KeyError, match="no_such_text"):
        fill_doc(documented)


@pytest.mark.parametrize("estimator", [FineTuneClassifier, PretrainedTextEmbeddings])
def test_public_docstrings_have_no_placeholder_left(estimator):
    assert 'verbose : "auto", int or bool, default="auto"' in estimator.__doc__
    assert not re.search(r"\{[a-z_]+\}", estimator.__doc__)
