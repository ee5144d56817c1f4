"""Neuron similarity (docs/methods.md §Neuron similarity): GBP batching, cosine/dead, class averages, the probe."""

from __future__ import annotations

import pytest
import torch
from captum.attr import NeuronGuidedBackprop
from torch import nn

from xaibench.datasets.base import Batch
from xaibench.errors import ConfigError
from xaibench.models.adapter import ModelAdapter
from xaibench.probes import PROBES
from xaibench.probes.class_average import class_average_images, rescale_like
from xaibench.probes.neuron_similarity import channel_visualizations, cosine_and_dead, guided_gradients
from xaibench.results.probe_figures import plot

N_CLASSES = 3


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, N_CLASSES),
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
    return net.eval()


def wrap(net: nn.Module, size: int = 16) -> ModelAdapter:
    return ModelAdapter.wrap(net.eval(), input_size=size)


def batches(n: int = 12, size: int = 16, batch: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=gen)
    labels = torch.arange(n) % N_CLASSES
    out = []
    for s in range(0, n, batch):
        idx = torch.arange(s, min(n, s + batch))
        out.append(Batch(images[idx], labels[idx], [str(i) for i in idx.tolist()], idx, [None] * len(idx), None,
                         [None] * len(idx)))
    return out, images, labels


def test_cosine_of_identical_vectors_is_one_and_zero_visualization_is_dead():
    a = torch.randn(3, 3, 4, 4)
    cos, dead = cosine_and_dead(a, a)
    assert torch.allclose(cos, torch.ones(3)) and not dead.any()
    cos, dead = cosine_and_dead(a, -2 * a)
    assert torch.allclose(cos, -torch.ones(3))
    vis = a.clone()
    vis[1] = 0
    cos, dead = cosine_and_dead(a, vis)
    assert cos[1] == 0 and dead.tolist() == [False, True, False]


