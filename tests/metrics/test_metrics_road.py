"""ROAD: linear imputation exact on a ramp, equal to Quantus' noisy_linear_imputation (noise 0),
the MoRF/LeRF curves equal to a per-image, per-percentage re-computation, finite on bad maps."""

import zlib

import numpy as np
import pytest
import torch
from metric_models import documented_permutation, runner_seed, small_cnn

from xaibench.errors import ConfigError
from xaibench.metrics.base import METRICS
from xaibench.metrics.road import LAST_CURVES, linear_imputation, noisy_linear_imputation
from xaibench.models.adapter import ModelAdapter

g = torch.Generator().manual_seed(0)


def test_linear_ramp_is_reconstructed_exactly():
    h, w = 12, 14
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = torch.stack([0.3 * yy + 0.5 * xx + 0.1, -0.2 * yy + 0.05 * xx, xx - yy]).unsqueeze(0)
    remove = torch.rand(1, h, w, generator=g) < 0.6
    remove[:, 0] = remove[:, -1] = False  # the border's one-sided neighbourhood is not symmetric
    remove[:, :, 0] = remove[:, :, -1] = False
    remove[0, 3:9, 3:10] = True  # a large hole too
    out = linear_imputation(ramp, remove)
    assert torch.allclose(out, ramp, atol=1e-10)
    noisy = noisy_linear_imputation(ramp, remove, 0.5, [1])
    assert torch.equal(noisy[:, :, ~remove[0]], ramp[:, :, ~remove[0]])
    assert (noisy - ramp)[:, :, remove[0]].abs().min() > 0


@pytest.mark.slow
def test_imputation_equals_quantus():
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    x = torch.randn(3, 3, 10, 9, generator=g, dtype=torch.float64)
    remove = torch.rand(3, 10, 9, generator=g) < 0.5
    ours = linear_imputation(x, remove)
    for i in range(3):
        ref = quantus_imputation(x[i].numpy(), np.flatnonzero(remove[i].numpy().ravel()), noise=0.0)
        assert np.allclose(ours[i].numpy(), ref, atol=1e-10)


@torch.no_grad()
def test_road_curves_equal_per_image_recomputation():
    cnn = small_cnn()
    model = ModelAdapter(cnn, input_size=10)
    x = torch.randn(2, 3, 10, 10, generator=g)
    maps = torch.rand(2, 10, 10, generator=g)
    target = torch.tensor([1, 3])
    pcts = [10.0, 50.0, 90.0]
    res = METRICS.build("road_combined", percentages=pcts, noise=0.0, chunk_size=4)(model, x, maps, target)
    for order in ["morf", "lerf"]:
        expected = np.zeros((2, 3))
        for i in range(2):
            by_relevance = np.argsort(-maps[i].numpy().ravel())
            for j, p in enumerate(pcts):
                k = int(100 * p / 100)
                idx = by_relevance[:k] if order == "morf" else by_relevance[100 - k :]
                remove = torch.zeros(1, 100, dtype=torch.bool)
                remove[0, idx] = True  # one image at a time, through the imputer checked against Quantus
                imputed = linear_imputation(x[i : i + 1], remove.view(1, 10, 10))
                probs = cnn(imputed).softmax(1)
                expected[i, j] = probs[0, target[i]].item()
        assert np.allclose(res.extras[order].numpy(), expected.mean(1), atol=1e-5), order
        single = METRICS.build(f"road_{order}", percentages=pcts, noise=0.0)(model, x, maps, target)
        assert np.allclose(single.curves.numpy(), expected, atol=1e-5)
    assert torch.allclose(res.values, (res.extras["lerf"] - res.extras["morf"]) / 2, atol=1e-6)


def test_noise_of_an_image_is_its_own():
    """The noise of image n is N(0,1) from its seed, scaled by `noise`, on the removed pixels only."""
    x = torch.zeros(2, 3, 6, 6, dtype=torch.float64)
    remove = torch.zeros(2, 6, 6, dtype=torch.bool)
    remove[:, 2:4, 2:4] = True
    out = noisy_linear_imputation(x, remove, 0.5, [11, 12])
    for n, seed in enumerate([11, 12]):
        eps = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        torch.testing.assert_close(out[n], torch.where(remove[n], 0.5 * eps, 0.0))


