"""A small finished run of the tiny test CNN (4 explainers, 3 metrics, a probe) shared by the report
tests, and the report.html rendered from it."""

from __future__ import annotations

import pytest

from xaibench import runner


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """Run folder of a 12-image run at 32×32 with report.html written (`xai report`)."""
    from xaibench import api

    root = tmp_path_factory.mktemp("report_run")
    cfg = {
        "name": "small",
        "model": {"name": "testnet:tiny"},
        "dataset": {"name": "synthetic", "limit": 12, "batch_size": 4, "num_workers": 0, "image_size": 32,
                    "root": str(root / "cache"), "params": {"n_images": 16}},
        "explainers": ["gradcam", "gradcampp", {"name": "saliency", "limit": 8}, {"name": "inputxgrad", "limit": 8}],
        "metrics": [{"name": "deletion", "params": {"steps": 8}}, {"name": "insertion", "params": {"steps": 8}},
                    "pointing_game"],
        "probes": ["feature_purity"],
        "output": {"dir": str(root / "results"), "figures": False},
    }
    run_dir = runner.run(cfg, out=root / "run", progress=False)
    api.report(run_dir)
    return run_dir
