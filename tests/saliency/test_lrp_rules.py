"""LRP rules checked without Zennit: relevance written out by hand for a 2-layer net (ε for the linear
layer; z⁺, flat, z^B, ε and α2β1 for the first layer), CLRP and Relevance-CAM against values computed
here from the rules' definitions (Montavon et al. 2019; Gu et al. 2018; Lee et al. 2021)."""

import numpy as np
import pytest
import torch
from torch import nn

from xaibench.models.adapter import ModelAdapter
from xaibench.saliency.base import EXPLAINERS


def two_layer():
    """conv 1×1 (2→2, no bias) → ReLU → flatten → linear (2→2, bias [1, 0]) on a 2-channel 1×1 image."""
    net = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[2.0, -0.5], [1.0, 1.0]]).view(2, 2, 1, 1))
        net[3].weight.copy_(torch.tensor([[4.0, 1.0], [1.0, 1.0]]))
        net[3].bias.copy_(torch.tensor([1.0, 0.0]))
    # normalization 0.5 ± 0.5: the pixel bounds 0 and 1 are −1 and 1 in model-input space (the z^B box)
    return ModelAdapter.wrap(net, mean=(0.5, 0.5), std=(0.5, 0.5), input_size=1, channels=2, name="two-layer")


X = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
# Forward: z1 = W1·x = [2·1 − 0.5·2, 1 + 2] = [1, 3] = a1 (both pass the ReLU); y = W2·a1 + b = [4 + 3 + 1, 1 + 3] = [8, 4].
# ε (linear, R_y = y_0 = 8 on the target 0): R_a1,i = a1_i·W2_0i / y_0 · 8 = [1·4, 3·1] = [4, 3] (the bias keeps 1).
HAND = {
    # z⁺: unit 1 has w⁺ = [2, 0]: [2, 0]/2·4 = [4, 0]; unit 2 has w⁺ = [1, 1]: [1, 2]/3·3 = [1, 2]
    "epsilon_plus": [5.0, 2.0],
    # flat: every input of a unit gets the same share: (4 + 3)/2 each
    "epsilon_plus_flat": [3.5, 3.5],
    # ε: unit 1 x·w = [2, −1], z = 1: [2, −1]·4 = [8, −4]; unit 2 [1, 2]/3·3 = [1, 2]
    "epsilon": [9.0, -2.0],
    # α2β1: unit 1 (x·w)⁺ = [2, 0] over 2, (x·w)⁻ = [0, −1] over −1: 2·[1, 0] − [0, 1] = [2, −1], ·4 = [8, −4];
    # unit 2 all positive: 2·[1, 2]/3·3 = [2, 4], no negative part
    "epsilon_alpha2_beta1": [10.0, 0.0],
    # z^B, l = −1, h = 1: x·w − l·w⁺ − h·w⁻: unit 1 [2 + 2, −1 + 0.5] = [4, −0.5] over 3.5, ·4;
    # unit 2 [1 + 1, 2 + 1] = [2, 3] over 5, ·3: [16/3.5 + 6/5, −2/3.5 + 9/5] = [202/35, 43/35]
    "epsilon_gamma_box": [202 / 35, 43 / 35],
}


