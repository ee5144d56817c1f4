"""Sharded runs under torchrun (2 CPU ranks over gloo) equal a single-process run bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from xaibench.distributed import Ranks


def test_shards_are_disjoint_and_cover_every_batch():
    batches = list(range(11))
    shards = [Ranks(rank=r, world=3).shard(batches) for r in range(3)]
    assert sorted(sum(shards, [])) == batches
    assert not set(shards[0]) & set(shards[1])


def config(tmp_path: Path) -> Path:
    cfg = {
        "name": "dist",
        "model": {"name": "torchvision:resnet18", "weights": "none"},
        "dataset": {"name": "synthetic", "limit": 12, "batch_size": 4, "num_workers": 0, "image_size": 32,
                    "root": str(tmp_path / "cache"), "params": {"n_images": 12}},
        "explainers": ["gradcam", "saliency"],
        "metrics": [{"name": "deletion", "params": {"steps": 4}}, {"name": "insertion", "params": {"steps": 4}}],
        "output": {"figures": False},
    }
    path = tmp_path / "dist.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def arrays(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tmp_path):
    cfg = config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
            "-m", "xaibench", "run", str(cfg)]
    res = subprocess.run([*base, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("run folder:") == 1  # only rank 0, which holds the merged files, prints the leaderboard
    res = subprocess.run([sys.executable, "-m", "xaibench", "run", str(cfg), "--out", str(tmp_path / "one"), "-q"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = arrays(tmp_path / "one" / "results.h5"), arrays(tmp_path / "two" / "results.h5")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for name in ("scores.csv", "summary.csv", "errors.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
