"""CAMs on token layers of vision transformers (torchvision ViT, with a convolutional stem too, timm ViT with register tokens, DeiT
with a distillation token, Swin channels-last) against pytorch-grad-cam given the right
`reshape_transform`, where Grad-CAM and its siblings differ; prefix tokens excluded; the auto layer;
Ablation-CAM's replaced tokens against a transcription; the layers that do not fit."""

import pytest
import torch
from cam_models import grad_module, images, module_named, pearson, top1
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from vit_models import channels_last_reshape, deit_distilled, swin, timm_vit, token_reshape, tv_vit, tv_vit_conv_stem

from xaibench.errors import LayerError
from xaibench.saliency import EXPLAINERS
from xaibench.tensorops import target_scores, upsample

ORACLES = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM,
           "hirescam": HiResCAM}
SIBLINGS = {"gradcam": ("xgradcam", "hirescam"), "xgradcam": ("gradcam", "hirescam"),
            "hirescam": ("gradcam", "xgradcam"), "gradcampp": ("layercam",), "layercam": ("gradcampp",)}
# model factory, the oracle's reshape_transform, the auto layer; Swin's oracle layer is a 7×7 block norm
# (its auto layer `norm` feeds a global average, where every gradient is the same and the siblings coincide)
CASES = {
    "torchvision_vit": (tv_vit, token_reshape(1, (12, 12)), "encoder.layers.encoder_layer_1.ln_1", None),
    "torchvision_vit_conv_stem": (tv_vit_conv_stem, token_reshape(1, (12, 12)), "encoder.layers.encoder_layer_1.ln_1",
                                  None),
    "timm_vit_registers": (lambda: timm_vit(4), token_reshape(5, (8, 8)), "blocks.1.norm1", None),
    "deit_distilled": (deit_distilled, token_reshape(2, (7, 7)), "blocks.1.norm1", None),
    "swin": (swin, channels_last_reshape, "norm", "layers.3.blocks.0.norm1"),
}


def reference(name, m, layer, x, target, reshape):
    mod = grad_module(m)
    with ORACLES[name](mod, [module_named(mod, layer)], reshape_transform=reshape) as ref:
        return torch.from_numpy(ref(x, [ClassifierOutputTarget(int(t)) for t in target]))


@pytest.mark.parametrize("case", list(CASES))
def test_auto_layer_is_the_last_blocks_first_norm_or_swins_last_norm(case):
    factory, _, auto, _ = CASES[case]
    assert factory()[0].resolve_layer("auto") == auto


@pytest.mark.parametrize("case", list(CASES))
def test_token_cams_agree_with_pytorch_grad_cam_and_not_with_the_siblings(case):
    factory, reshape, auto, oracle_layer = CASES[case]
    m, size, _ = factory()
    layer = oracle_layer or auto
    x = images(2, size=size)
    target = top1(m, x)
    refs = {name: reference(name, m, layer, x, target, reshape) for name in ORACLES}
    for name in ORACLES:
        ours = EXPLAINERS.build(name, layer=layer)(m, x, target)
        assert ours.shape == (2, size, size) and ours.dtype == torch.float32
        own = pearson(ours, refs[name]).min().item()
        assert own >= 0.99, (case, name, own)
        for sibling in SIBLINGS[name]:
            assert pearson(ours, refs[sibling]).max().item() <= 0.98, (case, name, sibling)


def test_swin_stage_outputs_agree_once_gradients_clear_the_oracles_epsilon():
    """At Swin's stage outputs (28×28 and 14×14, channels-last) Grad-CAM++ matches pytorch-grad-cam
    only when the gradients clear its ε = 1e-7 in α = g²/(2g² + ΣA·g³ + ε): with the default head
    the oracle computes mostly its ε (Pearson 0.07–0.73, while Grad-CAM agrees to 1e-9); with a 1000×
    larger head (the same maps for Grad-CAM, whose weights only scale) both compute the formula."""
    for gain, agrees in ((100.0, False), (1e5, True)):
        m, size, _ = swin(head_gain=gain)
        x = images(2, size=size)
        target = top1(m, x)
        for layer in ("layers.1", "layers.2"):
            ref = reference("gradcampp", m, layer, x, target, channels_last_reshape)
            ours = EXPLAINERS.build("gradcampp", layer=layer)(m, x, target)
            assert (pearson(ours, ref).min().item() >= 0.999) == agrees, (gain, layer)


def test_register_and_class_tokens_are_not_patches():
    # 1 class + 4 register tokens before the 8×8 patches: dropping only the class token (or guessing
    # the grid from √N) shifts every patch by 4 tokens, a different map
    m, size, layer = timm_vit(4)
    x = images(2, size=size)
    target = top1(m, x)
    ours = EXPLAINERS.build("gradcam", layer=layer)(m, x, target)
    shifted = reference("gradcam", m, layer, x, target,
                        lambda t: t[:, 1:65].reshape(t.shape[0], 8, 8, t.shape[2]).permute(0, 3, 1, 2))
    assert pearson(ours, shifted).max().item() < 0.9


def test_ablation_cam_puts_each_images_prefix_tokens_back():
    # transcription: zero patch-token channel k of the layer with a hook, one full forward per (image, channel)
    m, size, layer = deit_distilled()
    x = images(2, size=size)
    target = top1(m, x)
    ours = EXPLAINERS.build("ablationcam", layer=layer, chunk_size=16)(m, x, target)
    module = module_named(m.module, layer)
    with torch.no_grad():
        acts = {}
        handle = module.register_forward_hook(lambda mod, inp, out: acts.setdefault("a", out.clone()))
        y = target_scores(m(x), target)
        handle.remove()
        a = acts["a"]  # (B, 2 + 49, C): class and distillation tokens first
        weights = torch.zeros(2, a.shape[2])
        for k in range(a.shape[2]):
            def zero_k(mod, inp, out, k=k):
                out = out.clone()
                out[:, 2:, k] = 0
                return out
            handle = module.register_forward_hook(zero_k)
            weights[:, k] = (y - target_scores(m(x), target)) / y
            handle.remove()
        grid = a[:, 2:].transpose(1, 2).reshape(2, -1, 7, 7)
        expected = upsample(torch.relu((weights[:, :, None, None] * grid).sum(1, keepdim=True))[:, 0], (size, size))
    assert pearson(ours, expected).min().item() > 0.999


def test_layers_that_are_not_maps_raise_layer_errors():
    m, size, _ = timm_vit(4)
    x = images(1, size=size)
    with pytest.raises(LayerError, match="pooled head"):
        EXPLAINERS.build("gradcam", layer="head")(m, x, torch.tensor([0]))
    with pytest.raises(LayerError, match="8×8 patch grid"):
        m.layout("blocks.0", torch.zeros(1, 64 + 3, 32), (64, 64))  # 3 prefix tokens, the model declares 5
