"""Max-sensitivity and infidelity against Captum's `sensitivity_max` and `infidelity`, fed the
same noise (re-derived from docs/metrics.md "Random draws"); each fails on its sibling."""

import pytest
import torch
from captum.metrics import infidelity, sensitivity_max
from metric_models import documented_generator, small_cnn

from xaibench.metrics.base import METRICS
from xaibench.models.adapter import ModelAdapter
from xaibench.saliency import EXPLAINERS

SEEDS = torch.tensor([101, 202, 303])


@pytest.fixture(scope="module")
def setup():
    model = ModelAdapter(small_cnn(classes=6), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(20, 20))
    x = torch.randn(3, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 3, 5])
    explainer = EXPLAINERS.build("saliency", reduce="sum")  # signed input gradient: moves under noise
    with model.inference():
        maps = explainer(model, x, target)
    return model, x, target, explainer, maps


def test_max_sensitivity_matches_captum(setup):
    model, x, target, explainer, maps = setup
    samples, radius = 4, 0.3
    with model.inference():
        ours = METRICS.build("max_sensitivity", samples=samples, radius=radius)(
            model, x, maps, target, explain=explainer, seeds=SEEDS)
        gens = [documented_generator(int(k), "noise") for k in SEEDS]
        noise = torch.stack([torch.stack([torch.empty(3, 20, 20).uniform_(-radius, radius, generator=g)
                                          for _ in range(samples)]) for g in [*gens]], 0)  # (B,S,C,H,W)
        # the metric draws sample-major (sample s of every image, then s+1): same per-image stream
        perturbed = x.repeat_interleave(samples, 0) + noise.reshape(-1, 3, 20, 20)  # Captum: repeat_interleave
        unpack = lambda inp: inp[0] if isinstance(inp, tuple) else inp  # noqa: E731
        ref = sensitivity_max(lambda inp, target: (explainer(model, unpack(inp), target),), x,
                              perturb_func=lambda inp, r: perturbed, perturb_radius=radius,
                              n_perturb_samples=samples, target=target)
    worst = (ours.values - ref).abs().max().item()
    print(f"max_sensitivity vs captum.sensitivity_max: worst abs diff {worst:.2e}")
    assert worst < 1e-5, worst
    assert (ours.extras["mean"] - ref).abs().max().item() > 1e-2  # avg-sensitivity (the sibling) differs


@pytest.mark.parametrize("normalize", [True, False])
def test_infidelity_matches_captum(setup, normalize):
    model, x, target, _, maps = setup
    samples, std = 5, 0.2
    with model.inference():
        ours = METRICS.build("infidelity", samples=samples, noise=std, normalize=normalize)(
            model, x, maps, target, seeds=SEEDS)
        gens = [documented_generator(int(k), "noise") for k in SEEDS]
        pert = torch.stack([torch.stack([torch.randn(3, 20, 20, generator=g) * std for _ in range(samples)])
                            for g in gens]).reshape(-1, 3, 20, 20)
        rep = x.repeat_interleave(samples, 0)
        ref = infidelity(lambda inp: model(inp), lambda inp: (pert, rep - pert), x,
                         maps[:, None].expand_as(x).contiguous(), target=target, n_perturb_samples=samples,
                         normalize=normalize)
        other = METRICS.build("infidelity", samples=samples, noise=std, normalize=not normalize)(
            model, x, maps, target, seeds=SEEDS)
    worst = ((ours.values.double() - ref.double()).abs() / ref.double().abs().clamp_min(1e-12)).max().item()
    print(f"infidelity(normalize={normalize}) vs captum.infidelity: worst abs diff "
          f"{(ours.values - ref).abs().max().item():.2e}, relative {worst:.2e}")
    assert worst < 1e-4, worst  # relative: the values are squared logit errors
    assert ((other.values - ref).abs() / ref.abs()).min().item() > 1e-3  # normalized vs not differ


def test_draws_do_not_depend_on_the_batch(setup):
    model, x, target, explainer, maps = setup
    metric = METRICS.build("max_sensitivity", samples=2)
    with model.inference():
        full = metric(model, x, maps, target, explain=explainer, seeds=SEEDS).values
        alone = metric(model, x[2:], maps[2:], target[2:], explain=explainer, seeds=SEEDS[2:]).values
        unseeded = metric(model, x[2:], maps[2:], target[2:], explain=explainer).values
    assert full[2].item() == pytest.approx(alone[0].item(), abs=1e-6)
    assert full[2].item() != pytest.approx(unseeded[0].item(), abs=1e-6)  # keyed by position without seeds
