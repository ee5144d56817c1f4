"""Feature purity (docs/methods.md §Feature purity) on hand-built layers with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from xaibench.datasets.base import Batch
from xaibench.errors import ConfigError, LayerError
from xaibench.models.adapter import ModelAdapter
from xaibench.models.builtin.net import SyntheticCNN
from xaibench.models.layers import conv_block_layers, select_layers
from xaibench.probes import PROBES
from xaibench.probes.purity import FeaturePurity, normalize_activations, purity_from_counts
from xaibench.results.probe_figures import plot

C = 4


class OneHotNet(nn.Module):
    """feat = ReLU(conv1x1(x) + bias); logits = W · avgpool(feat)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, head: torch.Tensor):
        super().__init__()
        self.feat = nn.Conv2d(C, C, 1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(C, C, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(weight.view(C, C, 1, 1))
            self.feat.bias.copy_(bias)
            self.fc.weight.copy_(head)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.feat(x))).flatten(1))


def wrap(net: nn.Module) -> ModelAdapter:
    return ModelAdapter.wrap(net, mean=(0.0,) * C, std=(1.0,) * C, input_size=8, channels=C)


def balanced_batches(per_class: int = 3, batch: int = 4):
    """Images whose channel k is 1 for class k (others 0), classes balanced, in batches."""
    labels = torch.arange(C).repeat_interleave(per_class)
    images = torch.zeros(len(labels), C, 8, 8)
    images[torch.arange(len(labels)), labels] = 1.0
    out = []
    for s in range(0, len(labels), batch):
        idx = torch.arange(s, min(s + batch, len(labels)))
        out.append(Batch(images[idx], labels[idx], [str(i) for i in idx.tolist()], idx, [None] * len(idx), None,
                         [None] * len(idx)))
    return out


def test_each_channel_fires_for_its_own_class_gives_purity_one():
    model = wrap(OneHotNet(torch.eye(C), torch.zeros(C), torch.eye(C)))
    out = PROBES.build("feature_purity", layers=["act"])(model, balanced_batches())
    row = out["purity"].iloc[0]
    assert row.purity == pytest.approx(1.0)
    assert (row.channels, row.images, row.tau, row.never_fire) == (C, 12, 0.5, 0)
    assert out["histogram"]["count"].tolist() == [3, 3, 3, 3]
    assert row.entropy_bits == pytest.approx(2.0)  # log2 4 bits


def test_one_channel_firing_for_every_image_gives_purity_zero():
    weight = torch.eye(C)
    weight[0] = 0  # channel 0 = the constant bias 5 for every image, the others copy the input
    head = torch.eye(C)
    head[:, 0] = 1.0  # every logit also reads channel 0, so β_0 > 0 whatever the predicted class
    model = wrap(OneHotNet(weight, torch.tensor([5.0, 0, 0, 0]), head))
    out = FeaturePurity(layers=["act"])(model, balanced_batches())
    row = out["purity"].iloc[0]
    assert row.purity == 0.0 and row.never_fire == C - 1
    assert out["histogram"]["count"].tolist() == [12, 0, 0, 0]


def test_entropy_uses_log2_and_log2_c_as_maximum():
    assert purity_from_counts(np.array([5, 5, 5, 5])) == (pytest.approx(1.0), pytest.approx(2.0))
    purity, h = purity_from_counts(np.array([1, 1, 0, 0]))
    assert (purity, h) == (pytest.approx(0.5), pytest.approx(1.0))
    purity, h = purity_from_counts(np.array([2, 1, 1]))
    assert h == pytest.approx(1.5) and purity == pytest.approx(1.5 / math.log2(3))
    assert purity_from_counts(np.zeros(7)) == (0.0, 0.0)  # no channel ever fires
    assert purity_from_counts(np.array([9])) == (0.0, 0.0)  # H_max = log2 1 = 0


def test_normalization_options():
    m = torch.tensor([[1.0, 3.0, 2.0], [-2.0, -1.0, -4.0], [2.0, 2.0, 2.0]])
    assert torch.allclose(normalize_activations(m, "minmax"),
                          torch.tensor([[0, 1, 0.5], [2 / 3, 1, 0], [0, 0, 0]]))
    assert torch.allclose(normalize_activations(m, "max"), torch.tensor([[1 / 3, 1, 2 / 3], [0, 0, 0], [1, 1, 1]]))
    assert torch.equal(normalize_activations(m, "none"), m)
    with pytest.raises(ConfigError, match="minmax, max, none"):
        normalize_activations(m, "zscore")


def test_normalize_option_changes_which_channels_fire():
    # Class-k image → feature maps 0.6 everywhere plus 1 on channel k; logit_m = Σ_j pool_j + pool_m,
    # so β_j = (1 + δ_jm)/64 and M = (0.6, …, 3.2 at k, …)/64.
    model = wrap(OneHotNet(torch.eye(C), torch.full((C,), 0.6), torch.ones(C, C) + torch.eye(C)))
    data = balanced_batches()

    def counts(normalize, tau):
        probe = FeaturePurity(layers=["act"], normalize=normalize, threshold=tau, sweep=[])
        return probe(model, data)["histogram"]["count"].tolist()

    assert counts("minmax", 0.1) == [3, 3, 3, 3]  # the other channels map to 0
    assert counts("max", 0.1) == [12, 12, 12, 12]  # they map to 0.6/3.2 = 0.1875 > 0.1
    assert counts("max", 0.2) == [3, 3, 3, 3]
    assert counts("none", 0.01) == [3, 3, 3, 3]  # raw: 0.6/64 = 0.0094 < 0.01 < 3.2/64
    assert counts("none", 0.009) == [12, 12, 12, 12]


