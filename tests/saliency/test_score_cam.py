"""Score-CAM, SS-CAM, Ablation-CAM and Smooth Grad-CAM++ against pytorch-grad-cam and torchcam
as oracles (same random-weight model, layer, images, targets), exact skipping, batch independence."""

import math

import pytest
import torch
from cam_models import grad_module, head_net, images, module_named, pearson, sharp_tiny, tiny, top1
from pytorch_grad_cam import AblationCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchcam.methods import SSCAM, SmoothGradCAMpp

from xaibench.errors import ConfigError
from xaibench.saliency import EXPLAINERS
from xaibench.tensorops import upsample

SIZE = 32


def grad_cam_reference(cls, m, layer, x, target, **kw):
    mod = grad_module(m)
    with cls(mod, [module_named(mod, layer)], **kw) as ref:
        ref.batch_size = 64
        return torch.from_numpy(ref(x, [ClassifierOutputTarget(int(t)) for t in target]))


class FixedNoise:
    """Serves consecutive slices of one precomputed noise tensor, to both implementations."""

    def __init__(self, noise):
        self.flat, self.pos = noise.flatten(0, -3), 0

    def take(self, shape):
        n = math.prod(shape[:-2])
        out = self.flat[self.pos:self.pos + n]
        self.pos += n
        return out.reshape(shape)


def sscam_with_noise(m, x, target, noise, **params):
    """Our SS-CAM fed the given (samples, K, H, W) noise, one draw per sample for all images."""
    fixed = FixedNoise(noise)
    explainer = EXPLAINERS.build("sscam", num_samples=noise.shape[0], **params)
    explainer.noise = lambda draws, shape, gen, device: fixed.take((draws, *shape))
    maps = explainer(m, x, target)
    assert fixed.pos == noise[..., 0, 0].numel()
    return maps


def torchcam_sscam(m, x, target, noise, std):
    """torchcam's SS-CAM fed the same noise (it draws one per sample and image)."""
    samples, b = noise.shape[0], x.shape[0]
    fixed = FixedNoise(noise[:, None].expand(samples, b, *noise.shape[1:]))
    mod = grad_module(m)
    with SSCAM(mod, "features", batch_size=256, num_samples=samples, std=std, input_shape=tuple(x.shape[1:])) as cam:
        cam._distrib = type("D", (), {"sample": staticmethod(lambda size: fixed.take(tuple(size)))})()
        with torch.no_grad():
            mod(x)
        return upsample(cam(class_idx=target.tolist())[0], tuple(x.shape[-2:]))


def sscam_noise(std: float = 2.0, samples: int = 2):
    return torch.randn(samples, 16, SIZE, SIZE, generator=torch.Generator().manual_seed(3)) * std


def test_scorecam_agrees_with_pytorch_grad_cam_and_skips_constant_channels():
    m, x = sharp_tiny(), images(2, size=SIZE)
    target = top1(m, x)
    explainer = EXPLAINERS.build("scorecam", chunk_size=100)
    before = m.counter.snapshot()
    ours = explainer(m, x, target)
    passes = m.counter.since(before)["forward_images"]
    skipped = explainer.diagnostics["skipped_channels"]
    with torch.no_grad(), m.capture("features") as cap:
        m(x)
    acts = cap.activation
    const = (acts.amax((2, 3)) == acts.amin((2, 3))).sum(1).float()
    torch.testing.assert_close(skipped, const)
    assert skipped.sum() > 0  # channels 12-15 are all zero by construction
    assert passes == 2 + 1 + 2 * 16 - int(skipped.sum())  # clean + zero image + non-constant masks
    # pytorch-grad-cam normalizes masks upsampled with align_corners=True; ours (the paper's
    # bilinear up, align_corners=False) differs by interpolation only
    ref = grad_cam_reference(ScoreCAM, m, "features", x, target)
    assert (pearson(ours, ref) >= 0.99).all(), pearson(ours, ref)
    # the case tells Score-CAM from its noisy sibling: SS-CAM's map is another one here
    assert (pearson(sscam_with_noise(m, x, target, sscam_noise(), std=2.0), ref) <= 0.95).all()


