"""Layer pruning guided by neuron similarity (thesis §5.1; docs/methods.md §Neuron similarity):
the cut at the curve's peak, pooled features, a seeded linear head, the parameter count."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from xaibench.datasets.base import Batch
from xaibench.errors import ConfigError
from xaibench.models.adapter import ModelAdapter
from xaibench.probes.layer_pruning import head_accuracy, parameter_count, peak_layer, pooled_features, train_head


def net() -> ModelAdapter:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(6, 3)).eval()
    return ModelAdapter.wrap(module, input_size=8)


def test_peak_layer_is_the_highest_class_mean_of_the_chosen_curve():
    curves = pd.DataFrame([
        dict(average=a, method=m, order=o, layer=f"l{o}", stage="", scope=s, mean=v, **{"class": -1})
        for a, m, s, values in [("simple", 1, "mean", [0.1, 0.4, 0.3, 0.4]), ("simple", 2, "mean", [0.5, 0.1, 0.2, 0.3]),
                                ("simple", 1, "class", [0.9, 0.0, 0.0, 0.0])]
        for o, v in enumerate(values)])
    assert peak_layer(curves.sample(frac=1, random_state=0)) == "l1"  # tie with l3: the earliest
    assert peak_layer(curves, "simple", 2) == "l0"
    with pytest.raises(ConfigError, match="no similarity curve"):
        peak_layer(curves, "data-max", 1)


def test_pooled_features_are_the_spatial_means_and_leave_the_model_alone():
    model = net()
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    data = [Batch(x[s:s + 3], torch.arange(s, min(s + 3, 5)) % 3, ["a"] * 3, torch.arange(3), [None] * 3, None,
                  [None] * 3) for s in (0, 3)]
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    feats, labels = pooled_features(model, data, ["1", "4"])
    with torch.no_grad():
        a1 = torch.relu(model.module[0](model.normalize(x)))
    torch.testing.assert_close(feats["1"], a1.mean((2, 3)))
    assert feats["4"].shape == (5, 6) and labels.tolist() == [0, 1, 2, 0, 1]
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())
    assert all(not m._forward_hooks for m in model.module.modules())


def test_the_head_is_seeded_and_learns_a_separable_problem():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 3
    centres = torch.tensor([[5.0, 0, 0, 100], [0, 5.0, 0, 100], [0, 0, 5.0, 100]])  # an offset the standardization removes
    feats = centres[labels] + 0.5 * torch.randn(300, 4, generator=gen)
    a = train_head(feats, labels, 3, epochs=5, seed=1)
    b = train_head(feats, labels, 3, epochs=5, seed=1)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(train_head(feats, labels, 3, epochs=5, seed=2).weight, a.weight)
    assert head_accuracy(a, feats, labels) == 1.0
    assert head_accuracy(a, feats, (labels + 1) % 3) == 0.0


def test_parameter_count_of_the_cut_network():
    model = net()
    head = nn.Linear(4, 10)
    assert parameter_count(model, "1", head) == (4 * 3 * 9 + 4) + (4 * 10 + 10)
    assert parameter_count(model, "4", nn.Linear(6, 10)) == (4 * 27 + 4) + (6 * 4 * 9 + 6) + (6 * 10 + 10)
