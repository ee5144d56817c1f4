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
    for objective in ("activation", "sum", "mean", "max"):
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
    # the default objective starts from the channel's own activation, the other channels zeroed
    # (thesis Fig. 3-4): Captum with the objective Σ A_k · stop_gradient(A_k) has exactly that seed
    own = channel_visualizations(model, x[:1], "5", torch.arange(8))
    for k in (0, 3, 7):
        ref = oracle.attribute(x[:1].clone(), neuron_selector=lambda out, k=k: (out[:, k] * out[:, k].detach()).sum((1, 2)))
        assert torch.allclose(own[k:k + 1], ref, atol=1e-6, rtol=1e-5)
    live = ours.flatten(1).abs().amax(1) > 0
    assert not torch.allclose(own[live] / own[live].flatten(1).norm(dim=1).view(-1, 1, 1, 1),
                              ours[live] / ours[live].flatten(1).norm(dim=1).view(-1, 1, 1, 1), atol=1e-3)
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
    bottom = idx[(idx.layer == "5") & (idx["class"] == 0) & (idx["rank"] == "bottom")]
    ref = sim[(sim.layer == "5") & (sim["class"] == 0) & (sim.average == "simple") & (sim.method == 1)]
    live = ref[~ref.dead]
    assert len(live) == 7 and 3 not in set(idx[idx.layer == "5"].channel)  # the dead channel is in no grid
    assert top.similarity.tolist() == sorted(live.similarity, reverse=True)[:7] and top.slot.tolist() == list(range(7))
    assert bottom.similarity.tolist() == sorted(live.similarity)[:7] and bottom.slot.tolist() == list(range(8, 15))
    assert (out["grids"][1, 0, [7, 15]] == 128).all()  # the slots left for lack of a live channel stay grey
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


def test_defaults_follow_the_thesis():
    p = PROBES.get("neuron_similarity").params
    assert p["objective"][1] == "activation"  # Fig. 3-4: the channel's own activation, the others zeroed
    assert p["averages"][1] == ["simple", "data-max", "data-min"]  # `network` is reference only (§3.2.3)
    assert p["reference"][1] == "model_input" and p["prune_fraction"][1] == 0.4 and p["prune_average"][1] == "simple"


def test_method_one_compares_with_the_model_input_tensor_or_with_the_pixel_image():
    net = small_cnn()
    model = ModelAdapter.wrap(net, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), input_size=16)
    data, _, _ = batches()
    avgs, classes, _ = class_average_images(model, data, ["simple"])
    sims = {}
    for reference in ("model_input", "pixels"):
        probe = PROBES.build("neuron_similarity", averages=["simple"], methods=[1], grid_classes=0, prune=False,
                             reference=reference)
        table = probe(model, data)["similarity"]
        sims[reference] = table[(table.layer == "5") & (table["class"] == 1)].similarity.to_numpy()
    pixels = avgs[0, 1:2]
    vis = channel_visualizations(model, model.normalize(pixels), "5", torch.arange(8))
    expected = {"model_input": cosine_and_dead(model.normalize(pixels), vis)[0],
                "pixels": cosine_and_dead(pixels, vis)[0]}
    for reference in sims:
        assert torch.allclose(torch.from_numpy(sims[reference]), expected[reference], atol=1e-6)
    assert abs(sims["model_input"] - sims["pixels"]).max() > 0.05


class ChannelVote(nn.Module):
    """Five one-hot input channels → `conv` (identity 1×1) → ReLU (`act`) → mean → logits: class j
    reads channel j (weight 1), a sixth class has bias 0.5. An image of class j (channel j = 1)
    is right unless channel j is pruned; then class 5 wins."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(5, 5, 1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(5, 6)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(5).view(5, 5, 1, 1))
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.cat([torch.eye(5), torch.zeros(1, 5)]))
            self.fc.bias.copy_(torch.tensor([0, 0, 0, 0, 0, 0.5]))

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_pruning_ranks_by_the_mean_over_classes_and_measures_these_accuracies():
    from xaibench.models.layers import select_layers

    model = ModelAdapter.wrap(ChannelVote(), mean=(0.0,) * 5, std=(1.0,) * 5, input_size=4, channels=5)
    labels = torch.tensor([j for j in range(5) for _ in range(2 ** j)])  # 1, 2, 4, 8, 16 images of class 0…4
    images = torch.zeros(len(labels), 5, 4, 4)
    images[torch.arange(len(labels)), labels] = 1.0
    data = [Batch(images[s:s + 8], labels[s:s + 8], ["x"] * 8, torch.arange(8), [None] * 8, None, [None] * 8)
            for s in range(0, len(labels), 8)]
    # similarities of the 5 channels to 3 class averages; the mean over classes ranks
    # channels 1 (0.533), 4 (0.433) on top and 0 (0.3), 2 (0.367) at the bottom, unlike class 0
    # alone (top 0, 2) or the maximum over classes (top 0, 3)
    sims = torch.tensor([[0.9, 0.1, 0.5, 0.2, 0.3],
                         [0.0, 0.8, 0.4, 0.1, 0.8],
                         [0.0, 0.7, 0.2, 0.9, 0.2]])
    probe = PROBES.build("neuron_similarity", averages=["simple"], methods=[1], prune_fraction=0.4)
    layers = select_layers(model, ["act"])
    table = probe.pruning(model, data, ["simple"], layers, {"act": {1: sims}})
    row = table.iloc[0]
    assert (row.pruned, row["mode"]) == (2, "weights")
    assert row.acc_unpruned == 1.0
    assert row.acc_top == pytest.approx(1 - (2 + 16) / 31)  # channels 1 and 4 pruned: their 18 images are lost
    assert row.acc_bottom == pytest.approx(1 - (1 + 4) / 31)  # channels 0 and 2
    assert row.top_minus_bottom == pytest.approx(-13 / 31)
    assert row.sim_top == pytest.approx((1.6 / 3 + 1.3 / 3) / 2) and row.sim_bottom == pytest.approx((0.3 + 1.1 / 3) / 2)
