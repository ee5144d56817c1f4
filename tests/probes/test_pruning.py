"""Pruning validation helpers (docs/methods.md §Neuron similarity): exact zeroing and bit-identical restore."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from xaibench.datasets.base import Batch
from xaibench.models.adapter import ModelAdapter
from xaibench.probes.pruning import accuracy, producing_conv, pruned, ranked_channels, resolve_mode


def vgg_like() -> ModelAdapter:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    ).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].bias.uniform_(0.1, 0.5)  # a BN shift: zeroing the conv alone would not zero the channel
    return ModelAdapter.wrap(net, input_size=12)


def residual() -> ModelAdapter:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), BasicBlock(8, 8),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    return ModelAdapter.wrap(net, input_size=12)


def snapshot(model: ModelAdapter) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.module.state_dict().items()}


def test_weights_mode_zeroes_the_channels_and_restores_bit_identically():
    model = vgg_like()
    conv, bn = producing_conv(model, "2")
    assert conv is model.module[0] and bn is model.module[1]
    conv2, bn2 = producing_conv(model, "4")
    assert conv2 is model.module[3] and bn2 is None
    before = snapshot(model)
    x = torch.randn(2, 3, 12, 12)
    channels = torch.tensor([1, 4, 6])
    with pruned(model, "2", channels, "auto") as mode, model.capture("2") as cap:
        assert mode == "weights"
        model(x)
        assert (cap.activation[:, channels] == 0).all() and (cap.activation[:, [0, 2]] != 0).any()
        assert (model.module[0].weight[channels] == 0).all() and (model.module[1].bias[channels] == 0).all()
    after = snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(RuntimeError), pruned(model, "2", channels, "weights"):
        raise RuntimeError("restored on error too")
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())


def test_a_conv_layer_prunes_its_batchnorm_too_so_the_channel_stays_zero_downstream():
    model = vgg_like()  # layers: convs selects the conv module "0" itself; its BatchNorm "1" runs after it
    conv, bn = producing_conv(model, "0")
    assert conv is model.module[0] and bn is model.module[1]
    channels = torch.tensor([2, 5])
    with pruned(model, "0", channels) as mode, model.capture("2") as cap:
        assert mode == "weights"
        model(torch.randn(2, 3, 12, 12))
        assert (cap.activation[:, channels] == 0).all()  # the BN shift does not bring the channel back


def test_residual_block_falls_back_to_zeroing_its_output():
    model = residual()
    assert resolve_mode(model, "2", "auto") == "output"  # the identity path keeps channels alive
    before = snapshot(model)
    channels = torch.tensor([0, 5])
    with pruned(model, "2", channels) as mode, model.capture("2") as cap:
        assert mode == "output"
        model(torch.randn(2, 3, 12, 12))
        assert (cap.activation[:, channels] == 0).all()
    assert not model.module[2]._forward_hooks
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())


def test_ranked_channels_and_accuracy():
    top, bottom = ranked_channels(torch.tensor([0.1, 0.9, 0.5, 0.5, -0.2]), 0.4)
    assert top.tolist() == [1, 2] and bottom.tolist() == [4, 0]
    model = vgg_like()
    x = torch.randn(6, 3, 12, 12)
    with torch.no_grad():
        pred = model(model.normalize(x)).argmax(1)
    labels = pred.clone()
    labels[:2] = (labels[:2] + 1) % 3
    data = [Batch(x[s:s + 3], labels[s:s + 3], ["x"] * 3, torch.arange(3), [None] * 3, None, [None] * 3)
            for s in (0, 3)]
    assert accuracy(model, data) == pytest.approx(4 / 6)