@pytest.mark.parametrize("name", ["road_morf", "road_combined"])
def test_road_score_of_an_image_is_the_same_alone_and_in_a_batch(name):
    """Per-image seeds key both the tie-breaks and the imputation noise: an image's ROAD score does
    not depend on its position, its batch or `chunk_size` (it used to: one noise stream per call)."""
    model = ModelAdapter(small_cnn(), input_size=10)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(3, 3, 10, 10, generator=gen)
    maps = torch.rand(3, 10, 10, generator=gen).round(decimals=1)  # many ties
    target = torch.tensor([0, 1, 2])
    seeds = torch.tensor([runner_seed(0, f"img_{i}") for i in range(3)])
    params = dict(percentages=[20.0, 60.0], noise=1.0)
    batch = METRICS.build(name, chunk_size=3, **params)(model, x, maps, target, seeds=seeds)
    for i in range(3):
        alone = METRICS.build(name, chunk_size=1, **params)(model, x[i:i + 1], maps[i:i + 1], target[i:i + 1],
                                                           seeds=seeds[i:i + 1])
        torch.testing.assert_close(alone.curves[0], batch.curves[i], rtol=1e-5, atol=1e-6)
    # the noise matters at this level (so the equality above is not the noise-free one)
    quiet = METRICS.build(name, chunk_size=3, percentages=[20.0, 60.0], noise=0.0)(model, x, maps, target, seeds=seeds)
    morf = (lambda r: r.curves) if name == "road_morf" else (lambda r: r.extras["morf"])
    assert (morf(quiet) - morf(batch)).abs().max() > 5e-3
    # MoRF alone equals road_combined's MoRF: the noise of a job is keyed by (image, order, p)
    morf = METRICS.build("road_morf", **params)(model, x, maps, target, seeds=seeds)
    LAST_CURVES.clear()  # computed afresh, not reused from road_morf's call
    both = METRICS.build("road_combined", **params)(model, x, maps, target, seeds=seeds)
    torch.testing.assert_close(morf.values, both.extras["morf"])


def test_sibling_road_metrics_impute_each_job_once_and_notice_any_change():
    """road_combined after road_morf and road_lerf on the same inputs reuses their curves (no model
    pass, identical numbers); another map, a parameter edit through `.data` or other settings recompute."""
    model = ModelAdapter(small_cnn(), input_size=10)
    gen = torch.Generator().manual_seed(3)
    x, maps, target = torch.randn(2, 3, 10, 10, generator=gen), torch.rand(2, 10, 10, generator=gen), torch.tensor([0, 1])
    params = dict(percentages=[20.0, 60.0], noise=0.5)
    LAST_CURVES.clear()
    morf = METRICS.build("road_morf", **params)(model, x, maps, target)
    lerf = METRICS.build("road_lerf", **params)(model, x.clone(), maps.clone(), target)  # equal copies count
    before = model.counter.forward_images
    both = METRICS.build("road_combined", **params)(model, x, maps, target)
    assert model.counter.forward_images == before
    assert torch.equal(both.extras["morf"], morf.values) and torch.equal(both.extras["lerf"], lerf.values)

    def passes(call) -> int:
        start = model.counter.forward_images
        call()
        return model.counter.forward_images - start

    combined = METRICS.build("road_combined", **params)
    assert passes(lambda: combined(model, x, maps.flip(-1), target)) == 8  # 2 images × 2 orders × 2 p
    assert passes(lambda: combined(model, x, maps.flip(-1), target)) == 0
    with torch.no_grad():
        next(model.module.parameters()).data.mul_(2)
    assert passes(lambda: combined(model, x, maps.flip(-1), target)) == 8
    other = METRICS.build("road_combined", percentages=[20.0, 60.0], noise=0.25)
    assert passes(lambda: other(model, x, maps.flip(-1), target)) == 8


@pytest.mark.parametrize("name", ["road_morf", "road_lerf", "road_combined"])
def test_road_nan_map_is_not_scored(name):
    """docs/metrics.md "Failed maps": NaN value, curve and extras, skipped; the constant maps beside
    it are read in the permutation's order (until issue 16 a NaN map scored as the zero map)."""
    model = ModelAdapter(small_cnn(), input_size=8)
    x = torch.randn(1, 3, 8, 8, generator=g).expand(3, 3, 8, 8)
    maps = torch.stack([torch.full((8, 8), float("nan")), torch.zeros(8, 8), torch.ones(8, 8)])
    seeds = torch.tensor([5, 5, 5])  # the same image and seed three times: the same tie-breaks and noise
    res = METRICS.build(name, percentages=[30.0, 70.0])(model, x, maps, torch.tensor([0, 0, 0]), seeds=seeds)
    assert torch.isnan(res.values[0]) and torch.isnan(res.curves[0]).all() and res.skipped.tolist() == [True, False, False]
    assert all(torch.isnan(v[0]) for v in res.extras.values())
    assert res.values[1].item() == res.values[2].item()  # both constant maps: the permutation's order


