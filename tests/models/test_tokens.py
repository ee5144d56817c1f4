"""Token layers seen as (B,C,h,w) maps: the grid from the patch embedding per input size (never √N),
channels-last told from NCHW, the caller's ViT untouched, the probes and `xai list` on token models."""

from __future__ import annotations

import pytest
import timm
import torch
from cam_models import grad_module, images, module_named, pearson, top1
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from test_untouched import assert_same, snapshot
from timm.models.vision_transformer import VisionTransformer
from vit_models import channels_last_reshape, sharpened, swin, timm_vit, token_reshape

import xaibench as xb
from xaibench.datasets.base import Batch
from xaibench.errors import LayerError
from xaibench.models.layers import select_layers
from xaibench.models.tokens import PatchEmbedding, output_layout
from xaibench.saliency import EXPLAINERS
from xaibench.saliency.base import unmet_needs

PATCH4 = PatchEmbedding("patch_embed.proj", (4, 4), (4, 4), (0, 0))  # 56×56 at 224 px; stages 28, 14, 7


class Declares(torch.nn.Module):
    output_fmt = "NHWC"


def test_channels_last_is_told_from_nchw_by_the_stage_grids():
    plain = torch.nn.Module()
    assert output_layout(plain, PATCH4, (2, 14, 14, 96), (224, 224)).kind == "channels_last"  # Swin stage 3
    assert output_layout(plain, PATCH4, (2, 96, 14, 14), (224, 224)) is None  # an NCHW map stays as it is
    assert output_layout(plain, PATCH4, (2, 96, 13, 13), (224, 224)) is None  # no grid: left alone
    # 14 channels on a 14×14 grid fits both readings: NCHW unless the model declares channels-last
    assert output_layout(plain, PATCH4, (2, 14, 14, 14), (224, 224)) is None
    assert output_layout(Declares(), PATCH4, (2, 14, 14, 14), (224, 224)).kind == "channels_last"
    assert output_layout(plain, None, (2, 14, 14, 96), (224, 224)) is None  # no patch embedding: a CNN
    with pytest.raises(LayerError, match="no patch embedding"):
        output_layout(plain, None, (2, 50, 32), (224, 224))
    assert output_layout(plain, PATCH4, (2, 49, 96), (224, 224)).grid == (7, 7)  # Swin tokens at a stage grid


def test_timm_convnext_channels_last_block_norm_agrees_with_pytorch_grad_cam():
    # ConvNeXt's block norm and MLP run channels-last inside an NCHW network
    torch.manual_seed(0)
    net = sharpened(timm.create_model("convnext_tiny", pretrained=False, depths=(1, 1, 1, 1), dims=(16, 32, 48, 64),
                                      num_classes=10), head_gain=30.0)
    m = xb.ModelAdapter.wrap(net, input_size=128, name="convnext")
    assert m.resolve_layer("auto") == "stages"  # a CNN: its auto layer is still the last conv block
    layer = "stages.2.blocks.0.norm"  # (B, 8, 8, 48)
    x = images(2, size=128)
    target = top1(m, x)
    mod = grad_module(m)
    with GradCAM(mod, [module_named(mod, layer)], reshape_transform=channels_last_reshape) as ref:
        want = torch.from_numpy(ref(x, [ClassifierOutputTarget(int(t)) for t in target]))
    assert pearson(EXPLAINERS.build("gradcam", layer=layer)(m, x, target), want).min().item() >= 0.99


def test_grid_follows_the_input_size_not_the_square_root_of_n():
    # a 64×96 input to a dynamic-size ViT: an 8×12 grid of 96 patches (√96 is no grid)
    torch.manual_seed(0)
    net = sharpened(VisionTransformer(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10,
                                      reg_tokens=2, dynamic_img_size=True))
    m = xb.ModelAdapter.wrap(net, input_size=64, name="dyn")
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    target = top1(m, x)
    mod = grad_module(m)
    with GradCAM(mod, [module_named(mod, "blocks.1.norm1")], reshape_transform=token_reshape(3, (8, 12))) as ref:
        want = torch.from_numpy(ref(x, [ClassifierOutputTarget(int(t)) for t in target]))
    ours = EXPLAINERS.build("gradcam")(m, x, target)
    assert ours.shape == (2, 64, 96) and pearson(ours, want).min().item() >= 0.99
    assert unmet_needs(EXPLAINERS.build("cameras"), m) is None  # takes other sizes: the multi-scale CAMs apply
    assert EXPLAINERS.build("cameras", max_size=100, step=32)(m, x[:, :, :, :64], target).shape == (2, 64, 64)


