"""The feature-purity paper's headline (Chen, Cong & Huang 2021, §3.5): purity rises with training.
Checked on the shipped Fashion-MNIST model against the same architecture at its seeded random
initialization (bench/purity_training.py prints the full table)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xaibench.datasets.base import Batch
from xaibench.datasets.mnist import DEBIAN_FASHION_MNIST, MNIST
from xaibench.models.zoo import load_model
from xaibench.probes.purity import FeaturePurity


@pytest.mark.slow
@pytest.mark.skipif(not Path(DEBIAN_FASHION_MNIST).is_dir(), reason="Fashion-MNIST not installed "
                    f"at {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)")
def test_purity_of_every_layer_rises_from_initialization_to_the_trained_model():
    data = MNIST(split="test", image_size=28)
    batches = []
    for start in range(0, 1000, 250):
        idx = torch.arange(start, start + 250)
        batches.append(Batch(data.pixels(idx), data.labels[idx], [""] * 250, idx, [None] * 250, None, [None] * 250))
    tables = {}
    for weights in ("none", "default"):
        torch.manual_seed(0)
        out = FeaturePurity(sweep=[])(load_model("fashion-mnist-vgg", weights=weights), batches)
        tables[weights] = out["purity"].set_index("layer").purity
        tables[weights + "_summary"] = out["summary"].set_index("summary").purity
    init, trained = tables["none"], tables["default"]
    print(f"purity per layer, init (seed 0) → trained:\n{init.round(3).to_dict()}\n{trained.round(3).to_dict()}")
    assert (trained > init).all()  # every conv block
    assert trained.min() > 0.95
    rise = tables["default_summary"] - tables["none_summary"]
    assert rise["last_layer"] > 0.05 and rise["stage_mean"] > 0.1  # measured: 0.907 → 0.988, 0.847 → 0.990
