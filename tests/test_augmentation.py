import pytest
import torch
from _common_finetune import IMAGE, SCRATCH, SENTIMENT_LABELS, SENTIMENT_TEXTS, mlp
from torchvision.transforms import v2

from skltransfer import FineTuneClassifier
from skltransfer.augmentation import (
    GaussianNoise,
    PerSample,
    image_preset,
    make_augmentation,
)


@pytest.mark.parametrize("name", ["light", "strong"])
def test_image_presets_keep_shape_and_range(name):
    batch = torch.rand(6, 3, 24, 24)
    out = make_augmentation(name, kind="image", image_size=24)(batch)
    assert out.shape == batch.shape
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, batch)


def test_presets_draw_parameters_per_image():
    batch = torch.rand(1, 3, 16, 16).expand(8, 3, 16, 16)
    out = image_preset("strong", 16)(batch)
    assert len({tuple(x.flatten()[:20].tolist()) for x in out}) > 1


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown augmentation 'medium'"):
        make_augmentation("medium", kind="image", image_size=8)


def test_image_preset_on_tensor_input_is_refused():
    with pytest.raises(ValueError, match="image preset"):
        make_augmentation("light", kind="tensor")


def test_noise_on_text_is_refused():
    with pytest.raises(ValueError, match="text"):
        make_augmentation("noise", kind="text")


def test_bad_type():
    with pytest.raises(TypeError, match="augmentation must be"):
        make_augmentation(3, kind="tensor")


def test_relative_noise_follows_feature_scale():
    X = torch.stack([torch.zeros(500), torch.linspace(-100, 100, 500)], dim=1)
    noise = make_augmentation(GaussianNoise(std=0.1), kind="tensor", X=X)
    delta = noise(X) - X
    assert delta[:, 0].abs().max() == 0  # a constant feature gets no noise
    assert 3 < float(delta[:, 1].std()) < 9  # about 0.1 x std of 57.8


def test_absolute_noise_and_image_clipping():
    noise = make_augmentation(GaussianNoise(std=1.0, relative=False), kind="tensor")
    assert float(noise(torch.zeros(1000, 1)).std()) == pytest.approx(1.0, abs=0.15)
    images = make_augmentation("noise", kind="image", image_size=8)
    out = images(torch.full((4, 3, 8, 8), 0.5))
    assert out.min() >= 0 and out.max() <= 1


def test_negative_std():
    with pytest.raises(ValueError, match="std must be >= 0"):
        GaussianNoise(std=-1.0)


def test_callables_pass_through_and_per_sample():
    def double(x):
        return x * 2

    assert make_augmentation(double, kind="tensor") is double
    flip = PerSample(v2.RandomHorizontalFlip(p=1.0))
    batch = torch.rand(2, 3, 4, 4)
    assert torch.equal(flip(batch), batch.flip(-1))
    assert "RandomHorizontalFlip" in repr(flip)


# -- augmentation in fine-tuning ---------------------------------------------------


class _Recorder:
    def __init__(self, seen):
        self.seen = seen

    def __call__(self, batch):
        assert batch.min() >= 0 and batch.max() <= 1  # before normalisation
        self.seen.append(len(batch))
        return batch


@pytest.mark.usefixtures("one_thread")
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


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("augmentation", ["light", "strong", "noise"])
def test_image_augmentations_train(small_digits, augmentation):
    X, y = small_digits
    clf = FineTuneClassifier(**{**IMAGE, "max_epochs": 1}, augmentation=augmentation)
    assert clf.fit(X[:40], y[:40]).predict(X[:3]).shape == (3,)


@pytest.mark.usefixtures("one_thread")
def test_noise_augmentation_on_tabular_input(small_digits):
    X, y = small_digits
    clf = FineTuneClassifier(mlp(), **SCRATCH, augmentation="noise")
    assert clf.fit(X[:100], y[:100]).score(X[:100], y[:100]) > 0.5


@pytest.mark.usefixtures("one_thread")
def test_text_augmentation_callable_gets_strings():
    seen = []

    def upper(texts):
        seen.extend(texts)
        return [t.upper() for t in texts]

    FineTuneClassifier("test_tiny_bert", augmentation=upper, max_epochs=1).fit(
        SENTIMENT_TEXTS, SENTIMENT_LABELS
    )
    assert len(seen) == len(SENTIMENT_TEXTS) and all(isinstance(t, str) for t in seen)


@pytest.mark.usefixtures("one_thread")
def test_unknown_augmentation(small_digits):
    X, y = small_digits
    with pytest.raises(ValueError, match="Unknown augmentation 'blur'"):
        FineTuneClassifier(**IMAGE, augmentation="blur").fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="image preset"):
        FineTuneClassifier(mlp(), augmentation="light").fit(X[:20], y[:20])
