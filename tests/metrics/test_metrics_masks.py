"""mask_auc and top_k_intersection against Quantus `AUC` and `TopKIntersection` on the same maps and
masks; ordinal ranks (the sibling of average ranks) and relevance rank accuracy differ."""

import numpy as np
import pytest
import torch

from xaibench.metrics.base import METRICS


def masks_and_maps(quantized: bool):
    g = torch.Generator().manual_seed(2)
    maps = torch.rand(4, 20, 20, generator=g)
    if quantized:
        maps = (maps * 4).floor()  # many ties
    mask = torch.zeros(4, 20, 20, dtype=torch.bool)
    for i in range(4):
        mask[i, 2 + i : 12 + i, 3 : 9 + 2 * i] = True
    maps = maps + 1.5 * mask.float() * (torch.rand(4, 1, 1, generator=g) > 0.3)  # some maps find the mask
    return maps, mask


def test_mask_auc_matches_quantus():
    import quantus

    maps, mask = masks_and_maps(quantized=True)
    x = torch.zeros(4, 3, 20, 20)
    ours = METRICS.build("mask_auc")(None, x, maps, None, annotation={"mask": mask}).values.numpy()
    ref = np.asarray(quantus.AUC(disable_warnings=True)(
        model=None, x_batch=x.numpy(), y_batch=np.zeros(4, dtype=int), a_batch=maps[:, None].numpy(),
        s_batch=mask[:, None].numpy().astype(float), channel_first=True))
    worst = np.abs(ours - ref).max()
    print(f"mask_auc vs quantus.AUC: worst abs diff {worst:.2e}")
    assert worst < 1e-6
    flat = maps.flatten(1)
    ordinal = flat.argsort(1).argsort(1).double() + 1  # ties broken by position: the sibling
    pos = mask.flatten(1).sum(1).double()
    u = (ordinal * mask.flatten(1)).sum(1) - pos * (pos + 1) / 2
    assert np.abs((u / (pos * (400 - pos))).numpy() - ref).max() > 1e-3
    assert METRICS.build("mask_auc")(None, x, torch.ones(4, 20, 20), None, annotation={"mask": mask}).values.tolist() \
        == [0.5] * 4  # a constant map ranks nothing


@pytest.mark.parametrize("concept_influence", [False, True])
def test_top_k_intersection_matches_quantus(concept_influence):
    import quantus

    maps, mask = masks_and_maps(quantized=False)
    x = torch.zeros(4, 3, 20, 20)
    ours = METRICS.build("top_k_intersection", k=50, concept_influence=concept_influence)(
        None, x, maps, None, annotation={"mask": mask}).values.numpy()
    ref = np.asarray(quantus.TopKIntersection(k=50, concept_influence=concept_influence, disable_warnings=True)(
        model=None, x_batch=x.numpy(), y_batch=np.zeros(4, dtype=int), a_batch=maps[:, None].numpy(),
        s_batch=mask[:, None].numpy().astype(float), channel_first=True))
    worst = np.abs(ours - ref).max()
    print(f"top_k_intersection(concept_influence={concept_influence}) vs quantus.TopKIntersection: "
          f"worst abs diff {worst:.2e}")
    assert worst < 1e-6
    rra = METRICS.build("relevance_rank_accuracy")(None, x, maps, None, annotation={"mask": mask}).values.numpy()
    assert np.abs(rra - ref).max() > 1e-2  # k = |mask| (the sibling) differs