def test_ablationcam_agrees_with_pytorch_grad_cam_and_runs_the_tail_only():
    m, x = tiny(), images(2, size=SIZE)
    target = top1(m, x)
    explainer = EXPLAINERS.build("ablationcam", chunk_size=128)
    ours = explainer(m, x, target)
    assert explainer.diagnostics["tail_only"].tolist() == [1.0, 1.0]
    ref = grad_cam_reference(AblationCAM, m, "features", x, target)
    assert (pearson(ours, ref) >= 0.99).all(), pearson(ours, ref)


def test_ablationcam_full_forward_path_gives_the_same_maps(monkeypatch):
    m, x = tiny(), images(2, size=SIZE)
    target = torch.tensor([1, 4])
    fast = EXPLAINERS.build("ablationcam")(m, x, target)
    import xaibench.saliency.score as score

    monkeypatch.setattr(score.torch, "allclose", lambda *a, **k: False)  # refuse the tail-only path
    slow = EXPLAINERS.build("ablationcam")(m, x, target)
    torch.testing.assert_close(slow, fast, rtol=1e-4, atol=1e-6)


def test_sscam_agrees_with_torchcam_given_the_same_noise():
    m, x = sharp_tiny(), images(2, size=SIZE)
    target = top1(m, x)
    noise = sscam_noise()  # std 2 (the paper's and torchcam's default), two samples
    ours = sscam_with_noise(m, x, target, noise, std=2.0, chunk_size=7)
    ref = torchcam_sscam(m, x, target, noise, std=2.0)
    # torchcam min-max normalizes A before upsampling, the paper after: interpolation-level difference
    assert (pearson(ours, ref) >= 0.999).all(), pearson(ours, ref)
    # at this noise level SS-CAM is not Score-CAM (plain Score-CAM agreed with torchcam's SS-CAM at 0.99998
    # on the untuned model, so the comparison above could not fail)
    score = EXPLAINERS.build("scorecam")(m, x, target)
    assert (pearson(score, ref) <= 0.95).all(), pearson(score, ref)


def test_smoothgradcampp_weights_agree_with_torchcam_for_one_sample_and_reduce_to_gradcampp():
    m, x = tiny(), images(2, size=SIZE)
    target = top1(m, x)
    noise = torch.randn(1, 1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)) * 0.3
    ours_noise = FixedNoise(noise)  # one draw per sample for all images; torchcam draws per image
    explainer = EXPLAINERS.build("smoothgradcampp", num_samples=1)
    explainer.noise = lambda draws, shape, gen, device: ours_noise.take((draws, *shape))
    with torch.no_grad(), m.capture("features") as cap:
        m(x)
    ours_w = explainer.model_weights(m, x, target, cap.activation, None, None).flatten(1)

    ref_noise = FixedNoise(noise.expand(1, 2, 3, SIZE, SIZE))
    mod = grad_module(m)
    with SmoothGradCAMpp(mod, "features", num_samples=1, std=0.3, input_shape=(3, SIZE, SIZE)) as cam:
        cam._distrib = type("D", (), {"sample": staticmethod(lambda size: ref_noise.take(tuple(size)))})()
        mod(x)
        ref_w = cam._get_weights(target.tolist(), None, eps=1e-30)[0]  # its eps 1e-8 ~ g² here
    # torchcam deviates from the paper three times: its ReLU(∂y/∂A) is the last noisy sample's gradient,
    # not the average D_1; its final map uses the last noisy sample's activations, not the clean
    # image's; its α sums g³·A over positions instead of ΣA·g³. With one sample and a gradient that is
    # the same at every position (this GAP + linear head) the weights coincide.
    torch.testing.assert_close(ours_w, ref_w, rtol=1e-4, atol=1e-5 * float(ref_w.abs().max()))
    # with no noise every sample is the clean image: Smooth Grad-CAM++ = Grad-CAM++ exactly
    smooth = EXPLAINERS.build("smoothgradcampp", std=0.0, num_samples=3, chunk_size=4)(m, x, target)
    torch.testing.assert_close(smooth, EXPLAINERS.build("gradcampp")(m, x, target), rtol=1e-4, atol=1e-6)


