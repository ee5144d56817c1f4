"""CF-CAM (docs/methods.md §CF-CAM): a literal per-channel reference, a hand-built model whose
logit depends on one region, exact skipping of constant masks, batch independence, pass counts."""

import torch
from saliency_models import small_cnn
from torch import nn
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonPlus

from xaibench.imageops import gaussian_blur
from xaibench.models.adapter import ModelAdapter
from xaibench.saliency.base import EXPLAINERS


def literal_cfcam(model, x, target, layer_module, kernel, sigma, score="softmax", canonizers=None):
    """Algorithm 1 of the spec, one image and one channel at a time, no skipping, R_c and R_dual
    from two separate Zennit backward passes."""
    net = model.module
    maps = []
    for i in range(x.shape[0]):
        xi, c = x[i:i + 1], int(target[i])
        xb = gaussian_blur(xi, kernel, sigma)
        store = {}
        h = layer_module.register_forward_hook(lambda m, inp, out: store.__setitem__("a", out))
        rels = []
        for dual in (False, True):
            with EpsilonPlus(canonizers=canonizers or []).context(net):
                xg = xi.clone().requires_grad_(True)
                out = net(xg)
                onehot = torch.zeros_like(out)
                onehot[0, c] = 1.0
                g_out = (1 - onehot) / (out.shape[1] - 1) if dual else onehot
                (r,) = torch.autograd.grad(out, store["a"], grad_outputs=g_out)
            rels.append(r)
        h.remove()
        acts = store["a"].detach()
        rel = torch.relu(rels[0] - rels[1])

        def f(inp):
            out = net(inp)
            return out.softmax(1)[0, c] if score == "softmax" else out[0, c]

        with torch.no_grad():
            base = f(xb)
            total = torch.zeros(x.shape[-2:])
            for k in range(acts.shape[1]):
                up = nn.functional.interpolate((rel[:, k:k + 1] * acts[:, k:k + 1]), size=x.shape[-2:],
                                               mode="bilinear", align_corners=False)[0, 0]
                span = up.max() - up.min()
                mk = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
                total += (f(xi * mk + xb * (1 - mk)) - base) * mk
        maps.append(torch.relu(total))
    return torch.stack(maps)


def test_cfcam_equals_the_literal_algorithm_and_counts_passes():
    model = small_cnn()
    torch.manual_seed(1)
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([0, 2, 4])
    cf = EXPLAINERS.build("cfcam", layer="relu3", blur_kernel=7, blur_sigma=3.0, chunk_size=5)
    before = model.counter.snapshot()
    ours = cf(model, x, t)
    used = model.counter.since(before)
    ref = literal_cfcam(model, x, t, model.module.relu3, 7, 3.0, canonizers=[SequentialMergeBatchNorm()])
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-7)
    assert ours.max() > 0
    live = int(cf.diagnostics["channels_scored"].sum())
    assert 0 < live <= 3 * 12
    assert used["forward_images"] == 3 + live + 3  # LRP forward, one per non-constant channel, blurred baseline
    assert used["backward_images"] == 3


def test_cfcam_batch_independent_and_logit_score():
    model = small_cnn()
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([1, 1, 3])
    for score in ("softmax", "logit"):
        cf = EXPLAINERS.build("cfcam", layer="relu3", blur_kernel=5, blur_sigma=2.0, score=score, chunk_size=4)
        full = cf(model, x, t)
        alone = cf(model, x[2:3], t[2:3])
        assert torch.allclose(full[2], alone[0], rtol=1e-4, atol=1e-7)


class RegionNet(nn.Module):
    """feat = ReLU(1×1 conv): channel k = colour channel k (k = 0,1,2). Logit 0 sums channel 0
    over rows 2..5, cols 2..5; logit 1 sums channel 1 over rows 8..13, cols 8..13; channel 2 is
    read by no logit (zero relevance)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3 * 16 * 16, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            w = torch.zeros(2, 3, 16, 16)
            w[0, 0, 2:6, 2:6] = 1.0
            w[1, 1, 8:14, 8:14] = 1.0
            self.fc.weight.copy_(w.flatten(1))

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


def test_cfcam_peaks_where_the_logit_looks_and_ignores_irrelevant_channels():
    model = ModelAdapter.wrap(RegionNet().eval(), input_size=16, default_layer="relu")
    x = torch.full((1, 3, 16, 16), 0.2)
    x[:, :, 2:6, 2:6] = 1.0  # a bright square where logit 0 looks
    x[:, :, 8:14, 8:14] = 0.5
    cf = EXPLAINERS.build("cfcam", blur_kernel=9, blur_sigma=4.0, score="logit")
    cam = cf(model, x, torch.tensor([0]))
    # R = ReLU(R_0 − R_dual) is positive only on channel 0 inside logit 0's window
    assert int(cf.diagnostics["channels_scored"][0]) == 1
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[2:6, 2:6] = True
    assert cam[0][inside].min() > 0 and torch.all(cam[0][~inside] == 0)
    r, c = divmod(int(cam[0].argmax()), 16)
    assert 2 <= r < 6 and 2 <= c < 6
    # the channel with zero relevance contributes nothing: changing it changes nothing
    x2 = x.clone()
    x2[:, 2] = torch.rand(16, 16)
    assert torch.allclose(cf(model, x2, torch.tensor([0])), cam)


def test_cfcam_refuses_a_layer_with_1x1_maps():
    import pytest

    from xaibench.errors import LayerError

    model = small_cnn()
    with pytest.raises(LayerError, match="1×1"):
        EXPLAINERS.build("cfcam", layer="relu3", blur_kernel=3, blur_sigma=1.0)(model, torch.randn(1, 3, 2, 2),
                                                                               torch.tensor([0]))
