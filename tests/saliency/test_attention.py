"""Attention explainers against literal transcriptions of their reference code (jacobgil/vit-explain's
rollout, hila-chefer/Transformer-MM-Explainability's ViT method, LeGrad's algorithm and torchcam's
LeGrad) on random-weight torchvision and timm ViTs; inputs where each method's siblings differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from attention_vits import images, timm_vit, torchvision_vit
from torch import nn

import xaibench as xb
from xaibench.errors import ModelError
from xaibench.saliency import EXPLAINERS
from xaibench.saliency.base import unmet_needs

MODELS = {"torchvision": lambda: torchvision_vit(), "timm_registers": lambda: timm_vit("registers"),
          "timm_deit": lambda: timm_vit("deit")}
PREFIX = {"torchvision": 1, "timm_registers": 3, "timm_deit": 2}
GRID = 8


class ReferenceCapture:
    """The test's own, independent way to see attention (not xaibench's): torchvision — hooks that ask
    nn.MultiheadAttention for per-head weights and replay A·V through them (torchcam's way) so they are
    in the graph; timm — fused_attn off and attn_drop's output (Chefer's ViT: save_attention_map),
    gradients by tensor hooks (save_attn_gradients)."""

    def __init__(self, net: nn.Module):
        self.attn: list[torch.Tensor] = []
        self.handles = []
        self.net = net
        for m in net.modules():
            if isinstance(m, nn.MultiheadAttention):
                self.handles.append(m.register_forward_pre_hook(self.pre, with_kwargs=True))
                self.handles.append(m.register_forward_hook(self.replay, with_kwargs=True))
            elif hasattr(m, "fused_attn") and hasattr(m, "attn_drop"):
                m.fused_attn = False
                self.handles.append(m.attn_drop.register_forward_hook(lambda mod, i, o: self.attn.append(o)))

    @staticmethod
    def pre(mod, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def replay(self, mod, args, kwargs, out):
        a, x = out[1], args[2]
        e = mod.embed_dim
        v = F.linear(x, mod.in_proj_weight[2 * e:], mod.in_proj_bias[2 * e:])
        v = v.view(x.shape[0], x.shape[1], mod.num_heads, -1).transpose(1, 2)
        self.attn.append(a)
        return mod.out_proj((a @ v).transpose(1, 2).reshape(x.shape)), None

    def close(self):
        for h in self.handles:
            h.remove()
        for m in self.net.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = True


def reference_attention(model, x):
    net = model.module.eval()
    cap = ReferenceCapture(net)
    try:
        with torch.no_grad():
            net(x)
    finally:
        cap.close()
    return cap.attn


def jacobgil_rollout(attentions, discard_ratio, head_fusion, prefix, residual=True):
    """jacobgil/vit-explain vit_rollout.rollout, transcribed for one image; one fix: the rows are
    renormalized (`a.sum(dim=-1, keepdim=True)`; the original's missing keepdim divides columns by row
    sums), and the final `mask / np.max(mask)` is left out (the map is the rollout itself)."""
    result = torch.eye(attentions[0].size(-1))
    with torch.no_grad():
        for attention in attentions:
            if head_fusion == "mean":
                attention_heads_fused = attention.mean(axis=1)
            elif head_fusion == "max":
                attention_heads_fused = attention.max(axis=1)[0]
            elif head_fusion == "min":
                attention_heads_fused = attention.min(axis=1)[0]
            flat = attention_heads_fused.view(attention_heads_fused.size(0), -1)
            _, indices = flat.topk(int(flat.size(-1) * discard_ratio), -1, False)
            indices = indices[indices != 0]
            flat[0, indices] = 0
            if residual:
                eye = torch.eye(attention_heads_fused.size(-1))
                a = (attention_heads_fused + 1.0 * eye) / 2
                a = a / a.sum(dim=-1, keepdim=True)
            else:
                a = attention_heads_fused
            result = torch.matmul(a, result)
    mask = result[0, 0, prefix:]
    return mask.reshape(GRID, GRID).numpy()


def up(grids):
    return F.interpolate(torch.as_tensor(np.asarray(grids)).float().unsqueeze(1), size=(64, 64),
                         mode="bilinear", align_corners=False).squeeze(1)


@pytest.mark.parametrize("arch", list(MODELS))
@pytest.mark.parametrize(("fusion", "discard"), [("mean", 0.0), ("max", 0.5), ("min", 0.9)])
def test_rollout_matches_jacobgil(arch, fusion, discard):
    model, x = MODELS[arch](), images(2)
    attn = reference_attention(model, x)
    want = up([jacobgil_rollout([a[i:i + 1].clone() for a in attn], discard, fusion, PREFIX[arch]) for i in range(2)])
    got = xb.explain(model, x, torch.tensor([0, 1]), "attention_rollout", head_fusion=fusion, discard_ratio=discard)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    # the siblings differ on these inputs: another fusion, no residual identity, the wrong prefix
    other = {"mean": "max", "max": "min", "min": "mean"}[fusion]
    sibling = up([jacobgil_rollout([a[i:i + 1].clone() for a in attn], discard, other, PREFIX[arch]) for i in range(2)])
    no_residual = up([jacobgil_rollout([a[i:i + 1].clone() for a in attn], discard, fusion, PREFIX[arch], False)
                      for i in range(2)])
    for wrong in (sibling, no_residual):
        assert (wrong - want).abs().amax() > 0.05 * want.abs().amax()
    raw = xb.explain(model, x, torch.tensor([0, 1]), "raw_attention")
    torch.testing.assert_close(raw, up([attn[-1][i].mean(0)[0, PREFIX[arch]:].reshape(GRID, GRID) for i in range(2)]))


def chefer_generate_relevance(model, image, index, prefix):
    """hila-chefer/Transformer-MM-Explainability, ViT (Transformer_MM_explainability_ViT.ipynb):
    generate_relevance with avg_heads and apply_self_attention_rules, transcribed for one image."""
    def avg_heads(cam, grad):
        cam = cam.reshape(-1, cam.shape[-2], cam.shape[-1])
        grad = grad.reshape(-1, grad.shape[-2], grad.shape[-1])
        cam = grad * cam
        cam = cam.clamp(min=0).mean(dim=0)
        return cam

    def apply_self_attention_rules(R_ss, cam_ss):
        return torch.matmul(cam_ss, R_ss)

    net = model.module.eval()
    cap = ReferenceCapture(net)
    grads: dict[int, torch.Tensor] = {}
    try:
        image = image.clone().requires_grad_(True)
        output = net(image)
        for i, a in enumerate(cap.attn):
            a.register_hook(lambda g, i=i: grads.__setitem__(i, g))
    finally:
        cap.close()
    one_hot = np.zeros((1, output.size()[-1]), dtype=np.float32)
    one_hot[0, index] = 1
    one_hot = torch.from_numpy(one_hot).requires_grad_(True)
    one_hot = torch.sum(one_hot * output)
    net.zero_grad()
    one_hot.backward(retain_graph=True)
    num_tokens = cap.attn[0].shape[-1]
    R = torch.eye(num_tokens, num_tokens)
    for i in range(len(cap.attn)):
        cam = avg_heads(cap.attn[i].detach(), grads[i])
        R += apply_self_attention_rules(R, cam)
    return R[0, prefix:].reshape(GRID, GRID).detach()


@pytest.mark.parametrize("arch", list(MODELS))
def test_gradient_rollout_matches_chefer(arch):
    model, x, target = MODELS[arch](), images(2), torch.tensor([2, 4])
    want = up(torch.stack([chefer_generate_relevance(model, x[i:i + 1], int(target[i]), PREFIX[arch]) for i in range(2)]))
    got = xb.explain(model, x, target, "attention_gradient_rollout")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    other_class = up(torch.stack([chefer_generate_relevance(model, x[i:i + 1], 5, PREFIX[arch]) for i in range(2)]))
    rollout = xb.explain(model, x, target, "attention_rollout")
    for wrong in (other_class, rollout):  # class-sensitive; not the plain rollout
        assert pearson(wrong, got).min() < 0.95


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_legrad_matches_torchcam_on_torchvision_vit():
    from torchcam.methods import LeGrad

    model, x, target = torchvision_vit(layers=4), images(3), torch.tensor([0, 2, 5])
    net = model.module.eval()
    for blocks in (0, 2):
        layers = list(net.encoder.layers)[-blocks:] if blocks else list(net.encoder.layers)
        with LeGrad(net, layers) as extractor, torch.enable_grad():
            scores = net(x)
            ref = extractor(target.tolist(), scores)[0]
        got = xb.explain(model, x, target, "legrad", blocks=blocks)
        assert pearson(got, up(ref)).min() >= 0.99
        torch.testing.assert_close(got.amax((1, 2)), torch.ones(3))  # min-max normalized, as the paper
    other = xb.explain(model, x, target, "legrad", blocks=1)
    assert pearson(other, got).min() < 0.95  # the block count matters on these inputs


def legrad_transcription(model, x, target, prefix):
    """LeGrad (Bousselham et al. 2024, Alg. 1; WalBouss/LeGrad's compute_legrad): for every block l,
    s^l = head(norm(mean_tokens(z^l)))_c; grad = ∂s^l/∂A^l by its own backward; ReLU, mean over
    heads and queries, prefix columns dropped, upsampled; summed over blocks; min-max."""
    net = model.module.eval()
    cap = ReferenceCapture(net)
    tokens = []
    blocks = list(net.blocks)
    handles = [b.register_forward_hook(lambda m, i, o: tokens.append(o)) for b in blocks]
    try:
        with torch.enable_grad():
            net(x.clone().requires_grad_(True))
    finally:
        cap.close()
        for h in handles:
            h.remove()
    total = 0
    for z, attn in zip(tokens, cap.attn):
        feat = net.norm(z.mean(1, keepdim=True)).expand_as(z)
        s = net.forward_head(feat).gather(1, target.view(-1, 1)).sum()
        grad = torch.autograd.grad(s, attn, retain_graph=True)[0].clamp(min=0)
        rel = grad.mean(1).mean(1)[:, prefix:].reshape(-1, 1, GRID, GRID)
        total = total + F.interpolate(rel, size=(64, 64), mode="bilinear", align_corners=False)
    total = total.squeeze(1)
    lo, hi = total.amin((1, 2), keepdim=True), total.amax((1, 2), keepdim=True)
    return ((total - lo) / (hi - lo)).detach()


@pytest.mark.parametrize("arch", ["timm_registers", "timm_deit"])
def test_legrad_matches_the_transcription_on_timm(arch):
    model, x, target = MODELS[arch](), images(2), torch.tensor([1, 3])
    want = legrad_transcription(model, x, target, PREFIX[arch])
    got = xb.explain(model, x, target, "legrad")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert pearson(xb.explain(model, x, target, "attention_gradient_rollout"), got).min() < 0.95


ATTENTION_EXPLAINERS = ["raw_attention", "attention_rollout", "attention_gradient_rollout", "legrad", "attnlrp"]


def test_attention_explainers_on_a_cnn_raise_and_are_marked_not_applicable():
    cnn = xb.load_model("testnet:tiny")
    vit = torchvision_vit(layers=1)
    for name in ATTENTION_EXPLAINERS:
        with pytest.raises(ModelError, match="needs a vision transformer"):
            xb.explain(cnn, torch.randn(1, 3, 32, 32), 0, name)
        assert "vision transformer" in unmet_needs(EXPLAINERS.get(name).obj, cnn)
        assert unmet_needs(EXPLAINERS.get(name).obj, vit) is None


def test_a_vit_without_class_token_is_refused_by_class_token_methods():
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    net = TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=3,
                  class_token=False, global_pool="avg")
    model = xb.ModelAdapter.wrap(net, input_size=32)
    with pytest.raises(ModelError, match="no class token"):
        xb.explain(model, torch.randn(1, 3, 32, 32), 0, "attention_rollout")
    assert xb.explain(model, torch.randn(1, 3, 32, 32), 0, "legrad").shape == (1, 32, 32)  # no class row needed


def module_state(net: nn.Module) -> dict:
    return {
        "modes": [m.training for m in net.modules()],
        "flags": [p.requires_grad for p in net.parameters()],
        "grads": [p.grad for p in net.parameters()],
        "values": [p.detach().clone() for p in net.parameters()],
        "hooks": [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in net.modules()],
        "own": [{k: v for k, v in m.__dict__.items() if k in ("forward", "fused_attn")} for m in net.modules()],
    }


def assert_same_state(before: dict, after: dict) -> None:
    for key in ("modes", "flags", "hooks", "own"):
        assert after[key] == before[key], key
    assert all(g is None for g in after["grads"])
    assert all(torch.equal(a, b) for a, b in zip(after["values"], before["values"]))


@pytest.mark.parametrize("arch", ["torchvision", "timm_deit"])
def test_capture_and_explainers_leave_the_module_as_it_was_also_on_error(arch):
    from xaibench.models.attention import attention_capture

    model = MODELS[arch]()
    net = model.module.train()
    list(net.children())[0].requires_grad_(False)  # partially frozen, in train mode
    before = module_state(net)
    with pytest.raises(RuntimeError, match="boom"), attention_capture(net, leaves="every", tokens=True):
        assert [m.__dict__.get("fused_attn", False) for m in net.modules()] == [False] * len(before["modes"])
        raise RuntimeError("boom")
    assert_same_state(before, module_state(net))
    x, target = images(2), torch.tensor([0, 1])
    for name in ATTENTION_EXPLAINERS:
        maps = xb.explain(model, x, target, name)
        assert maps.shape == (2, 64, 64) and torch.isfinite(maps).all(), name
        assert_same_state(before, module_state(net))


@pytest.mark.parametrize("arch", list(MODELS))
def test_the_captured_forward_computes_the_same_logits(arch):
    """The explicit softmax replaces PyTorch's / timm's fused attention without changing the function."""
    from xaibench.models.attention import attention_capture

    model, x = MODELS[arch](), images(2)
    net = model.module.eval()
    with torch.no_grad():
        want = net(x)
        with attention_capture(net) as rec:
            got = net(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert len(rec.probs) == 3 and rec.probs[0].shape == (2, 4, 64 + PREFIX[arch], 64 + PREFIX[arch])
    torch.testing.assert_close(rec.probs[0].sum(-1), torch.ones(2, 4, 64 + PREFIX[arch]))
