"""The backbone registry and the one resolver (backbones/_registry.py): names,
source prefixes, local folders, and what is known before loading."""

import dataclasses
import shutil
from pathlib import Path

import pytest
from _common_text import TEXTS
from torch import nn

from skltransfer import PretrainedTextEmbeddings
from skltransfer.backbones import (
    HFImageBackbone,
    HFTextBackbone,
    ImagePreprocessing,
    ModuleBackbone,
    RegisteredBackbone,
    TimmBackbone,
    TorchvisionBackbone,
    _registry,
    get_spec,
    list_backbones,
    load_backbone,
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


def test_image_backbone_is_refused():
    with pytest.raises(ValueError, match="not a text encoder"):
        PretrainedTextEmbeddings("test_tiny_cnn").fit(TEXTS)


# -- one resolver for image and text backbones -------------------------------------


def _config_only(model_folder, folder: Path) -> Path:
    """``folder`` holding only the config.json of ``model_folder``: no weights
    that resolving could load."""
    folder.mkdir(parents=True)
    shutil.copy(Path(model_folder) / "config.json", folder)
    return folder


@pytest.fixture(scope="module")
def config_folders(tmp_path_factory, tiny_bert_folder, tiny_hf_vit):
    """Folders holding only the config.json of a tiny BERT and of a tiny ViT."""
    root = tmp_path_factory.mktemp("configs")
    return {
        "text": _config_only(tiny_bert_folder, root / "bert"),
        "image": _config_only(tiny_hf_vit, root / "vit"),
    }


def test_registered_names_of_both_kinds_resolve_alike():
    for name, kind in [("test_tiny_cnn", "image"), ("test_tiny_bert", "text")]:
        assert get_spec(name) == RegisteredBackbone(name)
        assert get_spec(name).input_kind == kind
    assert list_backbones("test_*", modality="text") == ["test_tiny_bert"]
    assert "test_tiny_bert" not in list_backbones(modality="image")


def test_text_spec_rules(tiny_bert_folder):
    assert get_spec("all-MiniLM-L6-v2") == RegisteredBackbone("all-MiniLM-L6-v2")
    assert get_spec("test_tiny_bert", modality="text") == RegisteredBackbone(
        "test_tiny_bert"
    )
    assert get_spec("hf:org/model", modality="text") == HFTextBackbone("org/model")
    assert get_spec(
        "org/model", modality="text", trust_remote_code=True
    ) == HFTextBackbone("org/model", trust_remote_code=True)
    assert get_spec(str(tiny_bert_folder), modality="text") == HFTextBackbone(
        str(tiny_bert_folder)
    )
    spec = HFTextBackbone("x")
    assert get_spec(spec, modality="text") is spec
    with pytest.raises(TypeError, match="model must be"):
        get_spec(3, modality="text")


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


def test_cached_hub_id_modality_read_offline(monkeypatch, tmp_path, tiny_bert_folder):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--org--tiny-bert" / "snapshots" / "abc123"
    _config_only(tiny_bert_folder, snapshot)
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


def test_local_folders_of_both_kinds_load_through_the_resolver(
    tiny_bert, tiny_bert_folder, tiny_hf_vit
):
    folder = str(tiny_bert_folder)
    assert isinstance(get_spec(folder), HFTextBackbone)
    assert load_backbone(folder).forward_features(tiny_bert.example_input(2)).shape == (
        2,
        32,
    )
    assert isinstance(get_spec(tiny_hf_vit), HFImageBackbone)
    assert load_backbone(tiny_hf_vit).class_names == ["ant", "bee", "cat"]


# -- what is known before loading --------------------------------------------------


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


def test_a_wrong_declared_input_kind_is_an_error_at_load(monkeypatch):
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))
    register_backbone("text_said_image", pretrained=False)(
        _registry._REGISTRY["test_tiny_bert"].loader
    )
    with pytest.raises(ValueError, match="register it with input_kind='text'"):
        get_spec("text_said_image").load()
