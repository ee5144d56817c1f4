"""A run meeting failures: an explainer or a metric raising mid-run (`on_error: skip` records and goes on,
`fail` stops and `--resume` continues), real corrupt files, a model giving only NaN, per-image tie seeds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_runner import assert_same_run, h5_arrays

from xaibench import runner
from xaibench.errors import PluginError
from xaibench.metrics import METRICS, ImageMetric, MetricResult
from xaibench.models import MODELS, ModelAdapter
from xaibench.saliency import EXPLAINERS, Explainer
from xaibench.saliency.cam import GradCAM

FAILS = {"explainer": set(), "metric": set()}  # the 0-based calls on which the flaky plug-ins raise
CALLS = {"explainer": 0, "metric": 0}


def fail_now(kind: str) -> None:
    call = CALLS[kind]
    CALLS[kind] += 1
    if call in FAILS[kind]:
        raise RuntimeError(f"{kind} boom on call {call}")


@pytest.fixture(autouse=True)
def reset_flaky():
    FAILS.update(explainer=set(), metric=set())
    CALLS.update(explainer=0, metric=0)
    yield
    FAILS.update(explainer=set(), metric=set())


@EXPLAINERS.register("flaky_gradcam")
@dataclasses.dataclass
class FlakyGradCAM(GradCAM):
    """Grad-CAM that raises on the calls listed in FAILS["explainer"]."""

    def explain(self, model, x, target):
        fail_now("explainer")
        return super().explain(model, x, target)


@METRICS.register("flaky_mean")
@dataclasses.dataclass
class FlakyMean(ImageMetric):
    """The map's mean; raises on the calls listed in FAILS["metric"]."""

    def __call__(self, model, x, maps, target, annotation=None, explain=None, seeds=None):
        fail_now("metric")
        return MetricResult(values=maps.mean((1, 2)))


@EXPLAINERS.register("zero_map")
@dataclasses.dataclass
class ZeroMap(Explainer):
    """All ties: every ordering metric is decided by the tie-breaks alone."""

    def explain(self, model, x, target):
        return torch.zeros(x.shape[0], *x.shape[-2:])


class NaNNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3))) * float("nan")


@MODELS.register("nannet")
def nannet(arch, weights="default", **_):
    """A model whose outputs are all NaN."""
    return ModelAdapter(NaNNet(), input_size=32, name="nannet:all")


def test_failing_explainer_and_metric_are_recorded_and_the_run_goes_on(tiny_config, tmp_path):
    tiny_config["explainers"] = ["gradcam", "flaky_gradcam"]
    tiny_config["metrics"] = [{"name": "deletion", "params": {"steps": 4}}, "flaky_mean"]
    # flaky_gradcam raises on its 2nd batch (images 4-7); flaky_mean on its 3rd call, which is gradcam's
    # maps of batch 1 (flaky_gradcam's maps of batch 1 never reach the metrics)
    FAILS.update(explainer={1}, metric={2})
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    errors = pd.read_csv(run_dir / "errors.csv", keep_default_na=False)
    assert list(errors.columns) == ["index", "id", "stage", "plugin", "reason"]
    assert sorted(zip(errors["index"], errors["stage"], errors["plugin"])) == sorted(
        [(i, "explainer", "flaky_gradcam") for i in range(4, 8)] + [(i, "metric", "gradcam/flaky_mean") for i in range(4, 8)])
    assert all("RuntimeError" in r and "boom" in r and "batch 1" in r for r in errors["reason"])
    h5 = h5_arrays(run_dir / "results.h5")
    assert list(h5["status/flaky_gradcam/deletion"]) == [1] * 4 + [-2] * 4 + [1] * 4
    assert list(h5["status/gradcam/flaky_mean"]) == [1] * 4 + [-2] * 4 + [1] * 4
    assert list(h5["status/gradcam/deletion"]) == [1] * 12  # the other metric of the batch was scored
    assert np.isnan(h5["scores/flaky_gradcam/deletion"][4:8]).all() and np.isfinite(h5["scores/gradcam/deletion"]).all()
    assert h5["failures/flaky_gradcam"][4].decode().startswith("RuntimeError: explainer boom")
    summary = pd.read_csv(run_dir / "summary.csv").set_index(["explainer", "metric"])["n"]
    assert summary[("flaky_gradcam", "deletion")] == 8 and summary[("gradcam", "deletion")] == 12
    assert summary[("gradcam", "flaky_mean")] == 8


