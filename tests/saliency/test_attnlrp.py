"""AttnLRP: relevance conservation with the softmax rule's absorbed share counted, a one-block
transformer against LRP written out rule by rule (the paper's equations, float64), and the LRP
family (LRP, CLRP, Relevance-CAM, CF-CAM) refusing vision transformers with the reason."""

from __future__ import annotations

import pytest
import torch
from attention_vits import images, timm_vit, torchvision_vit
from torchvision.models.vision_transformer import VisionTransformer

import xaibench as xb
from xaibench.errors import ModelError
from xaibench.models.attention import attention_sites
from xaibench.models.attnlrp_rules import attnlrp_rules
from xaibench.saliency import EXPLAINERS
from xaibench.saliency.base import unmet_needs
from xaibench.tensorops import target_scores


def token_relevance(model, x, target, dtype=torch.float32):
    """AttnLRP relevance of the tokens entering the first block, and each softmax's output with the
    gradient arriving at it."""
    net = model.module.to(dtype).eval()
    block = attention_sites(net)[0].block
    box, probs = {}, []

    def leaf(mod, args):
        box["t"] = args[0].detach().requires_grad_(True)
        return (box["t"], *args[1:])

    handle = block.register_forward_pre_hook(leaf)
    try:
        with torch.enable_grad(), attnlrp_rules(net, probs.append):
            logit = target_scores(net(x.to(dtype)), target)
            grads = torch.autograd.grad(logit.sum(), [box["t"], *probs])
    finally:
        handle.remove()
    return (grads[0] * box["t"]).detach(), logit.detach(), probs, grads[1:]


def absorbed_by_softmax(probs, grads):
    """Per image, the relevance the softmax rule does not pass on: Σ R_out − Σ x_i (R_i − s_i Σ_j R_j)
    with R_out = s ⊙ ∂ and x = log s (the rule's sum is invariant to a shift of x per row)."""
    total = 0
    for s, g in zip(probs, grads):
        r = (s * g).detach()
        x = s.detach().clamp_min(1e-30).log()
        r_in = x * (r - s.detach() * r.sum(-1, keepdim=True))
        total = total + (r.sum((1, 2, 3)) - r_in.sum((1, 2, 3)))
    return total


@pytest.mark.parametrize("make", [torchvision_vit, lambda: timm_vit("deit")], ids=["torchvision", "timm_deit"])
def test_relevance_is_conserved_once_the_softmax_share_is_counted(make):
    """Biases zero (else they absorb relevance, as in any LRP): the tokens' relevance plus what the
    softmaxes absorb equals the target logit (rtol 1e-4, float32). Without the uniform rule on A·v and
    q·kᵀ, the identity rule through LayerNorm or GELU, the sum is off by far more."""
    model, x, target = make(), images(3), torch.tensor([0, 3, 5])
    with torch.no_grad():
        for name, p in model.module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    rel, logit, probs, grads = token_relevance(model, x, target)
    absorbed = absorbed_by_softmax(probs, grads)
    torch.testing.assert_close(rel.sum((1, 2)) + absorbed, logit, rtol=1e-4, atol=1e-4)
    assert (absorbed.abs() > 1e-3 * logit.abs()).all()  # the softmax's share is real on these inputs


# ---------------------------------------------------------------------------- LRP by the paper's equations


def eps_linear(x, weight, bias, r):
    """ε-rule (ε → 0), Eq. 3: R_i = Σ_j x_i w_ji / z_j · R_j."""
    z = x @ weight.T + (bias if bias is not None else 0)
    return torch.einsum("...i,ji,...j->...i", x, weight, r / z)