@torch.no_grad()
def test_road_constant_map_removes_in_the_documented_order_with_the_documented_noise():
    model = ModelAdapter(small_cnn(), input_size=8)
    x = torch.randn(1, 3, 8, 8, generator=g)
    res = METRICS.build("road_morf", percentages=[30.0])(model, x, torch.zeros(1, 8, 8), torch.tensor([2]),
                                                         seeds=torch.tensor([5]))
    # docs/metrics.md: tie seed crc32("0:5") (metric seed 0, runner seed 5); MoRF at 30 % removes the
    # permutation's first int(64·0.3) = 19 pixels; noise N(0,1)·0.01 from crc32("<tie seed>:morf:30.0")
    remove = torch.zeros(64, dtype=torch.bool)
    remove[documented_permutation(64, 5)[:19]] = True
    remove = remove.view(1, 8, 8)
    noise_seed = zlib.crc32(f"{zlib.crc32(b'0:5')}:morf:30.0".encode())
    eps = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(noise_seed))
    imputed = linear_imputation(x, remove)
    imputed = torch.where(remove[:, None], imputed + 0.01 * eps, imputed)
    assert res.values.item() == pytest.approx(model(imputed).softmax(1)[0, 2].item(), abs=1e-6)


def test_road_bad_percentages():
    with pytest.raises(ConfigError, match="percentages"):
        METRICS.build("road_morf", percentages=[0.0, 100.0])


def grey_linear(side: int, classes: int = 5) -> torch.nn.Module:
    """A one-channel linear classifier whose top-1 class moves with the pixels (Quantus' ROAD ranks
    the attribution broadcast over the channels, so its indices are pixels only for one channel)."""
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(side * side, classes)).eval()


@torch.no_grad()
def test_road_accuracy_form_is_top1_agreement_over_1_to_99_percent():
    """`score: accuracy` (Rong et al. 2022's figures): 1 where the top-1 prediction on the imputed image
    is still the target, at p = 1, 3, …, 99 by default; equal to a per-job recomputation."""
    cnn = grey_linear(10)
    model = ModelAdapter(cnn, mean=(0.0,), std=(1.0,), input_size=10)
    x = torch.randn(4, 1, 10, 10, generator=torch.Generator().manual_seed(11))
    maps = torch.rand(4, 10, 10, generator=torch.Generator().manual_seed(12))
    target = cnn(x).argmax(1)
    metric = METRICS.build("road_morf", score="accuracy", noise=0.0)
    assert metric.curve_percentages == [float(p) for p in range(1, 100, 2)]
    assert metric.resolved_protocol()["percentages"][:3] == [1.0, 3.0, 5.0]
    assert METRICS.build("road_morf").curve_percentages == [10.0 * k for k in range(1, 10)]
    res = METRICS.build("road_morf", score="accuracy", noise=0.0, percentages=[10.0, 50.0, 90.0])(model, x, maps, target)
    order = maps.flatten(1).argsort(1, descending=True)
    for i in range(4):
        for j, p in enumerate([10.0, 50.0, 90.0]):
            remove = torch.zeros(100, dtype=torch.bool)
            remove[order[i, : int(100 * p / 100)]] = True
            pred = cnn(linear_imputation(x[i : i + 1], remove.view(1, 10, 10))).argmax(1).item()
            assert res.curves[i, j].item() == float(pred == target[i].item())
    assert 0 < res.curves.mean() < 1  # the predictions do change: not a trivial all-ones curve
    torch.testing.assert_close(res.values, res.curves.mean(1))


@pytest.mark.slow
@torch.no_grad()
def test_road_accuracy_form_equals_quantus_road():
    """Quantus `ROAD` (noise 0, un-normalized, tie-free maps) gives the same per-image 0/1 curve and,
    averaged over images, the same accuracy per percentage."""
    import quantus

    cnn = grey_linear(12)
    model = ModelAdapter(cnn, mean=(0.0,), std=(1.0,), input_size=12)
    x = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(13))
    maps = torch.rand(6, 12, 12, generator=torch.Generator().manual_seed(14))
    y = cnn(x).argmax(1)
    ref = quantus.ROAD(noise=0.0, normalise=False, disable_warnings=True)
    by_p = ref(model=cnn, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy(), device="cpu")
    ours = METRICS.build("road_morf", score="accuracy", noise=0.0)(model, x, maps, y)
    assert list(by_p) == list(range(1, 100, 2))
    np.testing.assert_allclose(ours.curves.mean(0).numpy(), np.array(list(by_p.values())), atol=1e-7)
    assert 0 < ours.curves.mean() < 1
