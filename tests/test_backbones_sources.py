"""One spec per source (backbones/_sources.py): torchvision, timm, Hugging Face
image models and a user's module."""

import pytest
import torch
from torch import nn

from skltransfer.backbones import (
    HFImageBackbone,
    ModuleBackbone,
    TimmBackbone,
    TorchvisionBackbone,
    load_backbone,
)


def test_torchvision_weights_are_validated():
    with pytest.raises(ValueError, match="Unknown weights 'NOPE'"):
        TorchvisionBackbone("resnet18", weights="NOPE").load()
    with pytest.raises(ValueError, match="Did you mean: resnet18"):
        TorchvisionBackbone("resnet181", weights=None).load()


def test_torchvision_default_weights_name_their_preprocessing():
    """The weights enum carries preprocessing and classes without downloading."""
    from torchvision.models import ResNet18_Weights

    spec = TorchvisionBackbone("resnet18", weights="DEFAULT")
    assert spec._weights() is ResNet18_Weights.DEFAULT


def test_timm_source_with_random_weights():
    bb = TimmBackbone("test_efficientnet", pretrained=False).load()
    assert bb.layer_names()[0] == "conv_stem"
    assert bb.preprocessing.crop_size == 160
    assert bb.forward_features(bb.example_input(1)).ndim == 2
    with pytest.raises(ValueError, match="Unknown timm model"):
        TimmBackbone("resnet_nonexistent", pretrained=False).load()


def test_timm_distilled_heads_that_read_the_pooled_features_are_averaged():
    """LeViT scores the pooled features with a class and a distillation head:
    the backbone's head reproduces timm's logits exactly."""
    import timm

    from skltransfer.backbones._loading import seeded

    with seeded():
        reference = timm.create_model("levit_128s", pretrained=False).eval()
    bb = TimmBackbone("levit_128s", pretrained=False).load()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = bb.forward_features(x)
        assert features.shape == (2, 384)
        torch.testing.assert_close(bb(x), reference(x), rtol=1e-4, atol=1e-5)


def test_timm_distilled_heads_that_read_other_tokens_are_not_reused():
    """DeiT's distillation head reads its own token: no head over the pooled
    features reproduces the model, so none is offered, and fine-tuning works."""
    from skltransfer import FineTuneClassifier, PretrainedImageClassifier

    kwargs = (("img_size", 32), ("patch_size", 8), ("depth", 1))
    spec = TimmBackbone("deit_tiny_distilled_patch16_224", False, kwargs)
    bb = spec.load()
    assert bb.head is None and bb.preprocessing.crop_size == 32
    # timm's own features: the mean of the class and distillation tokens.
    assert bb.forward_features(bb.example_input(2)).shape == (2, 192)
    X = torch.rand(8, 32, 32, 3).numpy()
    y = [0, 1] * 4
    with pytest.raises(ValueError, match="no named pretrained head"):
        PretrainedImageClassifier(backbone=spec).fit(X)
    clf = FineTuneClassifier(backbone=spec, max_epochs=1, verbose=0).fit(X, y)
    assert clf.predict(X).shape == (8,)


def test_timm_local_folder_loads_offline(offline, tmp_path):
    import timm
    from timm.models._hub import save_for_hf

    model = timm.create_model("test_efficientnet", pretrained=False)
    save_for_hf(model, str(tmp_path / "saved"), safe_serialization=True)
    bb = load_backbone(f"timm:local-dir:{tmp_path / 'saved'}")
    assert torch.equal(bb.body.conv_stem.weight, model.conv_stem.weight)
    assert bb.preprocessing.crop_size == 160


def test_hf_local_folder_with_classification_head(tiny_hf_vit):
    bb = load_backbone(tiny_hf_vit)
    assert bb.class_names == ["ant", "bee", "cat"]
    assert bb.preprocessing.crop_size == 32
    x = bb.example_input(2)
    assert bb(x).shape == (2, 3)
    assert bb.forward_features(x).shape == (2, 16)
    assert len(bb.layer_names()) == 3  # patch embeddings + two encoder blocks
    assert bb.layer_names()[-1].endswith(".1")


def test_hf_encoder_without_head_pools_the_cls_token(tiny_hf_vit, tmp_path):
    from transformers import ViTImageProcessor, ViTModel

    model = ViTModel.from_pretrained(tiny_hf_vit)
    model.save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    bb = HFImageBackbone(str(tmp_path)).load()
    x = bb.example_input(2)
    with torch.no_grad():
        expected = model(pixel_values=x).last_hidden_state[:, 0]
        assert torch.allclose(bb.forward_features(x), expected, atol=1e-6)
    assert bb.head is None
    # the untrained dense+tanh pooler gets no gradient, so it is no layer group
    assert not any("pooler" in n for n in bb.layer_names())


def test_module_backbone_copies_the_users_module():
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    bb = ModuleBackbone(module, head="2").load()
    assert isinstance(module[2], nn.Linear)  # the user's object is untouched
    assert bb.head.out_features == 3
    assert bb.forward_features(torch.zeros(5, 4)).shape == (5, 8)
    assert [g.name for g in bb.layer_groups(torch.zeros(2, 4))] == ["0"]


def test_module_backbone_explicit_layer_groups():
    module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
    bb = ModuleBackbone(module, layer_groups=("2", "0")).load()
    assert bb.layer_names() == ["2", "0"]
