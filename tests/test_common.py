"""scikit-learn's estimator checks over every public estimator.

Each area lists its instances and expected failures (with a reason each) in a
``tests/_common_<area>.py`` module, so the list of checks stays data. Instances
whose checks take long are listed apart (``SLOW_INSTANCES``) and marked slow.
"""

import importlib

import numpy as np
import pytest
from _common_text import API_CHECKS, LABELS, TEXTS
from _common_text import INSTANCES as TEXT_INSTANCES
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

_AREAS = ["_common_image", "_common_text", "_common_finetune"]


def _load_areas():
    instances, slow, expected = [], [], {}
    for area in _AREAS:
        try:
            module = importlib.import_module(area)
        except ModuleNotFoundError as exc:
            if exc.name != area:
                raise
            continue
        instances.extend(module.INSTANCES)
        slow.extend(getattr(module, "SLOW_INSTANCES", []))
        expected.update(module.EXPECTED_FAILURES)
    return instances, slow, expected


INSTANCES, SLOW_INSTANCES, EXPECTED_FAILURES = _load_areas()


def _expected_failed_checks(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


@parametrize_with_checks(INSTANCES, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks(SLOW_INSTANCES, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator_slow(estimator, check):
    check(estimator)


def test_every_public_estimator_is_checked():
    import skltransfer

    checked = {type(e).__name__ for e in INSTANCES + SLOW_INSTANCES}
    functions = {"clear_process_state", "config_context", "get_config", "set_config"}
    missing = [n for n in skltransfer.__all__ if n not in checked | functions]
    assert not missing, f"No common checks for {missing}"


@pytest.mark.parametrize("name", ["skltransfer"])
def test_import_is_light(name):
    """Importing the package loads no heavy backend."""
    import subprocess
    import sys

    code = (
        f"import sys, {name}; heavy = [m for m in ('torch', 'torchvision', "
        "'transformers', 'timm') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- estimators that take strings --------------------------------------------------
# parametrize_with_checks runs only check_estimator_cloneable on them (see
# _common_text): the data-free checks and string-data versions of the data
# checks run here.


@pytest.mark.parametrize("check", API_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("estimator", TEXT_INSTANCES, ids=lambda e: type(e).__name__)
def test_api_checks(estimator, check):
    check(type(estimator).__name__, clone(estimator))


@pytest.mark.filterwarnings("ignore:.*no word in the vocabulary")
@pytest.mark.parametrize("estimator", TEXT_INSTANCES, ids=lambda e: type(e).__name__)
def test_string_data_checks(estimator):
    """String-data versions of scikit-learn's data checks."""
    est = clone(estimator)
    params = est.get_params()
    assert est.fit(TEXTS, LABELS) is est
    assert est.get_params() == params  # fit does not change parameters
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(clone(est)))
    first = est.transform(TEXTS)
    second = clone(estimator).fit(TEXTS).transform(TEXTS)  # fit is idempotent
    np.testing.assert_allclose(first, second, atol=1e-6)
    np.testing.assert_allclose(est.transform(TEXTS[2:4]), first[2:4], atol=1e-6)
    np.testing.assert_allclose(est.fit_transform(TEXTS), first, atol=1e-6)
    assert len(est.get_feature_names_out()) == first.shape[1]
    tags = est.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array