def test_a_convolutional_stem_is_the_patch_embedding_through_all_its_convolutions():
    # torchvision ViT's conv stem (conv_stem_configs): no conv has kernel = stride > 1, the grid is the
    # chain of its strided 3×3 convs and the final 1×1 conv — 96 px → 12×12, and 95 px → 12×12 too
    from vit_models import tv_vit_conv_stem

    from xaibench.models.tokens import patch_embedding

    m, size, layer = tv_vit_conv_stem()
    embed = patch_embedding(m.module)
    assert embed.name == "conv_proj.conv_bn_relu_0.0" and len(embed.more) == 3
    assert embed.grid(96, 96) == (12, 12) and embed.grid(95, 64) == (12, 8)
    assert PatchEmbedding("p", (8, 8), (8, 8), (0, 0)).grid(95, 64) == (11, 8)  # a patchify conv drops the rest


def test_what_does_not_apply_to_a_fixed_size_class_token_vit_says_why():
    m, _, _ = timm_vit(4)
    assert "only takes 64×64 inputs" in unmet_needs(EXPLAINERS.build("cameras"), m)
    assert "only takes 64×64 inputs" in unmet_needs(EXPLAINERS.build("msgcam"), m)
    assert "reads its class token" in unmet_needs(EXPLAINERS.build("cam"), m)
    for name in ("gradcam", "scorecam", "ablationcam", "smoothgradcampp", "guided_gradcam"):
        assert unmet_needs(EXPLAINERS.build(name), m) is None, name
    for name in ("relevancecam", "cfcam", "lrp", "clrp"):  # relevance through attention: attnlrp's rules, not these
        assert "use attnlrp" in unmet_needs(EXPLAINERS.build(name), m), name
    with pytest.raises(LayerError, match="only takes 64×64"):
        EXPLAINERS.build("cameras")(m, images(1, size=64), torch.tensor([0]))


def test_explaining_and_probing_a_vit_leave_it_untouched():
    net = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=4,
                            reg_tokens=1).train()
    net.patch_embed.requires_grad_(False)
    before = snapshot(net)
    m = xb.ModelAdapter.wrap(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=32)
    x = m.normalize(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    target = torch.tensor([0, 3])
    for name in ("gradcam", "ablationcam", "scorecam", "smoothgradcampp", "guided_gradcam", "attention_rollout",
                 "legrad", "attnlrp"):
        assert xb.explain(m, x, target, name).shape == (2, 32, 32)
        assert_same(before, snapshot(net))
    batch = Batch(m.denormalize(x), target, ["a", "b"], torch.arange(2), [None, None], None, [None, None])
    xb.probe(m, [batch], "feature_purity")
    assert_same(before, snapshot(net))
    out = xb.probe(m, [batch], "neuron_similarity", averages=["simple"], grid_classes=0, chunk_size=16)
    assert len(out["similarity"]) == 2 * 2 * 2 * 16  # 2 classes × 2 methods × 2 encoder blocks × 16 channels
    assert_same(before, snapshot(net))


def test_probe_layers_of_token_models_are_encoder_blocks_on_their_grids():
    m, _, _ = timm_vit(4)
    blocks = select_layers(m, "auto")
    assert [(b.name, b.channels, b.height, b.width) for b in blocks] == [("blocks.0", 32, 8, 8), ("blocks.1", 32, 8, 8)]
    assert [b.stage for b in blocks] == ["", "C1"]
    assert [(b.name, b.height) for b in select_layers(swin()[0], "stages")] == [
        ("layers.0", 56), ("layers.1", 28), ("layers.2", 14), ("layers.3", 7)]
    picked = select_layers(m, ["blocks.0.norm1"])[0]
    assert (picked.channels, picked.height, picked.width) == (32, 8, 8)


def test_zeroed_outputs_zero_a_token_layers_patch_channels_not_its_tokens():
    # pruning's `output` mode on a token layer: channel k of the patch map, prefix tokens kept
    from xaibench.models.edits import zeroed_outputs

    m, size, _ = timm_vit(4)
    x = images(2, size=size)

    def zero_patch_channel(mod, inp, out):
        out = out.clone()
        out[:, 5:, 3] = 0
        return out

    with torch.no_grad():
        handle = m.module.blocks[0].register_forward_hook(zero_patch_channel)
        want = m(x)
        handle.remove()
        with zeroed_outputs(m, "blocks.0", torch.tensor([3])):
            got = m(x)
        assert not torch.allclose(m(x), want)  # the zeroing matters
    torch.testing.assert_close(got, want)
