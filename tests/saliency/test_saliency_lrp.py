"""LRP family through Zennit: our composites and canonizers wired as calling Zennit directly would
(the rules themselves are checked without Zennit in test_lrp_rules.py), conservation, CLRP by
linearity, Relevance-CAM's formula, and the model left untouched."""

import pytest
import torch
from saliency_models import resnet18, small_cnn
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer

from xaibench.models.adapter import ModelAdapter
from xaibench.saliency.base import EXPLAINERS
from xaibench.saliency.lrp import make_composite, relevance


def zennit_direct(model, x, t, composite, output):
    with Gradient(model=model.module, composite=composite) as attributor:
        _, rel = attributor(x.clone(), lambda out: output(out, t))
    return rel


def onehot_logit(out, t):
    return torch.zeros_like(out).scatter_(1, t[:, None], 1.0) * out


ZENNIT = {
    "epsilon_plus_flat": lambda m, x, can: EpsilonPlusFlat(canonizers=can),
    "epsilon_alpha2_beta1": lambda m, x, can: EpsilonAlpha2Beta1(canonizers=can),
    "epsilon_gamma_box": lambda m, x, can: EpsilonGammaBox(low=m.normalize(torch.zeros_like(x[:1])),
                                                           high=m.normalize(torch.ones_like(x[:1])), canonizers=can),
}


@pytest.mark.parametrize("composite", list(ZENNIT))
@pytest.mark.parametrize("which", ["small_cnn", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_lrp_agrees_with_zennit(composite, which):
    model = small_cnn() if which == "small_cnn" else resnet18()
    can = [SequentialMergeBatchNorm()] if which == "small_cnn" else [ResNetCanonizer()]
    torch.manual_seed(0)
    x = torch.randn(2, 3, *model.input_size)
    t = torch.tensor([1, 4])
    ours = EXPLAINERS.build("lrp", composite=composite).attribute(model, x, t)
    ref = zennit_direct(model, x, t, ZENNIT[composite](model, x, can), onehot_logit)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-7)
    assert ours.abs().sum() > 0


def test_lrp_leaves_the_model_untouched():
    model = small_cnn()
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 1])
    before = model(x).detach()
    for name in ["lrp", "clrp", "relevancecam"]:
        EXPLAINERS.build(name)(model, x, t)
    assert all(torch.equal(v, model.module.state_dict()[k]) for k, v in state.items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               for m in model.module.modules())
    assert torch.equal(model(x).detach(), before)


def plain_sequential():
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(6, 4, 3, padding=1, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 3, bias=False),
    )
    return ModelAdapter.wrap(net.eval(), input_size=8, default_layer="3")


def test_relevance_is_conserved_under_the_epsilon_rule():
    model = plain_sequential()
    x = torch.randn(3, 3, 8, 8)
    t = torch.tensor([0, 1, 2])
    logit = model(x)[torch.arange(3), t].detach()
    rel = EXPLAINERS.build("lrp", composite="epsilon", epsilon=1e-9).attribute(model, x, t)
    assert torch.allclose(rel.flatten(1).sum(1), logit, rtol=1e-4, atol=1e-6)
    # at an intermediate layer too: the modified gradient there is the relevance itself
    comp = make_composite("epsilon", model, x, 1e-9, 0.25, "none")
    layer_rel, acts = relevance(model, x, t, comp, layer="3")
    assert acts.shape == (3, 4, 8, 8)
    assert torch.allclose(layer_rel.flatten(1).sum(1), logit, rtol=1e-4, atol=1e-6)


def test_clrp_is_relu_of_target_minus_dual_relevance():
    model = small_cnn()
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 3])
    ours = EXPLAINERS.build("clrp", reduce="sum")(model, x, t)

    def target_out(out, t):
        return torch.zeros_like(out).scatter_(1, t[:, None], 1.0)

    def dual_out(out, t):
        return (1 - target_out(out, t)) / (out.shape[1] - 1)

    comp = lambda: EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])  # noqa: E731
    r_c = zennit_direct(model, x, t, comp(), target_out)
    r_dual = zennit_direct(model, x, t, comp(), dual_out)
    assert torch.allclose(ours, torch.relu(r_c - r_dual).sum(1), rtol=1e-4, atol=1e-7)


def test_relevancecam_formula_with_zennit_layer_relevance():
    model = small_cnn()
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([2, 1])
    ours = EXPLAINERS.build("relevancecam", layer="relu3")(model, x, t)
    acts = {}
    net = model.module
    handle = net.relu3.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    rels = []
    for out_fn in [lambda o: torch.zeros_like(o).scatter_(1, t[:, None], 1.0),
                   lambda o: (1 - torch.zeros_like(o).scatter_(1, t[:, None], 1.0)) / 4]:
        with EpsilonPlus(canonizers=[SequentialMergeBatchNorm()]).context(net):
            xg = x.clone().requires_grad_(True)
            out = net(xg)
            (g,) = torch.autograd.grad(out, acts["a"], grad_outputs=out_fn(out))
        rels.append(g)
    handle.remove()
    rel = torch.relu(rels[0] - rels[1])
    cam = torch.relu((rel.mean((2, 3), keepdim=True) * acts["a"].detach()).sum(1, keepdim=True))
    expected = torch.nn.functional.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(ours, expected, rtol=1e-4, atol=1e-7)
    assert ours.max() > 0


class DenseLike(nn.Module):
    """Module order conv_a, bn_b — but bn_b reads cat([x, conv_a(x)]) (the DenseNet trap for
    module-order BatchNorm merging); bn_a really follows conv_a."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(4)
        self.conv_c = nn.Conv2d(4, 4, 3, padding=1)
        self.bn_b = nn.BatchNorm2d(7)
        self.conv_b = nn.Conv2d(7, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        a = torch.relu(self.bn_a(self.conv_a(x)))
        h = torch.relu(self.bn_b(torch.cat([x, self.conv_c(a)], 1)))
        return self.fc(torch.relu(self.conv_b(h)).mean((2, 3)))


def test_batchnorm_merging_follows_the_data_flow_not_module_order():
    from xaibench.saliency.lrp import batchnorm_pairs

    torch.manual_seed(0)
    net = DenseLike().eval()
    for bn in (net.bn_a, net.bn_b):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    model = ModelAdapter.wrap(net.eval(), input_size=8)
    x = torch.randn(2, 3, 8, 8)
    assert batchnorm_pairs(model, x) == [(("conv_a",), "bn_a")]
    t = torch.tensor([0, 2])
    ours = EXPLAINERS.build("lrp", canonizer="merge_batchnorm").attribute(model, x, t)
    from zennit.canonizers import NamedMergeBatchNorm
    ref = zennit_direct(model, x, t, EpsilonPlusFlat(canonizers=[NamedMergeBatchNorm([(("conv_a",), "bn_a")])]),
                        onehot_logit)
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-7) and torch.isfinite(ours).all()
    with torch.no_grad():
        assert torch.allclose(model(x), net(x))  # forward unchanged after the canonizer is removed