def test_all_layers_in_one_pass_match_one_layer_at_a_time_and_cost_one_backward_per_batch(tmp_path):
    torch.manual_seed(0)
    model = ModelAdapter.wrap(SyntheticCNN(num_classes=5), input_size=32)  # the built-in residual architecture
    images = torch.rand(4, 3, 32, 32)
    data = [Batch(images[s:s + 2], torch.zeros(2, dtype=torch.long), ["a"] * 2, torch.arange(2), [None] * 2, None,
                  [None] * 2) for s in (0, 2)]
    before = model.counter.snapshot()
    out = FeaturePurity()(model, data)
    cost = model.counter.since(before)
    assert cost["forward_calls"] == 2 and cost["backward_calls"] == 2  # one forward+backward per batch
    table = out["purity"]
    assert list(table.layer) == [b.name for b in conv_block_layers(model)]
    assert list(table.layer) == ["stem.2", "stage1.0", "stage2.0", "stage3.0", "stage4.0"]
    assert list(table.stage) == ["C1", "C2", "C3", "", "C4"]  # stage3 and stage4 share the 2×2 resolution
    for name in ("stem.2", "stage3.0"):
        alone = FeaturePurity(layers=[name])(model, data)
        assert alone["histogram"]["count"].tolist() == out["histogram"].query("layer == @name")["count"].tolist()
    sweep = out["sweep"]
    assert len(sweep) == 9 * len(table) and sorted(sweep.tau.unique()) == pytest.approx([i / 10 for i in range(1, 10)])
    summary = out["summary"].set_index("summary")
    assert summary.loc["last_layer", "purity"] == pytest.approx(table.purity.iloc[-1])
    assert summary.loc["stage_mean", "purity"] == pytest.approx(table[table.stage != ""].purity.mean())
    assert {p.name for p in plot("feature_purity", out, tmp_path)} == {"purity_layers.png", "purity_sweep.png"}


def test_stage_marks_on_vgg_and_bad_layer_names():
    class VGG11Features(nn.Module):  # torchvision's VGG-11 feature stack (names features.N), a small head
        def __init__(self):
            super().__init__()
            self.features = make_layers(cfgs["A"])
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 3))

        def forward(self, x):
            return self.head(self.features(x))

    model = ModelAdapter.wrap(VGG11Features(), input_size=32)
    stages = select_layers(model, "stages")
    assert [b.name for b in stages] == ["features.1", "features.4", "features.9", "features.14", "features.19"]
    assert [b.channels for b in stages] == [64, 128, 256, 512, 512]
    with pytest.raises(LayerError, match="no layer"):
        select_layers(model, ["features.99"])
    with pytest.raises(LayerError, match="feature map"):
        select_layers(model, ["head.1"])  # Flatten: (B,512), no feature map


def test_the_class_m_is_the_prediction_not_the_label():
    # identity head: the prediction of a class-k image is k, and only channel k has a gradient for it,
    # so every image fires its own channel (purity 1). Labels shifted by one class point the gradient
    # at a channel that is 0 for the image: M = 0, nothing fires (purity 0).
    model = wrap(OneHotNet(torch.eye(C), torch.zeros(C), torch.eye(C)))
    wrong = [Batch(b.images, (b.labels + 1) % C, b.ids, b.index, b.boxes, b.masks, b.errors) for b in balanced_batches()]
    out = PROBES.build("feature_purity", layers=["act"], sweep=[])(model, wrong)
    assert out["purity"].purity.tolist() == [pytest.approx(1.0)]
    assert out["histogram"]["count"].tolist() == [3, 3, 3, 3]
    by_label = PROBES.build("feature_purity", layers=["act"], sweep=[], target="label")(model, wrong)
    assert by_label["purity"].purity.tolist() == [0.0] and by_label["histogram"]["count"].tolist() == [0, 0, 0, 0]


def test_convs_measures_every_convolution_of_a_resnet_like_the_paper():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = ModelAdapter.wrap(resnet18(weights=None, num_classes=4), input_size=64)
    convs = select_layers(model, "convs")
    names = [b.name for b in convs]
    blocks = [f"layer{i}.{j}.conv{k}" for i in range(1, 5) for j in range(2) for k in (1, 2)]
    downsample = [f"layer{i}.0.downsample.0" for i in (2, 3, 4)]
    assert names[0] == "conv1" and set(names) == {"conv1", *blocks, *downsample} and len(names) == 20
    assert names.index("layer2.0.downsample.0") == names.index("layer2.0.conv2") + 1  # execution order
    assert [(b.name, b.stage) for b in convs if b.stage] == [
        ("conv1", "C1"), ("layer1.1.conv2", "C2"), ("layer2.1.conv2", "C3"), ("layer3.1.conv2", "C4"),
        ("layer4.1.conv2", "C5")]
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    data = [Batch(images, torch.zeros(4, dtype=torch.long), ["a"] * 4, torch.arange(4), [None] * 4, None, [None] * 4)]
    out = FeaturePurity(layers="convs", sweep=[])(model, data)
    table = out["purity"].set_index("layer")
    assert list(table.index) == names and table.loc["layer1.1.conv1", "channels"] == 64
    alone = FeaturePurity(layers=["layer1.1.conv1", "layer4.1.conv2"], sweep=[])(model, data)["histogram"]
    both = out["histogram"][out["histogram"].layer.isin(["layer1.1.conv1", "layer4.1.conv2"])]
    assert alone["count"].tolist() == both["count"].tolist()
    assert select_layers(model, "blocks") == select_layers(model, "auto")
