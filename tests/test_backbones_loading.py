"""What every loader shares (backbones/_loading.py): weights missing offline, a
model folder that does not exist, a quiet weight loading."""

import re

import numpy as np
import pytest

from skltransfer import PretrainedImageFeatures
from skltransfer.backbones import (
    HFImageBackbone,
    HFTextBackbone,
    TimmBackbone,
    TorchvisionBackbone,
    load_text_backbone,
)


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


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("path", ["/no/such/folder", "./no_model_here", "~/none/x/y"])
def test_missing_local_model_folders_are_named(path):
    from skltransfer import PretrainedTextEmbeddings

    with pytest.raises(FileNotFoundError, match="No model folder at"):
        PretrainedTextEmbeddings(path).fit(["a text"])
    with pytest.raises(FileNotFoundError, match="No model folder at"):
        PretrainedImageFeatures(f"hf:{path}").fit(np.zeros((1, 8, 8, 3), np.uint8))


def test_loading_hides_the_weight_loading_bar_and_restores_the_switch(
    tiny_bert_folder, monkeypatch
):
    import transformers
    from transformers.utils import logging as hf_logging

    seen = []
    original = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.append(hf_logging.is_progress_bar_enabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    hf_logging.enable_progress_bar()
    load_text_backbone(tiny_bert_folder)
    assert seen == [False]
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a user's own choice is kept too
    load_text_backbone(tiny_bert_folder)
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