def test_smoothgradcampp_weights_by_hand_where_the_noise_matters():
    """Omeiza et al. 2019 written out: D_n = mean_s (∂y_c/∂A(x + z_s))^n by plain autograd,
    α = D_2 / (2 D_2 + Σ_ab A_ab D_3) with A the clean activations, w = Σ α ReLU(D_1). A ReLU after
    the layer makes ∂y/∂A depend on the input (on a plain GAP head the noise could not matter)."""
    m, x = head_net("relu_gap_linear", relu=False), images(2, size=SIZE)
    target = top1(m, x)
    noise = torch.randn(2, 1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6)) * 0.5
    fixed = FixedNoise(noise)
    explainer = EXPLAINERS.build("smoothgradcampp", num_samples=2, chunk_size=2)
    explainer.noise = lambda draws, shape, gen, device: fixed.take((draws, *shape))
    net = m.module
    acts = net.features(x).detach()
    ours = explainer.model_weights(m, x, target, acts, None, None)
    grads = []
    for z in noise[:, 0]:
        with torch.enable_grad():
            a = net.features(x + z).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(net.head(a).gather(1, target[:, None]).sum(), a)
        grads.append(g)
    d1, d2, d3 = (torch.stack(grads).pow(n).mean(0) for n in (1, 2, 3))
    alpha = torch.nan_to_num(d2 / (2 * d2 + acts.sum((2, 3), keepdim=True) * d3))
    expected = (alpha * d1.clamp_min(0)).sum((2, 3), keepdim=True)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    clean = EXPLAINERS.build("smoothgradcampp", num_samples=1, std=0.0).model_weights(m, x, target, acts, None, None)
    assert ((clean - expected).abs().amax((1, 2, 3)) > 0.05 * expected.abs().amax((1, 2, 3))).all()


@pytest.mark.parametrize("name,params", [("scorecam", {"chunk_size": 300}), ("ablationcam", {"chunk_size": 300}),
                                         ("sscam", {"num_samples": 1, "chunk_size": 300}),
                                         ("smoothgradcampp", {"chunk_size": 3})])
def test_batch_independence(name, params):
    m, x = tiny(), images(2, size=SIZE)
    target = torch.tensor([3, 8])
    both = EXPLAINERS.build(name, **params)(m, x, target)
    assert both.shape == (2, SIZE, SIZE) and both.abs().amax((1, 2)).min() > 0
    for i in range(2):  # a batch against its images one by one
        one = EXPLAINERS.build(name, **params)(m, x[i:i + 1], target[i:i + 1])
        torch.testing.assert_close(both[i:i + 1], one, rtol=1e-3, atol=1e-4 * float(both.abs().max()))


def test_bad_chunk_size_is_a_config_error():
    with pytest.raises(ConfigError, match="chunk_size"):
        EXPLAINERS.build("scorecam", chunk_size=0)  # at build time, before any model call


@pytest.mark.parametrize("name", ["sscam", "smoothgradcampp"])
def test_noisy_cams_do_not_depend_on_the_batch(name):
    """One noise draw per sample serves every image: an image's SS-CAM / Smooth Grad-CAM++ map is
    the same alone as inside a batch (the stress run found SS-CAM maps moving with the batch size)."""
    m, x = tiny(), images(3, size=SIZE - 1)  # 3·31² values per noise draw: not a multiple of 16
    target = top1(m, x)
    batch = EXPLAINERS.build(name, num_samples=3, chunk_size=5)(m, x, target)
    for i in range(3):
        alone = EXPLAINERS.build(name, num_samples=3, chunk_size=64)(m, x[i:i + 1], target[i:i + 1])
        torch.testing.assert_close(alone[0], batch[i], rtol=1e-5, atol=1e-6)
