"""Deletion/insertion: closed forms on a region-mean model, NaN/constant maps, and the presets
against the RISE reference CausalMetric (re-implemented literally), torchcam and Quantus."""

import contextlib
import math
import unittest.mock
from functools import partial

import numpy as np
import pytest
import torch
from metric_models import documented_permutation, region_model, small_cnn
from scipy.ndimage import gaussian_filter

from xaibench.errors import ConfigError
from xaibench.metrics.base import METRICS
from xaibench.models.adapter import ModelAdapter

H = W = 16


def trapz01(values, counts, n):
    xs = np.asarray(counts, dtype=float) / n
    v = np.asarray(values, dtype=float)
    return float(((v[1:] + v[:-1]) / 2 * np.diff(xs)).sum())


def test_deletion_insertion_closed_form_region_first():
    model, region = region_model(H, W, (4, 12, 4, 12))  # 64 of 256 pixels
    x = torch.full((2, 3, H, W), 0.8)
    maps = torch.stack([region.float(), region.float() + 0.5])  # ranks the region first
    target = torch.zeros(2, dtype=torch.long)
    dele = METRICS.build("deletion", score="logit", steps=16)(model, x, maps, target)
    ins = METRICS.build("insertion", score="logit", steps=16, baseline="zeros")(model, x, maps, target)
    # score falls linearly from 0.8 to 0 over the first 64/256 of the x-axis: AUC = 0.8 * 0.25 / 2
    assert dele.curves.shape == (2, 17)
    assert torch.allclose(dele.values, torch.tensor([0.1, 0.1]), atol=1e-6)
    assert torch.allclose(ins.values, torch.tensor([0.8 - 0.1] * 2), atol=1e-6)
    assert torch.allclose(dele.curves[:, :5], torch.tensor([0.8, 0.6, 0.4, 0.2, 0.0]).expand(2, 5), atol=1e-6)


def test_deletion_uneven_steps_softmax_closed_form():
    model, region = region_model(H, W, (0, 8, 0, 8))
    x = torch.ones(1, 3, H, W)
    maps = region.float()[None]
    res = METRICS.build("deletion", steps=10)(model, x, maps, torch.zeros(1, dtype=torch.long))
    counts = [i * 256 // 10 for i in range(11)]
    expected = [1 / (1 + math.exp(-max(0.0, 1 - n / 64))) for n in counts]  # softmax of [s, 0]
    assert np.allclose(res.curves[0].numpy(), expected, atol=1e-6)
    assert res.values.item() == pytest.approx(trapz01(expected, counts, 256), abs=1e-6)


def test_reverse_ranking_is_worse_and_costs_steps_plus_one_forwards():
    model, region = region_model(H, W, (4, 12, 4, 12))
    x = torch.full((1, 3, H, W), 0.8)
    good, bad = region.float()[None], (~region).float()[None]
    t = torch.zeros(1, dtype=torch.long)
    metric = METRICS.build("deletion", score="logit", steps=16, chunk_size=5)
    before = model.counter.snapshot()
    d_good = metric(model, x, good, t).values
    assert model.counter.since(before)["forward_images"] == 17
    d_bad = metric(model, x, bad, t).values  # region deleted last: 0.8 for 3/4 of the axis
    assert d_bad.item() == pytest.approx(0.8 * 0.75 + 0.8 * 0.25 / 2, abs=1e-6)
    assert d_good.item() < d_bad.item()


@pytest.mark.parametrize("name", ["deletion", "insertion"])
@pytest.mark.parametrize("protocol", ["default", "rise", "torchcam", "quantus"])
def test_nan_maps_are_skipped_and_constant_maps_follow_the_permutation(name, protocol):
    """docs/metrics.md "Failed maps": a NaN/inf map is not scored (NaN value and curve, skipped, no
    forward spent on it); a constant map is read in its tie permutation's order, so the same seed
    gives the same curve. (Until issue 16 a NaN map was scored as the all-zero map.)"""
    model = ModelAdapter(small_cnn(), input_size=12)
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(4)).expand(3, 3, 12, 12)
    maps = torch.stack([torch.full((12, 12), float("nan")), torch.full((12, 12), 2.0), torch.zeros(12, 12)])
    maps[0, 0, 0] = float("inf")
    metric = METRICS.build(name, protocol=protocol, steps=8)
    before = model.counter.snapshot()
    res = metric(model, x, maps, torch.tensor([1, 1, 1]), seeds=torch.tensor([9, 9, 9]))
    passes = model.counter.since(before)["forward_images"]
    assert torch.isnan(res.values[0]) and torch.isnan(res.curves[0]).all() and res.skipped.tolist() == [True, False, False]
    assert torch.equal(res.curves[1], res.curves[2]) and res.values[1].item() == res.values[2].item()
    before = model.counter.snapshot()
    metric(model, x[1:], maps[1:], torch.tensor([1, 1]), seeds=torch.tensor([9, 9]))
    assert passes == model.counter.since(before)["forward_images"]  # the NaN map cost nothing
    other = metric(model, x[:1], maps[2:], torch.tensor([1]), seeds=torch.tensor([10]))
    # another image's seed: another order, but for the presets that order ties by pixel index
    assert torch.equal(other.curves[0], res.curves[2]) == (protocol in ("rise", "torchcam"))


