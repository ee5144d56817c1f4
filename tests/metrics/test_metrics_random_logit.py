"""random_logit against Quantus `RandomLogit` (its default SSIM of flattened maps), fed the same random
classes (re-derived from docs/metrics.md "Random draws"); the 2-D SSIM (the sibling) differs."""

import numpy as np
import pytest
import torch
from metric_models import documented_generator, small_cnn

from xaibench.metrics.base import METRICS
from xaibench.models.adapter import ModelAdapter
from xaibench.saliency import EXPLAINERS

SEEDS = torch.tensor([5, 6, 7])


def test_random_logit_matches_quantus(monkeypatch):
    import quantus

    module = small_cnn(classes=7)
    model = ModelAdapter(module, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(16, 16))
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    target = torch.tensor([0, 3, 6])
    explainer = EXPLAINERS.build("saliency", reduce="sum")
    with model.inference():
        maps = explainer(model, x, target)
        ours = METRICS.build("random_logit", similarity="ssim_flat")(model, x, maps, target, explain=explainer,
                                                                      seeds=SEEDS)
        two_d = METRICS.build("random_logit", similarity="ssim")(model, x, maps, target, explain=explainer,
                                                                  seeds=SEEDS)
    offsets = [int(torch.randint(0, 6, (), generator=documented_generator(int(k), "class"))) for k in SEEDS]
    expected = [j + (j >= t) for j, t in zip(offsets, target.tolist())]
    assert ours.extras["class"].long().tolist() == expected

    def explain_func(model, inputs, targets, **kwargs):
        with torch.enable_grad():
            xt = torch.as_tensor(inputs)
            return explainer(ModelAdapter(model, mean=(0.0,) * 3, std=(1.0,) * 3), xt,
                             torch.as_tensor(targets))[:, None].detach().numpy()

    ref = []
    for i in range(3):  # one image a call: Quantus' normalise_by_max divides by the whole batch's maximum
        monkeypatch.setattr(np.random, "randint", lambda *a, i=i, **k: np.array([offsets[i]]))
        ref.append(quantus.RandomLogit(num_classes=7, disable_warnings=True)(
            model=module, x_batch=x[i : i + 1].numpy(), y_batch=target[i : i + 1].numpy(),
            a_batch=maps[i : i + 1, None].numpy(), explain_func=explain_func, device="cpu",
            channel_first=True)[0])
    worst = np.abs(ours.values.numpy() - np.asarray(ref)).max()
    print(f"random_logit(ssim_flat) vs quantus.RandomLogit: worst abs diff {worst:.2e}")
    assert worst < 1e-6
    assert np.abs(two_d.values.numpy() - np.asarray(ref)).max() > 1e-2


def test_the_drawn_class_is_never_the_target():
    model = ModelAdapter(small_cnn(classes=3), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(8, 8))
    x = torch.randn(64, 3, 8, 8)
    target = torch.arange(64) % 3
    seen = []
    with model.inference():
        res = METRICS.build("random_logit")(model, x, torch.rand(64, 8, 8), target,
                                            explain=lambda m, xx, t: torch.rand(len(xx), 8, 8), seeds=torch.arange(64))
    seen = res.extras["class"].long()
    assert (seen != target).all() and set(seen.tolist()) == {0, 1, 2}
    with pytest.raises(Exception, match="explain"):
        METRICS.build("random_logit")(model, x, torch.rand(64, 8, 8), target)
