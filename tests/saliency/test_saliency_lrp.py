"""LRP family against Zennit (the oracle): our rule layers agree with calling Zennit directly (the
rules themselves are also checked without Zennit in test_lrp_rules.py), conservation, CLRP by
linearity, Relevance-CAM's formula, and the model left untouched."""

import pytest
import torch
from saliency_models import resnet18, small_cnn
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.rules import Epsilon as ZEpsilon
from zennit.torchvision import ResNetCanonizer
from zennit.types import Convolution

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
    "epsilon_plus": lambda m, x, can: EpsilonPlus(canonizers=can),
    "epsilon_alpha2_beta1": lambda m, x, can: EpsilonAlpha2Beta1(canonizers=can),
    "epsilon_alpha2_beta1_flat": lambda m, x, can: EpsilonAlpha2Beta1Flat(canonizers=can),
    "epsilon_gamma_box": lambda m, x, can: EpsilonGammaBox(low=m.normalize(torch.zeros_like(x[:1])),
                                                           high=m.normalize(torch.ones_like(x[:1])), canonizers=can),
    "epsilon": lambda m, x, can: LayerMapComposite(
        layer_map=layer_map_base() + [(Convolution, ZEpsilon()), (nn.Linear, ZEpsilon())], canonizers=can),
}


@pytest.mark.parametrize("composite", list(ZENNIT))
@pytest.mark.parametrize("which", ["small_cnn", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_lrp_agrees_with_zennit(composite, which):
    """Our rule layers compute Zennit's arithmetic: in Zennit's layout (NCHW) the maps are the same
    to the last bits; in the channels-last layout our CPU forwards use, they differ only by the
    rounding of the layout (ε alone amplifies it: its denominators reach 1e-6, so only NCHW there)."""
    model = small_cnn() if which == "small_cnn" else resnet18()
    can = [SequentialMergeBatchNorm()] if which == "small_cnn" else [ResNetCanonizer()]
    torch.manual_seed(0)
    x = torch.randn(2, 3, *model.input_size)
    t = torch.tensor([1, 4])
    lrp = EXPLAINERS.build("lrp", composite=composite)
    ref = zennit_direct(model, x, t, ZENNIT[composite](model, x, can), onehot_logit)
    scale = float(ref.abs().max())
    ours_channels_last = lrp.attribute(model, x, t)
    model.channels_last = False
    ours = lrp.attribute(model, x, t)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6 * scale)
    if composite != "epsilon":
        torch.testing.assert_close(ours_channels_last, ref, rtol=0, atol=1e-5 * scale)
    assert scale > 0


class PaddedAndMixed(nn.Module):
    """Reflect padding and 'same' padding (the autograd path of the rule gradients), a transposed
    convolution, a first conv fed signed inputs and a shared ReLU called twice."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(6, 6, 3, padding="same")
        self.relu = nn.ReLU()
        self.up = nn.ConvTranspose2d(6, 5, 3, stride=2, padding=1, output_padding=1)
        self.conv3 = nn.Conv2d(5, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.relu(self.up(self.relu(self.conv2(self.relu(self.conv1(x))))))
        return self.fc(torch.relu(self.conv3(h)).mean((2, 3)))


@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_alpha2_beta1", "epsilon_gamma_box"])
def test_lrp_agrees_with_zennit_on_padding_modes(composite):
    torch.manual_seed(1)
    model = ModelAdapter.wrap(PaddedAndMixed(), input_size=10)
    model.channels_last = False
    x = torch.randn(3, 3, 10, 10)
    t = torch.tensor([0, 1, 2])
    ours = EXPLAINERS.build("lrp", composite=composite, canonizer="none").attribute(model, x, t)
    ref = zennit_direct(model, x, t, ZENNIT[composite](model, x, []), onehot_logit)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))


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
               and "forward" not in m.__dict__ for m in model.module.modules())  # own forwards back
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


def test_kept_rule_layers_follow_parameter_edits_also_through_data():
    """The merged and clamped weights are kept between calls; any parameter edit rebuilds them."""
    model = small_cnn()
    model.channels_last = False
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 3])
    lrp = EXPLAINERS.build("lrp")
    before = lrp.attribute(model, x, t)
    model.module.conv2.weight.data.mul_(-0.5)  # no version counter bump
    model.module.bn1.running_var.data[0] = 4.0
    ref = zennit_direct(model, x, t, EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()]), onehot_logit)
    after = lrp.attribute(model, x, t)
    torch.testing.assert_close(after, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))
    assert not torch.allclose(before, after)


def test_inside_one_inference_block_kept_rule_layers_follow_every_edit():
    """A run is one inference() block; the rule layers' fingerprint is still taken at every call, so
    an in-place edit under no_grad and a `.data` edit (no counter bump) in the middle of the block
    are both seen. (Taking the bit sums once per block instead leaves the layers the rules use
    unmodified live and their clamped copies stale: a silently inconsistent map.)"""
    model = small_cnn()
    model.channels_last = False
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 3])
    lrp = EXPLAINERS.build("lrp")

    def zennit():
        return zennit_direct(model, x, t, EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()]), onehot_logit)

    with model.inference():
        first = lrp.attribute(model, x, t)
        with torch.no_grad():
            model.module.conv2.weight.mul_(-0.5)  # bumps the version counter
        edited = lrp.attribute(model, x, t)
        assert not torch.allclose(first, edited)
        ref = zennit()
        torch.testing.assert_close(edited, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))
        model.module.conv2.weight.data.mul_(-2.0)  # no counter bump
        model.module.bn1.running_var.data[0] = 4.0
        again = lrp.attribute(model, x, t)
        ref = zennit()
        torch.testing.assert_close(again, ref, rtol=0, atol=1e-6 * float(ref.abs().max()))
