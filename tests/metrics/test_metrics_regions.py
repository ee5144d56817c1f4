"""AOPC (region perturbation) and IROF against Quantus `RegionPerturbation` and `IROF` on the same
model, images and maps; MoRF fails against LeRF, and the mean baseline against the black one."""

import numpy as np
import pytest
import torch
from metric_models import small_cnn, synthetic_images

from xaibench.metrics.base import METRICS
from xaibench.models.adapter import ModelAdapter


@pytest.fixture(scope="module")
def setup():
    module = small_cnn(classes=5)
    model = ModelAdapter(module, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(34, 34))
    x = synthetic_images(3, 34)[0]
    maps = torch.rand(3, 34, 34, generator=torch.Generator().manual_seed(5))  # no ties
    target = torch.tensor([0, 2, 4])
    return module, model, x, maps, target


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_matches_quantus(setup, order):
    import quantus

    module, model, x, maps, target = setup
    regions = 20  # 34 px with 4 px patches: Quantus pads 1 px each side, 81 patches
    with model.inference():
        ours = METRICS.build(f"aopc_{order}", patch_size=4, regions=regions)(model, x, maps, target)
        sibling = METRICS.build(f"aopc_{'lerf' if order == 'morf' else 'morf'}", patch_size=4, regions=regions)(
            model, x, maps, target)
    ref = np.asarray(quantus.RegionPerturbation(patch_size=4, order=order, regions_evaluation=regions,
                                                perturb_baseline="black", disable_warnings=True)(
        model=module, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=maps[:, None].numpy(), device="cpu",
        channel_first=True, softmax=True, batch_size=3))
    worst = np.abs(ours.curves.numpy() - ref).max()
    print(f"aopc_{order} vs quantus.RegionPerturbation: worst abs diff of the curve {worst:.2e}")
    assert worst < 1e-5
    assert np.allclose(ours.values.numpy(), ref.sum(1) / (regions + 1), atol=1e-6)
    assert np.abs(sibling.curves.numpy() - ref).max() > 1e-3


@pytest.mark.parametrize("baseline", ["black", "mean"])
def test_irof_matches_quantus(setup, baseline, monkeypatch):
    import quantus

    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)  # Quantus 0.6 calls np.trapz (gone in NumPy 2.4)

    module, model, x, maps, target = setup
    with model.inference():
        x, maps, target = x[:2], maps[:2], target[:2]  # ~100 Quantus steps an image: keep it short
        ours = METRICS.build("irof", segment_space="input", baseline=baseline)(model, x, maps, target)
        sibling = METRICS.build("irof", segment_space="input", baseline="mean" if baseline == "black" else "black")(
            model, x, maps, target)
    from quantus.functions.perturb_func import baseline_replacement_by_mask

    def replace(arr, mask, **kw):  # Quantus 0.6's IROF passes a (B,1,H,W) mask for (B,C,H,W) inputs and fails
        return baseline_replacement_by_mask(arr, np.broadcast_to(mask, arr.shape), **kw)

    ref = []
    for i in range(2):  # one image a call: Quantus' black/mean are taken over the whole (perturbed) batch
        xi = x[i : i + 1].numpy()
        fill = "black" if baseline == "black" else np.full(xi.shape, xi.mean())  # the image's own mean, fixed
        ref.append(quantus.IROF(perturb_func=replace, perturb_baseline=fill, return_aggregate=False, disable_warnings=True)(
            model=module, x_batch=xi, y_batch=target[i : i + 1].numpy(), a_batch=maps[i : i + 1, None].numpy(),
            device="cpu", channel_first=True, softmax=True, batch_size=1)[0])
    worst = np.abs(ours.values.numpy() - np.asarray(ref)).max()
    print(f"irof({baseline}) vs quantus.IROF: worst abs diff {worst:.2e}, segments {ours.extras['segments'].tolist()}")
    assert (ours.extras["segments"] > 10).all()
    assert worst < 1e-4
    assert np.abs(sibling.values.numpy() - np.asarray(ref)).max() > 1e-3


def test_aopc_of_a_region_model_is_known():
    """A model whose class-0 logit is the mean of a region: removing that region first (MoRF) drops
    the logit by the region mean per patch, LeRF not at all until the region is reached."""
    from metric_models import region_model

    model, region = region_model(8, 8, (0, 4, 0, 4))  # the top-left 4x4 patch
    x = torch.ones(1, 3, 8, 8)
    maps = region.float()[None] + 0.01 * torch.arange(64.0).view(1, 8, 8) / 64  # top-left patch ranked first
    with model.inference():
        morf = METRICS.build("aopc_morf", patch_size=4, regions=2, score="logit", baseline="black")
        lerf = METRICS.build("aopc_lerf", patch_size=4, regions=2, score="logit", baseline="black")
        x[:, :, 4:, 4:] = 0.0  # black = 0: the image minimum
        assert morf(model, x, maps, torch.tensor([0])).curves.tolist() == [[1.0, 1.0]]
        assert lerf(model, x, maps, torch.tensor([0])).curves.tolist() == [[0.0, 0.0]]