def layer_norm_rule(x, norm, r):
    """Identity rule through the division by σ (AttnLRP §3.3.2); ε-rule on the centring and the affine map."""
    c = x - x.mean(-1, keepdim=True)
    sigma = (c.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()
    y = c / sigma * norm.weight + norm.bias
    r_c = c * norm.weight / sigma / y * r
    n = x.shape[-1]
    centring = torch.eye(n, dtype=x.dtype) - 1.0 / n  # c = x @ centringᵀ
    return torch.einsum("...i,ji,...j->...i", x, centring, r_c / c)


def softmax_rule(s, a, r):
    """Prop. 3.1: R_i = s_i (R_i^out − a_i Σ_j R_j^out), s the softmax's input, a its output."""
    return s * (r - a * r.sum(-1, keepdim=True))


def product_rule(p, q, out, r, equation):
    """The uniform rule (Eq. 7) on a bilinear product: each term's relevance p·q/out·R split 0.5/0.5."""
    terms = torch.einsum(equation, p, q, r / out)
    return terms


def explicit_attnlrp(net: VisionTransformer, x, c):
    """AttnLRP of logit c for a one-block torchvision ViT, layer by layer with explicit divisions:
    (relevance of the tokens entering the block, the logit)."""
    block = net.encoder.layers[0]
    mha = block.self_attention
    t = net._process_input(x)
    z0 = torch.cat([net.class_token.expand(x.shape[0], -1, -1), t], 1) + net.encoder.pos_embedding
    b, n, d = z0.shape
    h = mha.num_heads
    hd = d // h
    # forward
    l1 = block.ln_1(z0)
    qkv = l1 @ mha.in_proj_weight.T + mha.in_proj_bias
    q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(b, n, h, hd).transpose(1, 2) for i in range(3))
    qs = q * hd ** -0.5
    s = qs @ k.transpose(-2, -1)
    a = s.softmax(-1)
    o = a @ v
    o_cat = o.transpose(1, 2).reshape(b, n, d)
    att = mha.out_proj(o_cat)
    z1 = z0 + att
    l2 = block.ln_2(z1)
    u = block.mlp[0](l2)
    g = block.mlp[1](u)
    m = block.mlp[3](g)
    z2 = z1 + m
    f = net.encoder.ln(z2)
    logits = net.heads.head(f[:, 0])
    # backward, rule by rule
    r_logits = torch.zeros_like(logits)
    r_logits[:, c] = logits[:, c]
    r_f = torch.zeros_like(f)
    r_f[:, 0] = eps_linear(f[:, 0], net.heads.head.weight, net.heads.head.bias, r_logits)
    r_z2 = layer_norm_rule(z2, net.encoder.ln, r_f)
    r_z1, r_m = z1 / z2 * r_z2, m / z2 * r_z2  # residual sum: ε-rule
    r_g = eps_linear(g, block.mlp[3].weight, block.mlp[3].bias, r_m)
    r_u = r_g  # GELU: identity rule (Eq. 9)
    r_l2 = eps_linear(l2, block.mlp[0].weight, block.mlp[0].bias, r_u)
    r_z1 = r_z1 + layer_norm_rule(z1, block.ln_2, r_l2)
    r_z0, r_att = z0 / z1 * r_z1, att / z1 * r_z1
    r_o = eps_linear(o_cat, mha.out_proj.weight, mha.out_proj.bias, r_att).reshape(b, n, h, hd).transpose(1, 2)
    r_a = 0.5 * product_rule(a, v, o, r_o, "bhij,bhjk,bhik->bhij")
    r_v = 0.5 * product_rule(a, v, o, r_o, "bhij,bhjk,bhik->bhjk")
    r_s = softmax_rule(s, a, r_a)
    r_q = 0.5 * product_rule(qs, k, s, r_s, "bhid,bhjd,bhij->bhid")
    r_k = 0.5 * product_rule(qs, k, s, r_s, "bhid,bhjd,bhij->bhjd")
    r_qkv = torch.cat([r.transpose(1, 2).reshape(b, n, d) for r in (r_q, r_k, r_v)], -1)
    r_l1 = eps_linear(l1, mha.in_proj_weight, mha.in_proj_bias, r_qkv)
    r_z0 = r_z0 + layer_norm_rule(z0, block.ln_1, r_l1)
    return r_z0, logits[:, c]


def test_one_block_transformer_matches_lrp_written_out_rule_by_rule():
    torch.manual_seed(3)
    net = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=12,
                            num_classes=3).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * (0.6 if p.dim() > 1 else 0.3))
    model = xb.ModelAdapter.wrap(net, input_size=16)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    want, want_logit = explicit_attnlrp(net, x, 1)
    got, logit, _, _ = token_relevance(model, x, torch.tensor([1, 1]), torch.float64)
    torch.testing.assert_close(logit, want_logit)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_attnlrp_map_is_the_pixel_relevance_and_leaves_the_model_as_it_was():
    model, x, target = timm_vit("registers"), images(2), torch.tensor([1, 2])
    forwards = {m: dict(m.__dict__) for m in model.module.modules()}
    maps = xb.explain(model, x, target, "attnlrp")
    before = model.counter.snapshot()
    attr = xb.explain(model, x, target, "attnlrp", reduce="abs_sum")
    assert model.counter.since(before) == {"forward_images": 2, "backward_images": 2, "forward_calls": 1,
                                           "backward_calls": 1}
    assert maps.shape == (2, 64, 64) and torch.isfinite(maps).all() and attr.amin() >= 0
    assert {m: dict(m.__dict__) for m in model.module.modules()}.keys() == forwards.keys()
    assert all("forward" not in m.__dict__ for m in model.module.modules())
    saliency = xb.explain(model, x, target, "inputxgrad")  # the plain gradient × input differs
    assert (saliency - maps).abs().amax() > 0.1 * maps.abs().amax()


@pytest.mark.parametrize("name", ["lrp", "clrp", "relevancecam", "cfcam"])
def test_the_lrp_family_refuses_vision_transformers_with_the_reason(name):
    """Their Zennit composites have no rules for attention, LayerNorm and GELU; the CAM-type ones are
    given the patch embedding as their layer (which outputs a (B,K,h,w) map) to reach the check."""
    model, x = torchvision_vit(layers=1), images(1)
    params = {"layer": "conv_proj"} if name in ("relevancecam", "cfcam") else {}
    with pytest.raises(ModelError, match="not for self-attention, LayerNorm and GELU.*use attnlrp"):
        xb.explain(model, x, 0, name, **params)
    assert "use attnlrp" in unmet_needs(EXPLAINERS.get(name).obj, model)  # `xai list explainers --model`
    assert unmet_needs(EXPLAINERS.get("lrp").obj, xb.load_model("testnet:tiny")) is None