def test_batched_channels_equal_one_channel_at_a_time_and_captum_guided_backprop():
    model = wrap(small_cnn())
    x = model.normalize(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    channels = torch.tensor([3, 0, 7, 1, 1, 5, 2, 6, 4])  # any order, a repeat
    for objective in ("sum", "mean", "max"):
        batched = channel_visualizations(model, x[1:], "4", channels, objective)
        single = torch.cat([channel_visualizations(model, x[1:], "4", channels[i:i + 1], objective)
                            for i in range(len(channels))])
        assert torch.allclose(batched, single, atol=1e-6, rtol=1e-5)
        assert batched.abs().sum() > 0 and not torch.allclose(batched[0], batched[2])
    # oracle: Captum's NeuronGuidedBackprop with the same channel objective (summed over h, w)
    oracle = NeuronGuidedBackprop(model.module, model.module[5])
    ours = channel_visualizations(model, x[:1], "5", torch.arange(8), "sum")
    for k in (0, 3, 7):
        ref = oracle.attribute(x[:1].clone(), neuron_selector=lambda out, k=k: out[:, k].sum((1, 2)))
        assert torch.allclose(ours[k:k + 1], ref, atol=1e-6, rtol=1e-5)
    # the logit objective (method 2's φ) against Captum's GuidedBackprop
    from captum.attr import GuidedBackprop
    phi = guided_gradients(model, x, torch.tensor([0, 2]))
    ref = GuidedBackprop(model.module).attribute(x.clone(), target=torch.tensor([0, 2]))
    assert torch.allclose(phi, ref, atol=1e-6, rtol=1e-5)


def test_one_forward_stopped_at_the_layer_and_one_backward_for_all_channels():
    model = wrap(small_cnn())
    calls = []
    model.module[8].register_forward_hook(lambda *a: calls.append(1))
    before = model.counter.snapshot()
    channel_visualizations(model, torch.zeros(1, 3, 16, 16), "2", torch.arange(4))
    assert calls == []  # the linear head never ran
    assert model.counter.since(before) == dict(forward_images=1, backward_images=4, forward_calls=1, backward_calls=1)


def test_simple_average_rescales_each_channel_to_the_class_range():
    avg = torch.tensor([[[[0.2, 0.4]], [[0.5, 0.5]], [[0.0, 1.0]]]])  # (1,3,1,2)
    out = rescale_like(avg, torch.tensor([[0.0, 0.1, 0.2]]), torch.tensor([[1.0, 0.9, 0.6]]))
    assert torch.allclose(out, torch.tensor([[[[0.0, 1.0]], [[0.5, 0.5]], [[0.2, 0.6]]]]))  # constant kept


class Brightness(nn.Module):
    """logits = (−s, s, 0) with s = 10·(mean pixel − 0.5): P_1 rises and P_0 falls with brightness."""

    def forward(self, x):
        s = 10 * (x.mean((1, 2, 3)) - 0.5)
        return torch.stack([-s, s, torch.zeros_like(s)], 1)


def test_class_averages_simple_and_data_driven_topk():
    model = ModelAdapter.wrap(Brightness(), mean=(0, 0, 0), std=(1, 1, 1), input_size=4)
    levels = torch.tensor([0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8, 0.6])  # image i: constant grey level
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    images = levels.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
    images[:, :, 0, 0] = 0.0  # a dark pixel so the simple average is not constant
    data = [Batch(images[s:s + 3], labels[s:s + 3], ["x"] * 3, torch.arange(3), [None] * 3, None, [None] * 3)
            for s in range(0, 8, 3)]
    avgs, classes, table = class_average_images(model, data, ["simple", "data-max", "data-min"], top_k=2)
    assert classes == [0, 1]
    # class 0 ranks by P_0 (darker = more confident): top-2 = levels 0.1, 0.3; bottom-2 = 0.9, 0.7
    assert avgs[1, 0, 0, 1, 1] == pytest.approx(0.2) and avgs[2, 0, 0, 1, 1] == pytest.approx(0.8)
    # class 1 ranks by P_1 (brighter): top-2 = 0.8, 0.6; bottom-2 = 0.2, 0.5
    assert avgs[1, 1, 0, 1, 1] == pytest.approx(0.7) and avgs[2, 1, 0, 1, 1] == pytest.approx(0.35)
    # simple: mean 0.5 with a 0 pixel → rescaled to the class's pixel range [0, 0.9]
    assert avgs[0, 0, 0, 0, 0] == pytest.approx(0.0) and avgs[0, 0, 0, 1, 1] == pytest.approx(0.9)
    assert table.query("average == 'data-max'")["images"].tolist() == [2, 2]


def test_probe_tables_dead_channel_grids_pruning_and_figures(tmp_path):
    net = small_cnn()
    with torch.no_grad():  # channel 3 of the second conv never fires: its visualization is all zero
        net[4].weight[3] = 0
        net[4].bias[3] = -1
    model = wrap(net)
    data, _, _ = batches()
    probe = PROBES.build("neuron_similarity", averages=["simple", "network"], network_steps=3, chunk_size=50,
                         grid_classes=2)
    out = probe(model, data)
    sim = out["similarity"]
    assert list(sim.layer.unique()) == ["2", "5"]
    assert len(sim) == 2 * N_CLASSES * 2 * (6 + 8)  # averages × classes × methods × channels
    deadrows = sim[sim.dead]
    assert set(zip(deadrows.layer, deadrows.channel)) == {("5", 3)} and (deadrows.similarity == 0).all()
    assert sim.similarity.between(-1, 1).all()
    curves = out["curves"]
    mean_rows = curves[curves.scope == "mean"]
    assert len(mean_rows) == 2 * 2 * 2  # averages × methods × layers
    assert out["class_averages"].shape == (2, N_CLASSES, 16, 16, 3)
    assert out["grids"].shape == (2, 2, 16, 16, 16, 3) and out["grids"].dtype.name == "uint8"
    idx = out["grid_index"]
    top = idx[(idx.layer == "5") & (idx["class"] == 0) & (idx["rank"] == "top")]
    ref = sim[(sim.layer == "5") & (sim["class"] == 0) & (sim.average == "simple") & (sim.method == 1)]
    assert top.similarity.tolist() == sorted(ref.similarity, reverse=True)[:8]
    prune = out["pruning"].set_index("layer")
    assert list(prune["mode"]) == ["weights", "weights"]
    assert prune.loc["5", "pruned"] == round(0.4 * 8) and (prune.sim_top >= prune.sim_bottom).all()
    assert prune.acc_unpruned.nunique() == 1
    written = {p.name for p in plot("neuron_similarity", out, tmp_path)}
    assert {"class_averages.png", "pruning.png", "grid_2.png", "grid_5.png", "similarity_curves_simple_m1.png",
            "similarity_curves_network_m2.png"} <= written
    assert all((tmp_path / n).stat().st_size > 1000 for n in written)
    assert (tmp_path / "class_averages" / "network_class2.png").is_file()


def test_bad_parameters_raise_config_errors():
    with pytest.raises(ConfigError, match="Valid: simple, data-max, data-min, network"):
        PROBES.build("neuron_similarity", averages=["median"])
    with pytest.raises(ConfigError, match="must be one of averages"):
        PROBES.build("neuron_similarity", averages=["data-max"])