def test_constant_map_curve_follows_the_documented_permutation():
    model, region = region_model(H, W, (0, 4, 0, W))  # the top rows: an index-order deletion would hit them first
    x = torch.ones(2, 3, H, W)
    res = METRICS.build("deletion", score="logit", steps=4)(model, x, torch.zeros(2, H, W), torch.zeros(2).long())
    for i in range(2):  # image i keyed by its position i (no runner seeds)
        perm = documented_permutation(H * W, i)
        counts = [n * H * W // 4 for n in range(5)]
        expected = [1 - region.flatten()[perm[:n]].sum().item() / region.sum().item() for n in counts]
        assert np.allclose(res.curves[i].numpy(), expected, atol=1e-6), i
    assert not torch.equal(res.curves[0], res.curves[1])  # one permutation per image
    assert 0.5 < res.curves[0, 1].item() < 0.95  # not the index order's 0


def test_bad_parameters():
    with pytest.raises(ConfigError, match="protocol"):
        METRICS.build("deletion", protocol="captum")
    with pytest.raises(ConfigError, match="steps"):
        METRICS.build("insertion", steps=0)


# ----------------------------------------------------------------------------- RISE reference
class CausalMetric:
    """The RISE reference `evaluation.CausalMetric.single_run` (eclique/RISE), with HW and the
    number of classes taken from the image instead of module constants, on CPU."""

    def __init__(self, model, mode, step, substrate_fn):
        assert mode in ["del", "ins"]
        self.model, self.mode, self.step, self.substrate_fn = model, mode, step, substrate_fn

    def single_run(self, img_tensor, explanation):
        HW = img_tensor.shape[-1] * img_tensor.shape[-2]
        pred = self.model(img_tensor)
        top, c = torch.max(pred, 1)
        c = c.cpu().numpy()[0]
        n_steps = (HW + self.step - 1) // self.step
        if self.mode == "del":
            start = img_tensor.clone()
            finish = self.substrate_fn(img_tensor)
        else:
            start = self.substrate_fn(img_tensor)
            finish = img_tensor.clone()
        scores = np.empty(n_steps + 1)
        salient_order = np.flip(np.argsort(explanation.reshape(-1, HW), axis=1), axis=-1)
        for i in range(n_steps + 1):
            pred = self.model(start)
            scores[i] = pred[0, c]
            if i < n_steps:
                coords = salient_order[:, self.step * i : self.step * (i + 1)]
                start.cpu().numpy().reshape(1, 3, HW)[0, :, coords] = finish.cpu().numpy().reshape(1, 3, HW)[0, :, coords]
        return (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)


def gkern(klen, nsig):
    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    k = gaussian_filter(inp, nsig)
    kern = np.zeros((3, 3, klen, klen))
    kern[0, 0] = k
    kern[1, 1] = k
    kern[2, 2] = k
    return torch.from_numpy(kern.astype("float32"))


@torch.no_grad()
def test_rise_preset_matches_reference_causal_metric():
    cnn = small_cnn()
    model = ModelAdapter(cnn, input_size=14)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 14, 14, generator=gen)
    maps = torch.rand(2, 14, 14, generator=gen)  # no ties
    steps = 10  # 196 pixels: 20 a step, 10 steps, the last one partial (16)
    softmax_model = torch.nn.Sequential(cnn, torch.nn.Softmax(dim=1))
    blur = partial(torch.nn.functional.conv2d, weight=gkern(11, 5), padding=11 // 2)
    for mode, name, substrate in [("del", "deletion", torch.zeros_like), ("ins", "insertion", blur)]:
        ref = CausalMetric(softmax_model, mode, math.ceil(196 / steps), substrate)
        expected = [ref.single_run(x[i : i + 1].clone(), maps[i].numpy()) for i in range(2)]
        target = torch.tensor([3, 3])  # ignored: the rise preset explains the top-1 class
        ours = METRICS.build(name, protocol="rise", steps=steps)(model, x, maps, target)
        assert np.allclose(ours.values.numpy(), expected, atol=1e-6), (name, ours.values, expected)


@torch.no_grad()
def test_rise_preset_takes_224_pixels_a_step_and_orders_ties_as_rise():
    """Issue 16: `protocol: rise` is RISE's CausalMetric(step=224): 224 *pixels* a step (5 steps at
    30×30, not 224 steps), and its salient order flip(argsort(S)), so a flat map (constant, or flat
    regions read as a stable sort) gives RISE's numbers, not a seeded random order."""
    cnn = small_cnn()
    model = ModelAdapter(cnn, input_size=30)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 3, 30, 30, generator=gen)
    maps = torch.zeros(3, 30, 30)  # image 0: constant; 1: flat regions; 2: no ties
    maps[1, 5:20, 3:25] = 0.5
    maps[1, 22:, :] = 0.25
    maps[2] = torch.rand(30, 30, generator=gen)
    softmax_model = torch.nn.Sequential(cnn, torch.nn.Softmax(dim=1))
    blur = partial(torch.nn.functional.conv2d, weight=gkern(11, 5), padding=11 // 2)
    stable_argsort = partial(np.argsort, kind="stable")  # numpy's default sort leaves partial ties unordered
    for mode, name, substrate in [("del", "deletion", torch.zeros_like), ("ins", "insertion", blur)]:
        ref = CausalMetric(softmax_model, mode, 224, substrate)
        expected = [ref.single_run(x[i : i + 1].clone(), maps[i].numpy()) for i in (0, 2)]
        with unittest.mock.patch.object(np, "argsort", stable_argsort):
            expected.insert(1, ref.single_run(x[1:2].clone(), maps[1].numpy()))
        ours = METRICS.build(name, protocol="rise")(model, x, maps, torch.zeros(3).long(), seeds=torch.tensor([1, 2, 3]))
        assert ours.curves.shape == (3, 6)  # ceil(900/224) = 5 steps + the start
        assert np.allclose(ours.values.numpy(), expected, atol=1e-6), (name, ours.values, expected)


@torch.no_grad()
def test_torchcam_preset_orders_ties_as_torchcam_on_flat_maps():
    """torchcam ranks with a stable descending argsort (ties: the lower pixel index first); a map
    with flat regions reproduces its deletion and insertion AUCs exactly."""
    from torchcam.metrics import DeletionInsertionMetric

    cnn = small_cnn()
    model = ModelAdapter(cnn, input_size=14)
    x = torch.randn(3, 3, 14, 14, generator=torch.Generator().manual_seed(8))
    maps = torch.zeros(3, 14, 14)
    maps[1, 2:9, 3:12] = 1.0
    maps[2, :7] = 0.3
    maps[2, 10:, 5:] = 0.6
    ref = DeletionInsertionMetric(FixedCams(cnn, maps), partial(torch.softmax, dim=-1), steps=20)
    ref.update(x)
    out = ref.summary()
    seeds = torch.tensor([4, 5, 6])
    dele = METRICS.build("deletion", protocol="torchcam")(model, x, maps, torch.zeros(3).long(), seeds=seeds)
    ins = METRICS.build("insertion", protocol="torchcam")(model, x, maps, torch.zeros(3).long(), seeds=seeds)
    assert dele.values.mean().item() == pytest.approx(out["deletion_auc"], abs=1e-6)
    assert ins.values.mean().item() == pytest.approx(out["insertion_auc"], abs=1e-6)


def test_pixels_per_step_and_steps_are_exclusive():
    with pytest.raises(ConfigError, match="not both"):
        METRICS.build("deletion", protocol="rise", steps=10, pixels_per_step=20)
    with pytest.raises(ConfigError, match="pixels_per_step applies"):
        METRICS.build("deletion", pixels_per_step=20)
    assert METRICS.build("deletion", protocol="rise", steps=10).resolved_protocol()["pixels_per_step"] is None


# ----------------------------------------------------------------------------- torchcam, Quantus
class FixedCams:
    """A stand-in CAM extractor for torchcam's metric: returns the given maps."""

    def __init__(self, model, maps):
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kw):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


