"""CAMERAS against a literal per-image transcription of the authors' algorithm, its single-size
known answer (HiResCAM at input resolution) and batch independence."""

import torch
import torch.nn.functional as F
from cam_models import images, tiny

from xaibench.saliency import EXPLAINERS
from xaibench.saliency.cameras import cameras_sizes


def authors_cameras(m, image, c, resolutions):
    """Jalwana et al.'s `CAMERAS.run` for one image (torch only): bicubic input upsampling, kept
    resolutions (same class as the first, or the class of interest), fused features × gradients."""
    feats, grads, classes = {}, {}, {}
    for i, r in enumerate(resolutions):
        xr = image[None] if i == 0 else F.interpolate(image[None], r, mode="bicubic", align_corners=False)
        with torch.enable_grad(), m.capture("features") as cap:
            out = m(xr)
            (g,) = torch.autograd.grad(out[0, c], cap.activation)
        feats[r], grads[r], classes[r] = cap.activation.detach(), g, out.argmax(1).item()
    size = resolutions[0]
    kept = [r for r in resolutions if classes[r] in (classes[size], c)]
    fa = sum(F.interpolate(feats[r], size, mode="bilinear", align_corners=False) for r in kept) / len(kept)
    fg = sum(F.interpolate(grads[r], size, mode="bilinear", align_corners=False) for r in kept) / len(kept)
    return torch.relu((fa * fg).sum(1))[0], len(kept)


def test_sizes_follow_the_authors_range():
    assert [s[0] for s in cameras_sizes((224, 224), 100, 1000)] == list(range(224, 1000, 100))
    assert cameras_sizes((64, 64), 100, 50) == [(64, 64)]


def test_agrees_with_the_authors_algorithm_and_is_batch_independent():
    m, x = tiny(), images(3, size=32)
    target = torch.tensor([0, 4, 7])
    explainer = EXPLAINERS.build("cameras", step=16, max_size=90, channel_chunk=5, chunk_size=2)
    ours = explainer(m, x, target)
    valid = explainer.diagnostics["valid_scales"]
    for i in range(3):
        ref, kept = authors_cameras(m, x[i], int(target[i]), [32, 48, 64, 80])
        torch.testing.assert_close(ours[i], ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()) + 1e-12)
        assert valid[i] == kept
        one = explainer(m, x[i:i + 1], target[i:i + 1])
        torch.testing.assert_close(ours[i:i + 1], one, rtol=1e-5, atol=1e-7)


def test_single_size_is_hirescam_at_input_resolution():
    m, x = tiny(), images(2, size=32)
    target = torch.tensor([1, 2])
    single = EXPLAINERS.build("cameras", max_size=10)(m, x, target)
    with torch.enable_grad(), m.capture("features") as cap:
        (g,) = torch.autograd.grad(m(x).gather(1, target[:, None]).sum(), cap.activation)
    up = lambda t: F.interpolate(t, (32, 32), mode="bilinear", align_corners=False)  # noqa: E731
    torch.testing.assert_close(single, torch.relu((up(cap.activation) * up(g)).sum(1)))


def test_chunk_sizes_give_the_same_maps():
    m, x = tiny(), images(5, size=32)
    target = torch.tensor([0, 4, 7, 1, 2])
    runs = []
    for chunk in (1, 64):
        explainer = EXPLAINERS.build("cameras", step=16, max_size=90, chunk_size=chunk)
        runs.append((explainer(m, x, target), explainer.diagnostics["valid_scales"]))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-5, atol=1e-7)  # conv sums differ by batch size
    assert torch.equal(runs[0][1], runs[1][1])