def test_failing_explainer_with_on_error_fail_stops_and_resume_continues(tiny_config, tmp_path):
    tiny_config["explainers"] = ["flaky_gradcam", "saliency"]
    tiny_config["on_error"] = "fail"
    full = runner.run(tiny_config, out=tmp_path / "full", progress=False)
    CALLS["explainer"] = 0
    FAILS["explainer"] = {1}
    with pytest.raises(PluginError, match=r"explainer 'flaky_gradcam' failed on batch 1 \(images .*\): "
                                          r"RuntimeError: explainer boom.*--resume"):
        runner.run(tiny_config, out=tmp_path / "part", progress=False)
    assert sorted(p.name for p in (tmp_path / "part" / ".partial").glob("batch_*")) == ["batch_000000.npz"]
    FAILS["explainer"] = set()  # the cause is fixed
    resumed = runner.run(tiny_config, out=tmp_path / "part", resume=True, progress=False)
    assert_same_run(full, resumed)


def test_failing_metric_with_on_error_fail_names_it(tiny_config, tmp_path):
    tiny_config["on_error"] = "fail"
    tiny_config["explainers"] = ["gradcam"]
    tiny_config["metrics"] = ["flaky_mean"]
    FAILS["metric"] = {2}
    with pytest.raises(PluginError, match=r"metric 'flaky_mean' on gradcam's maps failed on batch 2"):
        runner.run(tiny_config, out=tmp_path / "run", progress=False)


def test_real_corrupt_files_go_through_a_whole_run(tiny_config, tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "a" / "whole.jpg")
    data = (root / "a" / "whole.jpg").read_bytes()
    (root / "a" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "b" / "empty.png").write_bytes(b"")
    tiny_config["dataset"] = {"name": "imagefolder", "root": str(root), "limit": None, "batch_size": 3,
                              "num_workers": 0, "image_size": 32}
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    errors = pd.read_csv(run_dir / "errors.csv")
    assert sorted(errors["id"]) == ["a/truncated.jpg", "b/empty.png"] and set(errors["stage"]) == {"image"}
    scores = pd.read_csv(run_dir / "scores.csv")
    scored = set(scores[(scores.explainer == "gradcam") & (scores.metric == "deletion")]["id"])
    assert scored == {f"{c}/{i}.png" for c in "ab" for i in range(3)} | {"a/whole.jpg"}


def test_a_model_with_only_nan_outputs_gives_a_complete_run_with_every_image_in_errors(tiny_config, tmp_path):
    tiny_config["model"] = {"name": "nannet:all"}
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    errors = pd.read_csv(run_dir / "errors.csv")
    assert list(errors["index"]) == list(range(12)) and errors["reason"].str.contains("not finite").all()
    assert pd.read_csv(run_dir / "scores.csv").empty
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary.empty and "ci_low" in summary.columns
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    h5 = h5_arrays(run_dir / "results.h5")
    assert (h5["samples/target"] == -1).all() and (h5["samples/pred"] == -1).all()
    assert not any(k.startswith(("scores/", "maps/")) for k in h5)


def deletion_by_id(run_dir):
    scores = pd.read_csv(run_dir / "scores.csv")
    return scores[scores.metric == "deletion"].set_index("id")["value"].sort_index()


def test_tie_breaks_follow_the_run_seed_and_the_image_not_the_batch(tiny_config, tmp_path):
    tiny_config["explainers"] = ["zero_map"]
    tiny_config["metrics"] = [{"name": "deletion", "params": {"steps": 8}}]
    a = deletion_by_id(runner.run(tiny_config, out=tmp_path / "a", progress=False))
    tiny_config["dataset"]["batch_size"] = 5  # other batches, other positions
    b = deletion_by_id(runner.run(tiny_config, out=tmp_path / "b", progress=False))
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6)
    tiny_config["seed"] = 1
    c = deletion_by_id(runner.run(tiny_config, out=tmp_path / "c", progress=False))
    assert (np.abs(a.to_numpy() - c.to_numpy()) > 1e-6).sum() >= 10  # a new random order for (almost) every image
