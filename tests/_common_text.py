"""Text estimators for the common checks, with tiny offline models.

Both estimators take a sequence of strings and say so in their tags
(``input_tags.string = True``, ``two_d_array = False``). For such estimators
scikit-learn's ``parametrize_with_checks`` runs only ``check_estimator_cloneable``
and skips the rest, whose data are numeric 2-D arrays; so there are no expected
failures to list. ``tests/test_common.py`` runs the data-free API checks
(:data:`API_CHECKS`) and string-data versions of the others on
:data:`INSTANCES`.

Also the texts and word vectors several text test files share.
"""

import numpy as np
from sklearn.utils import estimator_checks as ec

from skltransfer import PretrainedTextEmbeddings, PretrainedWordVectors
from skltransfer.features.word_vectors import WordVectors

TINY_WORDS = ["good", "bad", "great", "awful", "film", "movie", "cat", "dog", "!"]


def tiny_word_vectors(dim: int = 6) -> WordVectors:
    rng = np.random.default_rng(0)
    return WordVectors(
        rng.normal(size=(len(TINY_WORDS), dim)).astype(np.float32), TINY_WORDS
    )


INSTANCES = [
    PretrainedTextEmbeddings("test_tiny_bert"),
    PretrainedWordVectors(tiny_word_vectors()),
]

EXPECTED_FAILURES: dict[str, dict[str, str]] = {
    "PretrainedTextEmbeddings": {},
    "PretrainedWordVectors": {},
}

# scikit-learn checks that use no data: they apply to string-input estimators.
API_CHECKS = [
    ec.check_estimator_cloneable,
    ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
    ec.check_estimator_repr,
    ec.check_no_attributes_set_in_init,
    ec.check_do_not_raise_errors_in_init_or_set_params,
    ec.check_mixin_order,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
]

# Texts for the tiny BERT, an empty one among them.
TEXTS = [
    "a good film",
    "an awful movie, really bad",
    "",
    "the cat and the dog are happy",
    "great",
    "this film is not good and not great but it is a film",
]
LABELS = np.array([1, 0, 0, 1, 1, 0])

# A vocabulary as vector files hold it: a contraction, punctuation, a
# multi-word entry and an accented word.
WORDS = ["good", "bad", "film", "movie", "do", "n't", "!", "new york", "café"]
MATRIX = np.random.default_rng(0).normal(size=(len(WORDS), 4)).astype(np.float32)
