"""Guided-backprop and deconvnet ReLU rules on hand-built models with known gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaibench.errors import ModelError
from xaibench.models.relu_rules import deconvnet_relu, guided_relu


class Diag(nn.Module):
    """y = w2 · relu(w1 ⊙ x): the gradient to x is w2 * w1 * [w1 x > 0] under plain backprop."""

    def __init__(self, w1, w2, relu):
        super().__init__()
        self.w1 = nn.Parameter(torch.tensor(w1), requires_grad=False)
        self.w2 = nn.Parameter(torch.tensor(w2), requires_grad=False)
        self.relu = relu

    def forward(self, x):
        h = x * self.w1
        h = self.relu(h)
        return (h * self.w2).sum(-1)


W1 = [1.0, 1.0, -1.0, -1.0, 2.0]
W2 = [1.0, -1.0, 1.0, -1.0, 3.0]
X = torch.tensor([[1.0, 1.0, 1.0, 1.0, -1.0]])  # pre-activations 1, 1, -1, -1, -2
PLAIN = torch.tensor([[1.0, -1.0, 0.0, 0.0, 0.0]])
GUIDED = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]])  # input>0 and grad>0
DECONV = torch.tensor([[1.0, 0.0, -1.0, 0.0, 6.0]])  # grad>0 only: w1 * max(w2, 0)

RELUS = {
    "module": lambda: nn.ReLU(),
    "module_inplace": lambda: nn.ReLU(inplace=True),
    "torch.relu": lambda: torch.relu,
    "F.relu": lambda: F.relu,
    "F.relu_inplace": lambda: (lambda h: F.relu(h, inplace=True)),
    "Tensor.relu": lambda: (lambda h: h.relu()),
    "Tensor.relu_": lambda: (lambda h: h.relu_()),
    "torch.relu_": lambda: torch.relu_,
}


def grad_of(model, x):
    x = x.clone().requires_grad_(True)
    y = model(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), g


@pytest.mark.parametrize("kind", list(RELUS))
def test_rules_known_gradients(kind):
    model = Diag(W1, W2, RELUS[kind]())
    y0, g0 = grad_of(model, X)
    assert torch.equal(g0, PLAIN)
    with guided_relu(model):
        y, g = grad_of(model, X)
    assert torch.equal(y, y0) and torch.equal(g, GUIDED)
    with deconvnet_relu(model):
        y, g = grad_of(model, X)
    assert torch.equal(y, y0) and torch.equal(g, DECONV)
    # restored afterwards
    y1, g1 = grad_of(model, X)
    assert torch.equal(g1, PLAIN) and torch.equal(y1, y0)


class TwoReLUs(nn.Module):
    """A shared in-place nn.ReLU used twice and a functional relu in between."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.relu(self.a(x))
        h = F.relu(self.b(h))
        return self.c(self.relu(h * 2 - 0.3))


def manual_rule(model, x, target, kind):
    """Same network written out with explicit masks: a reference for the two rules."""
    x = x.clone().requires_grad_(True)

    class R(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            g = g.clamp(min=0)
            return g * (z > 0) if kind == "guided" else g

    h = R.apply(model.a(x))
    h = R.apply(model.b(h))
    out = model.c(R.apply(h * 2 - 0.3))
    (g,) = torch.autograd.grad(out[:, target].sum(), x)
    return g


@pytest.mark.parametrize("kind,ctx", [("guided", guided_relu), ("deconvnet", deconvnet_relu)])
def test_rules_match_manual_reference_on_a_deeper_model(kind, ctx):
    torch.manual_seed(0)
    model = TwoReLUs().eval()
    x = torch.randn(6, 4)
    with torch.no_grad():
        y0 = model(x.clone())
    with ctx(model):
        xg = x.clone().requires_grad_(True)
        y = model(xg)
        (g,) = torch.autograd.grad(y[:, 1].sum(), xg)
    assert torch.allclose(y.detach(), y0)
    ref = manual_rule(model, x, 1, kind)
    assert torch.allclose(g, ref, atol=1e-6)
    xp = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(xp)[:, 1].sum(), xp)
    assert not torch.allclose(g, plain, atol=1e-4)  # the rule really changed the backward


def test_rules_are_removed_on_error_and_do_not_nest():
    model = Diag(W1, W2, nn.ReLU())
    with pytest.raises(RuntimeError, match="boom"):
        with guided_relu(model):
            raise RuntimeError("boom")
    assert not model.relu._forward_hooks and not model.relu._forward_pre_hooks
    _, g = grad_of(model, X)
    assert torch.equal(g, PLAIN)
    with pytest.raises(ModelError, match="do not nest"):
        with guided_relu(model), deconvnet_relu(model):
            pass
    _, g = grad_of(model, X)
    assert torch.equal(g, PLAIN)
    with pytest.raises(ModelError, match="nn.Module"):
        with guided_relu("resnet"):
            pass


@pytest.mark.slow
def test_guided_matches_captum_on_resnet18():
    import captum.attr as captum_attr
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    x = torch.randn(2, 3, 48, 48)
    target = torch.tensor([1, 3])
    for ctx, ref in [(guided_relu, captum_attr.GuidedBackprop), (deconvnet_relu, captum_attr.Deconvolution)]:
        with ctx(model):
            xg = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(xg).gather(1, target[:, None]).sum(), xg)
        expected = ref(model).attribute(x.clone(), target=target)
        assert torch.allclose(g, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("inplace", [False, True])
def test_relu6_modules_follow_the_rules(inplace):
    """ReLU6 (EfficientNet-Lite, MobileNet): guided passes where 0 < x < 6 and grad > 0."""
    from torch import nn

    from xaibench.models.relu_rules import deconvnet_relu, guided_relu

    lin = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(4))
    model = nn.Sequential(lin, nn.ReLU6(inplace=inplace))
    x = torch.tensor([[-1.0, 3.0, 7.0, 2.0]], requires_grad=True)
    upstream = torch.tensor([[1.0, 1.0, 1.0, -1.0]])
    with guided_relu(model):
        (g,) = torch.autograd.grad(model(x), x, upstream)
    torch.testing.assert_close(g, torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    with deconvnet_relu(model):
        y = model(x)
        (g,) = torch.autograd.grad(y, x, upstream)
    torch.testing.assert_close(y, torch.tensor([[0.0, 3.0, 6.0, 2.0]]))
    torch.testing.assert_close(g, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