@torch.no_grad()
def test_torchcam_preset_matches_torchcam_deletion_insertion():
    from torchcam.metrics import DeletionInsertionMetric

    cnn = small_cnn()
    model = ModelAdapter(cnn, input_size=14)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 14, 14, generator=gen)
    maps = torch.rand(3, 14, 14, generator=gen)
    for steps in (20, 7):
        ref = DeletionInsertionMetric(FixedCams(cnn, maps), partial(torch.softmax, dim=-1), steps=steps)
        ref.update(x)
        out = ref.summary()
        kw = dict(protocol="torchcam", steps=steps)
        dele = METRICS.build("deletion", **kw)(model, x, maps, torch.zeros(3).long()).values.mean().item()
        ins = METRICS.build("insertion", **kw)(model, x, maps, torch.zeros(3).long()).values.mean().item()
        assert dele == pytest.approx(out["deletion_auc"], abs=1e-6)
        assert ins == pytest.approx(out["insertion_auc"], abs=1e-6)


@pytest.mark.slow
def test_quantus_preset_matches_pixel_flipping():
    import quantus  # slow to import (over a minute on a loaded machine)

    cnn = small_cnn()
    model = ModelAdapter(cnn, input_size=12)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 12, 12, generator=gen)
    maps = torch.rand(3, 12, 12, generator=gen)
    y = torch.tensor([0, 2, 4])
    steps = 9  # 16 pixels (48 features) a step, which Quantus requires to divide H*W
    ref = quantus.PixelFlipping(features_in_step=48, perturb_baseline="black", disable_warnings=True)
    curves = np.asarray(ref(model=cnn, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(),
                            softmax=True, device="cpu"))
    ours = METRICS.build("deletion", protocol="quantus", steps=steps)(model, x, maps, y)
    assert ours.curves.shape == curves.shape == (3, 9)
    assert np.allclose(ours.curves.numpy(), curves, atol=1e-5)
    # Quantus' AUC is `np.trapz(curve, dx=1)` (quantus.helpers.utils.calculate_auc), which NumPy 2
    # removed (AttributeError there), so its formula is applied here by hand
    assert np.allclose(ours.values.numpy(), np.trapezoid(curves, dx=1, axis=1), atol=1e-5)


