"""The runner end to end on a tiny model: outputs, resume, errors, never overwriting."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from xaibench import runner
from xaibench.datasets import DATASETS
from xaibench.datasets.synthetic import SyntheticShapes
from xaibench.errors import ConfigError, DataError, OutputError
from xaibench.saliency import EXPLAINERS, Explainer


@DATASETS.register("synthetic_with_corrupt")
@dataclasses.dataclass
class SyntheticWithCorrupt(SyntheticShapes):
    """Synthetic images where index 2 fails to decode, as a corrupt file would."""

    def __getitem__(self, i):
        sample = super().__getitem__(i)
        if i == 2:
            sample.error = "img_2.png: cannot identify image file"
            sample.image = torch.zeros_like(sample.image)
        return sample


@EXPLAINERS.register("nan_map")
@dataclasses.dataclass
class NaNMap(Explainer):
    """A broken explainer: NaN maps for even rows, constant maps for odd rows."""

    def explain(self, model, x, target):
        maps = torch.zeros(x.shape[0], *x.shape[-2:])
        maps[::2] = float("nan")
        return maps


def h5_arrays(path):
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_run(full, resumed):
    """Every results.h5 array and the scores/summary/errors tables of two runs are identical."""
    a, b = h5_arrays(full / "results.h5"), h5_arrays(resumed / "results.h5")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for name in ("scores.csv", "summary.csv", "errors.csv"):
        assert (full / name).read_text() == (resumed / name).read_text(), name


def test_run_writes_every_output(tiny_config, tmp_path):
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    for name in ("run.json", "results.h5", "scores.csv", "summary.csv", "errors.csv"):
        assert (run_dir / name).is_file(), name
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and meta["device"] == "cpu" and meta["n_images"] == 12
    # Grad-CAM: one forward and one backward per image; deletion with 8 steps: 9 forwards per image
    assert meta["costs"]["explainer/gradcam"]["forward_passes_per_image"] == 1.0
    assert meta["costs"]["explainer/gradcam"]["backward_passes_per_image"] == 1.0
    assert meta["costs"]["metric/deletion"]["forward_passes_per_image"] == 9.0
    with h5py.File(run_dir / "results.h5", "r") as h5:
        assert h5["maps/gradcam"].shape == (12, 32, 32) and h5["maps/gradcam"].dtype == np.float16
        assert h5["scores/gradcam/deletion"].shape == (12,)
        assert h5["curves/gradcam/insertion"].shape == (12, 9)
        saliency = h5["scores/saliency/deletion"][()]
        assert np.isfinite(saliency[:6]).all() and np.isnan(saliency[6:]).all()  # per-explainer limit
        assert "config" in h5.attrs and "versions" in h5.attrs
    summary = pd.read_csv(run_dir / "summary.csv")
    row = summary[(summary.explainer == "saliency") & (summary.metric == "deletion")].iloc[0]
    assert row.n == 6 and not row.higher_is_better and row.ci_low <= row["mean"] <= row.ci_high
    assert set(summary.metric) == {"deletion", "insertion", "overall"}
    scores = pd.read_csv(run_dir / "scores.csv")
    assert len(scores[(scores.explainer == "gradcam") & (scores.metric == "deletion")]) == 12


def test_stored_maps_match_the_explainer(tiny_config, tmp_path):
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    from xaibench.api import explain, load_model

    model = load_model("testnet:tiny")
    ds = DATASETS.build("synthetic", root=tiny_config["dataset"]["root"], split="test", image_size=32, n_images=16)
    x = model.normalize(torch.stack([ds[i].image for i in range(4)]))
    t = torch.tensor([ds[i].label for i in range(4)])
    expected = explain(model, x, t, "gradcam").numpy()
    with h5py.File(run_dir / "results.h5", "r") as h5:
        stored = h5["maps/gradcam"][:4].astype(np.float32) * h5["map_scale/gradcam"][:4][:, None, None]
    np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=1e-6 * np.abs(expected).max())


def test_never_overwrites(tiny_config, tmp_path):
    runner.run(tiny_config, out=tmp_path / "run", progress=False)
    with pytest.raises(OutputError, match="already exists"):
        runner.run(tiny_config, out=tmp_path / "run", progress=False)


def test_interrupted_then_resumed_equals_uninterrupted(tiny_config, tmp_path, monkeypatch):
    full = runner.run(tiny_config, out=tmp_path / "full", progress=False)
    real = runner.process_batch
    calls = {"n": 0}

    def dies_on_third_batch(plan, k, batch, progress):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the process were stopped mid-run
        return real(plan, k, batch, progress)

    monkeypatch.setattr(runner, "process_batch", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        runner.run(tiny_config, out=tmp_path / "part", progress=False)
    assert not (tmp_path / "part" / "results.h5").exists()
    monkeypatch.setattr(runner, "process_batch", real)
    resumed = runner.run(tiny_config, out=tmp_path / "part", resume=True, progress=False)
    assert_same_run(full, resumed)


def test_a_complete_run_keeps_no_batch_files_and_resuming_it_does_nothing(tiny_config, tmp_path, monkeypatch, capsys):
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    assert not (run_dir / ".partial").exists()  # every batch is in results.h5
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.is_file()}

    def no_batch(*args):
        raise AssertionError("a complete run computed a batch again")

    monkeypatch.setattr(runner, "process_batch", no_batch)
    assert runner.run(tiny_config, out=run_dir, resume=True, progress=True) == run_dir
    assert "already complete" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.is_file()} == before  # nothing rewritten


def test_resume_refuses_a_different_config(tiny_config, tmp_path):
    runner.run(tiny_config, out=tmp_path / "run", progress=False)
    tiny_config["seed"] = 3
    with pytest.raises(OutputError, match="config differs"):
        runner.run(tiny_config, out=tmp_path / "run", resume=True, progress=False)


def test_corrupt_image_goes_to_errors_csv(tiny_config, tmp_path):
    tiny_config["dataset"]["name"] = "synthetic_with_corrupt"
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    errors = pd.read_csv(run_dir / "errors.csv")
    assert list(errors["index"]) == [2] and "cannot identify" in errors["reason"][0]
    scores = pd.read_csv(run_dir / "scores.csv")
    assert 2 not in set(scores[scores.explainer == "gradcam"]["index"])
    assert len(scores[(scores.explainer == "gradcam") & (scores.metric == "deletion")]) == 11


def test_corrupt_image_is_fatal_with_on_error_fail(tiny_config, tmp_path):
    tiny_config["dataset"]["name"] = "synthetic_with_corrupt"
    tiny_config["on_error"] = "fail"
    with pytest.raises(DataError, match="cannot identify"):
        runner.run(tiny_config, out=tmp_path / "run", progress=False)


def test_nan_maps_are_errors_and_constant_maps_are_scored(tiny_config, tmp_path):
    """docs/metrics.md "Failed maps": a NaN map (even rows) is a row of errors.csv naming the explainer,
    the image and the reason, NaN for every metric and counted in n_skipped; the all-zero maps (odd
    rows) are scored, as the metrics define a constant map. (Until issue 16 a NaN map was scored as
    the all-zero map.)"""
    tiny_config["explainers"] = ["nan_map"]
    tiny_config["metrics"] = [{"name": "deletion", "params": {"steps": 8}}, "pointing_game", "sparseness"]
    tiny_config["dataset"]["limit"] = 8
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    from xaibench.api import load_model
    from xaibench.metrics import METRICS
    from xaibench.metrics.ordering import image_seeds

    model = load_model("testnet:tiny")
    ds = DATASETS.build("synthetic", root=tiny_config["dataset"]["root"], split="test", image_size=32, n_images=16)
    x = model.normalize(torch.stack([ds[i].image for i in range(8)]))
    t = torch.tensor([ds[i].label for i in range(8)])
    seeds = image_seeds(0, [ds[i].id for i in range(8)])  # the runner's: run seed 0 and the image id
    errors = pd.read_csv(run_dir / "errors.csv")
    assert list(errors["index"]) == [0, 2, 4, 6] and set(errors["plugin"]) == {"nan_map"}
    assert list(errors["id"]) == [ds[i].id for i in (0, 2, 4, 6)] and errors["reason"].str.contains("not finite").all()
    summary = pd.read_csv(run_dir / "summary.csv").set_index("metric")
    with h5py.File(run_dir / "results.h5", "r") as h5:
        maps = h5["maps/nan_map"][()]
        assert np.isnan(maps[0]).all() and (maps[1] == 0).all()  # stored as they are
        for name in ("deletion", "pointing_game", "sparseness"):
            values = h5[f"scores/nan_map/{name}"][()]
            assert np.isnan(values[::2]).all() and np.isfinite(values[1::2]).all(), name
            assert list(h5[f"status/nan_map/{name}"][()][::2]) == [-3] * 4, name
            assert summary.loc[name, "n"] == 4 and summary.loc[name, "n_skipped"] == 4, name
        zero = METRICS.build("deletion", steps=8)(model, x, torch.zeros(8, 32, 32), t, seeds=seeds).values
        np.testing.assert_allclose(h5["scores/nan_map/deletion"][()][1::2], zero[1::2].numpy(), rtol=1e-5)
        assert (h5["scores/nan_map/pointing_game"][()][1::2] == 0).all()  # a constant map points nowhere


def test_nan_logits_are_recorded_and_the_batch_proceeds(tiny_config, tmp_path, monkeypatch):
    tiny_config["explainers"] = ["gradcam"]
    real = runner.process_batch

    def poison(plan, k, batch, progress):
        if k == 1:
            batch.images[1] = float("nan")  # image 5 gives NaN logits
        return real(plan, k, batch, progress)

    monkeypatch.setattr(runner, "process_batch", poison)
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    errors = pd.read_csv(run_dir / "errors.csv")
    assert list(errors["index"]) == [5] and "not finite" in errors["reason"][0]
    scores = pd.read_csv(run_dir / "scores.csv")
    assert len(scores[scores.metric == "deletion"]) == 11


def test_bad_layer_fails_before_any_work(tiny_config, tmp_path):
    from xaibench.errors import LayerError

    tiny_config["explainers"] = [{"name": "gradcam", "params": {"layer": "featurez"}}]
    with pytest.raises(LayerError, match="no layer 'featurez'. Did you mean 'features'"):
        runner.run(tiny_config, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / ".partial").exists()


def test_half_precision_is_refused_on_cpu_unless_allowed(tiny_config, tmp_path):
    from xaibench.errors import ConfigError

    tiny_config["precision"] = "bf16"
    with pytest.raises(ConfigError, match="precision: bf16 is for CUDA.*allow_cpu_autocast"):
        runner.run(tiny_config, out=tmp_path / "a", progress=False)
    tiny_config["allow_cpu_autocast"] = True
    tiny_config["explainers"] = ["gradcam"]
    run_dir = runner.run(tiny_config, out=tmp_path / "b", progress=False)
    tiny_config["precision"] = "fp32"
    full = runner.run(tiny_config, out=tmp_path / "c", progress=False)
    with h5py.File(run_dir / "results.h5", "r") as h5, h5py.File(full / "results.h5", "r") as ref:
        assert h5["scores/gradcam/deletion"].dtype == np.float32
        half, exact = h5["scores/gradcam/deletion"][()], ref["scores/gradcam/deletion"][()]
        assert not np.array_equal(half, exact)  # autocast did run in bf16 …
        np.testing.assert_allclose(half, exact, atol=0.03)  # … to bf16's precision (8 bits of mantissa)


def test_full_disk_is_a_clear_error_and_leaves_no_half_file(tiny_config, tmp_path, monkeypatch):
    import errno

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    ds = tiny_config["dataset"]
    DATASETS.build("synthetic", root=ds["root"], split="test", image_size=32, **ds["params"])  # cache before
    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        runner.run(tiny_config, out=tmp_path / "run", progress=False)
    leftovers = [p.name for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert leftovers == ["run.json"]  # no partial batch file, no temporary file


def test_unwritable_output_folder_is_a_clear_error(tiny_config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create run folder"):
        runner.run(tiny_config, out=blocker / "run", progress=False)


def test_featviz_and_probe_tables_go_into_results_h5(tiny_config, tmp_path):
    tiny_config["explainers"] = ["gradcam"]
    tiny_config["metrics"] = []
    tiny_config["featviz"] = {"targets": [0, 1], "steps": 4}
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    assert (run_dir / "featviz" / "summary.csv").is_file()
    with h5py.File(run_dir / "results.h5", "r") as h5:
        assert h5["featviz/images"].shape == (2, 3, 32, 32)
        assert len(h5["featviz/summary"]) == 2


def test_sub_scores_carry_their_own_direction(tiny_config, tmp_path):
    """road_combined is higher-better, its MoRF sub-score lower-better: summary.csv and compare
    --check must know (a sub-score used to inherit its metric's direction)."""
    tiny_config["explainers"] = ["gradcam"]
    tiny_config["dataset"]["limit"] = 4
    tiny_config["metrics"] = [{"name": "road_combined", "params": {"percentages": [20, 80]}}, "average_drop"]
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    summary = pd.read_csv(run_dir / "summary.csv").set_index("metric")["higher_is_better"]
    assert summary["road_combined"] and summary["road_combined:lerf"]
    assert not summary["road_combined:morf"] and not summary["average_drop"]
    assert not any(m.startswith("average_drop:") for m in summary.index)


def test_one_metric_under_several_display_names_and_overall_per_protocol(tiny_config, tmp_path):
    """Issue 16: `as:` lists a metric again under its own name (stored and shown under it); `overall`
    pairs only an insertion and a deletion measured with the same protocol, and says which."""
    tiny_config["explainers"] = ["gradcam"]
    tiny_config["dataset"]["limit"] = 4
    tiny_config["metrics"] += [
        {"name": "deletion", "as": "deletion_rise", "params": {"protocol": "rise"}},
        {"name": "insertion", "as": "insertion_rise", "params": {"protocol": "rise"}},
        {"name": "box_iou", "as": "box_iou_t0.3", "params": {"threshold": 0.3}},
        "box_iou",
    ]
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    summary = pd.read_csv(run_dir / "summary.csv").set_index("metric")
    assert {"deletion_rise", "insertion_rise", "box_iou_t0.3", "box_iou:hit", "box_iou_t0.3:hit", "overall",
            "overall_rise"} <= set(summary.index)
    assert json.loads(summary.loc["deletion_rise", "protocol"])["pixels_per_step"] == 224
    assert "insertion_rise - deletion_rise, both with protocol=rise" in summary.loc["overall_rise", "protocol"]
    assert "insertion - deletion, both with protocol=default" in summary.loc["overall", "protocol"]
    scores = pd.read_csv(run_dir / "scores.csv").pivot_table(index="index", columns="metric", values="value")
    np.testing.assert_allclose(scores["overall_rise"], scores["insertion_rise"] - scores["deletion_rise"], atol=1e-6)
    assert not np.allclose(scores["deletion_rise"], scores["deletion"])  # another protocol, another number
    with h5py.File(run_dir / "results.h5", "r") as h5:
        assert h5["curves/gradcam/deletion_rise"].shape == (4, 6)  # 1024 px: ⌈1024/224⌉ = 5 steps
        assert h5["curves/gradcam/deletion"].shape == (4, 9)
    assert set(json.loads((run_dir / "run.json").read_text())["protocols"]) >= {"deletion_rise", "box_iou_t0.3"}


def test_overall_needs_an_insertion_and_a_deletion_with_the_same_protocol(tiny_config, tmp_path):
    from xaibench.config import load

    tiny_config["metrics"] = [{"name": "deletion", "params": {"steps": 8}}, {"name": "insertion", "params": {"steps": 4}}]
    plan = runner.build_plan(load(tiny_config), tmp_path)
    with pytest.warns(UserWarning, match="different protocols"):
        assert plan.derived() == []
    tiny_config["metrics"] = [{"name": "deletion", "as": "d8", "params": {"steps": 8}},
                              {"name": "insertion", "as": "i8", "params": {"steps": 8}}]
    assert [(d.name, d.inputs) for d in runner.build_plan(load(tiny_config), tmp_path).derived()] == [
        ("overall_i8_d8", ("i8", "d8"))]


def test_a_metric_twice_needs_a_display_name(tiny_config):
    from xaibench.config import load

    tiny_config["metrics"] = ["box_iou", {"name": "box_iou", "params": {"threshold": 0.3}}]
    with pytest.raises(ConfigError, match="listed twice; give each entry its own display name with `as:`"):
        load(tiny_config)
    tiny_config["metrics"][1]["as"] = "box_iou:0.3"
    with pytest.raises(ConfigError, match="not a valid display name"):
        load(tiny_config)
    tiny_config["metrics"][1]["as"] = "box_iou_t0.3"
    assert [m.key for m in load(tiny_config).metrics] == ["box_iou", "box_iou_t0.3"]
    assert load(tiny_config, ["metrics.0.as=iou15"]).metrics[0].key == "iou15"


def test_pointing_game_with_target_prediction_skips_other_classes_and_counts_them(tiny_config, tmp_path):
    """TorchRay: an image whose prediction is not the annotated class has no region for that class —
    skipped (status −1) and counted in n_skipped, not a miss (issue 16)."""
    tiny_config["explainers"] = ["gradcam"]
    tiny_config["target"] = "prediction"
    tiny_config["metrics"] = ["pointing_game"]
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    with h5py.File(run_dir / "results.h5", "r") as h5:
        label, pred = h5["samples/label"][()], h5["samples/pred"][()]
        status = h5["status/gradcam/pointing_game"][()]
        values = h5["scores/gradcam/pointing_game"][()]
    other = pred != label
    assert 0 < other.sum() < len(label)  # the random test net gets some right, some wrong
    assert (status[other] == -1).all() and (status[~other] == 1).all()
    assert np.isnan(values[other]).all() and np.isfinite(values[~other]).all()
    summary = pd.read_csv(run_dir / "summary.csv").set_index("metric")
    assert summary.loc["pointing_game", "n_skipped"] == other.sum() and summary.loc["pointing_game", "n"] == (~other).sum()
