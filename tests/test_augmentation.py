import pytest
import torch
from torchvision.transforms import v2

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