# ----------------------------------------------------------------------------- average drop / gain
def sig(v):
    return 1 / (1 + math.exp(-v))


def test_average_drop_closed_form_on_region_mean_model():
    model, region = region_model(H, W, (4, 12, 4, 12))
    x = torch.ones(1, 3, H, W)
    half = region.clone()
    half[8:] = False  # the map keeps half of the region: O's region mean is 0.5
    maps = half.float()[None] * 3 - 1  # min-max normalizes back to the 0/1 half mask
    t = torch.zeros(1, dtype=torch.long)
    res = METRICS.build("average_drop")(model, x, maps, t)
    y, o = sig(1.0), sig(0.5)
    assert res.values.item() == pytest.approx(100 * (y - o) / y, abs=1e-4)
    assert METRICS.build("increase_in_confidence")(model, x, maps, t).values.item() == 0
    assert METRICS.build("average_gain")(model, x, maps, t).values.item() == 0
    assert res.extras == {}  # each metric reports its own figure (no sub-scores with a wrong direction)
    with pytest.raises(ConfigError, match="average_drop: score 'logit' is not allowed"):  # (Y−O)/Y needs Y > 0
        METRICS.build("average_drop", score="logit")
    with pytest.raises(ConfigError, match="average_gain: score 'logit' is not allowed"):  # (O−Y)/(1−Y): a probability's
        METRICS.build("average_gain", score="logit")
    assert METRICS.build("increase_in_confidence", score="logit")(model, x, maps, t).values.item() == 0  # O > Y: any score
    # x = -1: masking raises the score from -1 to -0.5
    res = METRICS.build("average_gain")(model, -x, maps, t)
    y, o = sig(-1.0), sig(-0.5)
    assert res.values.item() == pytest.approx(100 * (o - y) / (1 - y), abs=1e-4)
    assert METRICS.build("average_drop")(model, -x, maps, t).values.item() == 0
    assert METRICS.build("increase_in_confidence")(model, -x, maps, t).values.item() == 100


