"""Ordered layer groups (backbones/_groups.py): probed from execution order, or
taken from timm's declared stages."""

import pytest
import torch
from torch import nn

from skltransfer.backbones import TimmBackbone, TorchvisionBackbone, find_layer_groups


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


def test_the_order_is_probed_once_per_architecture_and_input_form():
    import skltransfer

    class Net(nn.Module):
        calls = 0

        def __init__(self, width=8):
            super().__init__()
            self.late = nn.Linear(width, 4)
            self.early = nn.Linear(6, width)

        def forward(self, x):
            type(self).calls += 1
            return self.late(self.early(x))

    skltransfer.clear_process_state()
    first = find_layer_groups(Net(), torch.zeros(2, 6))
    assert [g.name for g in first] == ["early", "late"] and Net.calls == 1
    # Another instance of the same architecture, other weights, other batch
    # size: the remembered order, no forward pass.
    assert find_layer_groups(Net(), torch.ones(5, 6)) == first
    assert Net.calls == 1
    # Another shape of weights, or another form of input: probed again.
    assert find_layer_groups(Net(width=9), torch.zeros(2, 6)) == first
    assert Net.calls == 2
    find_layer_groups(Net(), torch.zeros(2, 6, dtype=torch.float64).float()[:, None])
    assert Net.calls == 3
    skltransfer.clear_process_state()
    find_layer_groups(Net(), torch.zeros(2, 6))
    assert Net.calls == 4


@pytest.mark.parametrize(
    "name, first, last, n",
    [
        ("mobilenet_v3_small", "features.0", "classifier", 14),
        # Ten million weights and more to initialise: slow.
        pytest.param("resnet18", "conv1", "layer4", 5, marks=pytest.mark.slow),
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
