"""Occlusion and RISE: known answers on a hand-built model, Captum's Occlusion as oracle,
pass counts that match the formulas, masks drawn once per run."""

import pytest
import torch
from captum.attr import Occlusion as CaptumOcclusion
from saliency_models import pearson, small_cnn
from torch import nn

from xaibench.errors import ConfigError
from xaibench.models.adapter import ModelAdapter
from xaibench.saliency.base import EXPLAINERS


class PatchSum(nn.Module):
    """logit 0 = sum of channel 0 over the 4×4 patch at rows 4..7, cols 8..11; logit 1 = 0."""

    def forward(self, x):
        s = x[:, 0, 4:8, 8:12].sum((1, 2))
        return torch.stack([s, torch.zeros_like(s)], 1)


def patch_model():
    return ModelAdapter.wrap(PatchSum().eval(), input_size=16, name="patch")


def test_occlusion_known_answer_and_pass_count():
    model = patch_model()
    x = torch.ones(2, 3, 16, 16)
    before = model.counter.snapshot()
    occ = EXPLAINERS.build("occlusion", window=4, stride=4, chunk_size=7, reduce="abs_max")
    maps = occ(model, x, torch.tensor([0, 0]))
    used = model.counter.since(before)
    expected = torch.zeros(16, 16)
    expected[4:8, 8:12] = 16.0  # occluding the whole patch drops the logit by 16
    assert torch.allclose(maps, expected.expand(2, 16, 16))
    assert used["forward_images"] == 2 * (1 + 4 * 4) and used["backward_images"] == 0


@pytest.mark.parametrize("window,stride", [(4, 2), (5, 3), (3, 3)])
def test_occlusion_agrees_with_captum(window, stride):
    model = small_cnn()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([1, 3])
    ours = EXPLAINERS.build("occlusion", window=window, stride=stride, chunk_size=50).attribute(model, x, t)
    ref = CaptumOcclusion(model.module).attribute(x, sliding_window_shapes=(3, window, window),
                                                  strides=(3, stride, stride), target=t, baselines=0.0,
                                                  perturbations_per_eval=16)
    assert pearson(ours, ref).min() >= 0.99
    assert torch.allclose(ours, ref, atol=1e-5)


def test_occlusion_bad_parameters():
    model = patch_model()
    x = torch.ones(1, 3, 16, 16)
    with pytest.raises(ConfigError, match="stride must be <= window"):  # at build time
        EXPLAINERS.build("occlusion", window=4, stride=5)
    with pytest.raises(ConfigError, match="window"):  # needs the input: at call time
        EXPLAINERS.build("occlusion", window=32)(model, x, torch.tensor([0]))


def test_rise_matches_a_direct_sum_and_counts_passes():
    model = small_cnn()
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([0, 2, 4])
    rise = EXPLAINERS.build("rise", n_masks=10, cell_size=4, p=0.5, chunk_size=8)
    before = model.counter.snapshot()
    maps = rise(model, x, t)
    assert model.counter.since(before)["forward_images"] == 3 * 10
    grids, shifts = rise.draws(16, 16, x.device)
    masks = rise.masks(grids, shifts, 16, 16)  # (N,1,H,W)
    assert masks.shape == (10, 1, 16, 16) and masks.min() >= 0 and masks.max() <= 1
    with torch.no_grad():
        probs = torch.stack([model(x * m).softmax(1)[torch.arange(3), t] for m in masks])  # (N,B)
    expected = torch.einsum("nb,nhw->bhw", probs, masks[:, 0]) / (10 * 0.5)
    assert torch.allclose(maps, expected, atol=1e-5)
    # masks drawn once: a second batch reuses them, and batch membership does not matter
    again = rise(model, x[1:2], t[1:2])
    assert torch.allclose(again[0], maps[1], atol=1e-5)
    assert rise.draws(16, 16, x.device)[0] is grids
    # a batch larger than chunk_size: each call holds at most chunk_size images, same maps
    small = EXPLAINERS.build("rise", n_masks=10, cell_size=4, p=0.5, chunk_size=2)
    small.draws(16, 16, x.device)  # the same seeded masks
    calls = []
    handle = model.module.register_forward_pre_hook(lambda m, inp: calls.append(inp[0].shape[0]))
    try:
        split = small(model, x, t)
    finally:
        handle.remove()
    assert torch.allclose(split, maps, atol=1e-5) and max(calls) <= 2 and sum(calls) == 3 * 10


def test_rise_mask_construction_is_the_papers():
    rise = EXPLAINERS.build("rise", n_masks=1, cell_size=4, p=0.5)
    grid = torch.zeros(1, 1, 2, 2)
    grid[0, 0, 0, 0] = 1.0
    m = rise.masks(grid, torch.tensor([[0, 0]]), 8, 8)[0, 0]
    up = torch.nn.functional.interpolate(grid, size=(12, 12), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(m, up[:8, :8])
    m2 = rise.masks(grid, torch.tensor([[3, 1]]), 8, 8)[0, 0]
    assert torch.allclose(m2, up[3:11, 1:9])


def test_rise_known_answer_on_a_patch_model():
    # logit 0 depends only on the patch: with many masks the map is highest there
    model = patch_model()
    x = torch.ones(1, 3, 16, 16)
    maps = EXPLAINERS.build("rise", n_masks=400, cell_size=4, score="logit", chunk_size=200)(model, x, torch.tensor([0]))
    inside = maps[0, 4:8, 8:12].mean()
    outside = torch.cat([maps[0, :2].flatten(), maps[0, 12:].flatten()]).mean()
    assert inside > 1.2 * outside
    r, c = divmod(int(maps[0].argmax()), 16)
    assert 2 <= r <= 9 and 6 <= c <= 13  # the peak sits on the patch (rows 4..7, cols 8..11) ± 2