def test_average_drop_masks_in_pixel_space():
    from metric_models import RegionMean

    region = torch.zeros(H, W, dtype=torch.bool)
    region[4:12, 4:12] = True
    model = ModelAdapter(RegionMean(region), mean=(0.5,) * 3, std=(0.5,) * 3)
    x = torch.ones(1, 3, H, W)  # pixel value 1
    maps = torch.zeros(1, H, W)
    maps[0, 4:8, 4:12] = 1.0  # half of the region kept
    t = torch.zeros(1, dtype=torch.long)
    # pixel space: the other half goes to black, input (0-0.5)/0.5 = -1, so the region mean is 0
    y, o = METRICS.build("increase_in_confidence", score="logit").scores(model, x, maps, t)
    assert y.item() == pytest.approx(1.0) and o.item() == pytest.approx(0.0, abs=1e-6)
    assert METRICS.build("average_drop")(model, x, maps, t).values.item() == pytest.approx(
        100 * (sig(1.0) - sig(0.0)) / sig(1.0), abs=1e-4)
    # input space (torchcam): the other half goes to input 0, region mean 0.5
    y, o = METRICS.build("increase_in_confidence", score="logit", masking="input").scores(model, x, maps, t)
    assert o.item() == pytest.approx(0.5)


@torch.no_grad()
def test_confidence_metrics_on_constant_maps_mask_everything_and_skip_nan_maps():
    """A constant (or all-zero) map has Ŝ = 0: O is the score of the black image (pixel masking) or of
    the mean-colour image (input masking). A NaN map is not scored (NaN, skipped)."""
    model = ModelAdapter(small_cnn(), input_size=12, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    x = torch.randn(3, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    maps = torch.stack([torch.zeros(12, 12), torch.full((12, 12), 2.0), torch.full((12, 12), float("nan"))])
    t = torch.tensor([0, 1, 0])
    y = model(x[:2]).softmax(1)[[0, 1], t[:2]].double()
    black = model(model.normalize(torch.zeros_like(x[:2]))).softmax(1)[[0, 1], t[:2]].double()
    grey = model(torch.zeros_like(x[:2])).softmax(1)[[0, 1], t[:2]].double()
    for masking, o in (("pixel", black), ("input", grey)):
        drop = METRICS.build("average_drop", masking=masking)(model, x, maps, t).values.double()
        torch.testing.assert_close(drop[:2], 100 * (y - o).clamp_min(0) / y, rtol=1e-5, atol=1e-5)
        gain = METRICS.build("average_gain", masking=masking)(model, x, maps, t).values.double()
        torch.testing.assert_close(gain[:2], 100 * (o - y).clamp_min(0) / (1 - y), rtol=1e-5, atol=1e-5)
        inc = METRICS.build("increase_in_confidence", masking=masking)(model, x, maps, t).values.double()
        torch.testing.assert_close(inc[:2], 100 * (o > y).double())
        assert torch.isnan(drop[2]) and torch.isnan(gain[2]) and torch.isnan(inc[2])


@torch.no_grad()
def test_average_drop_input_masking_matches_torchcam_classification_metric():
    from torchcam.metrics import ClassificationMetric

    cnn = small_cnn()
    model = ModelAdapter(cnn, input_size=14)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, 14, 14, generator=g)
    maps = torch.rand(6, 14, 14, generator=g)
    maps = (maps - maps.amin((1, 2), keepdim=True)) / (maps.amax((1, 2), keepdim=True) - maps.amin((1, 2), keepdim=True))
    ref = ClassificationMetric(FixedCams(cnn, maps), partial(torch.softmax, dim=-1))
    ref.update(x)  # torchcam explains the top-1 class
    out = ref.summary()
    top1 = cnn(x).argmax(1)
    res = METRICS.build("average_drop", masking="input")(model, x, maps, top1)
    assert res.values.mean().item() / 100 == pytest.approx(out["avg_drop"], abs=1e-5)
    inc = METRICS.build("increase_in_confidence", masking="input")(model, x, maps, top1)
    assert inc.values.mean().item() / 100 == pytest.approx(out["conf_increase"], abs=1e-6)
