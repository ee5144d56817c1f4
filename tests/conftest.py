"""Shared fixtures: a tiny registered CNN (`testnet:tiny`) so runner tests are fast and offline."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


class TinyCNN(nn.Module):
    """conv → ReLU → conv → ReLU → GAP → linear: every CAM variant applies."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def _register_testnet() -> None:
    from xaibench.models import MODELS, ModelAdapter

    if "testnet" in MODELS:
        return

    @MODELS.register("testnet")
    def testnet(arch, weights="default", **_):
        """A tiny random CNN for tests (seeded, 32×32 input)."""
        torch.manual_seed(0)
        return ModelAdapter(TinyCNN(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32, name="testnet:tiny")


_register_testnet()


@pytest.fixture
def tiny_config(tmp_path):
    """A small valid run config (dict) on the synthetic dataset at 32×32."""
    return {
        "name": "tiny",
        "model": {"name": "testnet:tiny"},
        "dataset": {"name": "synthetic", "limit": 12, "batch_size": 4, "num_workers": 0, "image_size": 32,
                    "root": str(tmp_path / "cache"), "params": {"n_images": 16}},
        "explainers": ["gradcam", {"name": "saliency", "limit": 6}],
        "metrics": [{"name": "deletion", "params": {"steps": 8}}, {"name": "insertion", "params": {"steps": 8}}],
        "output": {"dir": str(tmp_path / "results"), "figures": False},
    }


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """(config path, run folder) of one uninterrupted one-process run of `interrupt.config`, shared by
    the kill-and-resume and torchrun tests."""
    from interrupt import config, xai

    folder = tmp_path_factory.mktemp("reference")
    cfg = config(folder)
    res = xai("run", str(cfg), "-q", "--out", str(folder / "run"))
    assert res.returncode == 0, res.stderr[-3000:]
    return cfg, folder / "run"


@pytest.fixture
def one_thread():
    """Intra-op threads as in the `OMP_NUM_THREADS=1` subprocesses, so in-process runs match them bit for bit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