@pytest.mark.parametrize("composite", list(HAND))
def test_first_layer_and_dense_rules_by_hand(composite):
    model = two_layer()
    assert torch.equal(model(X), torch.tensor([[8.0, 4.0]]))
    rel = EXPLAINERS.build("lrp", composite=composite, canonizer="none").attribute(model, X, torch.tensor([0]))
    torch.testing.assert_close(rel.flatten(), torch.tensor(HAND[composite]), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ the rules as code, for larger nets
def stabilized(z, eps=1e-6):
    """z + ε·sign(z), sign(0) = 1: every rule's denominator (ε = 1e-6 is also the ε rule's default)."""
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def eps_rule(a, w, b, r_out):
    """ε rule of a dense layer z = w·a + b: R_i = Σ_j a_i w_ji / (z_j + ε·sign z_j) · R_j."""
    return a * (w.T @ (r_out / stabilized(w @ a + b)))


def zplus_rule(a, w, r_out):
    """z⁺ rule (no bias; a ≥ 0): R_i = Σ_j a_i w⁺_ji / (Σ_i a_i w⁺_ji + ε) · R_j."""
    wp = np.clip(w, 0, None)
    return a * (wp.T @ (r_out / stabilized(wp @ a)))


def dense_net(seed: int = 0, k: int = 4, spatial: int = 1):
    """1×1 conv (3→6, no bias) → ReLU → 1×1 conv (6→k, no bias) → ReLU ("act") → global average
    pool → linear (k→3): per position a dense net, so the rules above apply position by position."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 1, bias=False), nn.ReLU(), nn.Conv2d(6, k, 1, bias=False), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(k, 3))
    return net, ModelAdapter.wrap(net.eval(), input_size=spatial, name="dense")


def test_clrp_against_the_rules_by_hand():
    """CLRP (Gu et al. 2018) with z⁺ convolutions and ε for the linear layer: the relevance vector
    e_c − (1 − e_c)/(K − 1) at the logits, propagated, then ReLU at the input and summed over colour."""
    net, model = dense_net(seed=1)
    x = torch.rand(1, 3, 1, 1, generator=torch.Generator().manual_seed(2)) + 0.1  # positive pixels
    t = 2
    p = {k: v.double().numpy() for k, v in net.state_dict().items()}
    x0 = x.double().flatten().numpy()
    a1 = np.maximum(p["0.weight"][:, :, 0, 0] @ x0, 0)
    a2 = np.maximum(p["2.weight"][:, :, 0, 0] @ a1, 0)
    r_y = np.full(3, -0.5)
    r_y[t] = 1.0
    r_a2 = eps_rule(a2, p["6.weight"], p["6.bias"], r_y)
    r_a2 = a2 / stabilized(a2) * r_a2  # the 1×1 average pool's rule: R_i = a_i / Σ a · R (one input)
    r_a1 = zplus_rule(a1, p["2.weight"][:, :, 0, 0], r_a2)
    r_x = zplus_rule(x0, p["0.weight"][:, :, 0, 0], r_a1)  # epsilon_plus: z⁺ at the first layer too
    assert (r_x > 0).any() and (r_x < 0).any()  # the ReLU at the input matters
    ours = EXPLAINERS.build("clrp", composite="epsilon_plus", canonizer="none", reduce="sum")(model, x, torch.tensor([t]))
    assert ours.item() == pytest.approx(np.maximum(r_x, 0).sum(), rel=1e-5)


def test_relevancecam_against_the_rules_by_hand():
    """Relevance-CAM (Lee et al. 2021): contrastive relevance at the layer — ε at the linear layer, the
    average pool's rule R_kij = A_kij / Σ_ij A_kij · R_k — ReLU'd, averaged per channel into α_k, then
    ReLU(Σ_k α_k A_k)."""
    net, model = dense_net(seed=3, k=4, spatial=3)
    x = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(4))
    t = 0
    with torch.no_grad():
        acts = net[:4](x).double()[0].numpy()  # (4, 3, 3), the ReLU "act" output
    p = {k: v.double().numpy() for k, v in net.state_dict().items()}
    pooled = acts.mean((1, 2))
    r_y = np.full(3, -0.5)
    r_y[t] = 1.0
    r_pool = eps_rule(pooled, p["6.weight"], p["6.bias"], r_y)
    r_act = acts / stabilized(acts.sum((1, 2), keepdims=True)) * r_pool[:, None, None]
    alpha = np.maximum(r_act, 0).mean((1, 2))
    expected = np.maximum((alpha[:, None, None] * acts).sum(0), 0)
    assert expected.max() > 0 and not np.allclose(expected, expected.mean())
    ours = EXPLAINERS.build("relevancecam", layer="3", canonizer="none")(model, x, torch.tensor([t]))
    np.testing.assert_allclose(ours[0].numpy(), expected, rtol=1e-4, atol=1e-7)
