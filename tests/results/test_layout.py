"""The run folder as documented: every dataset and attribute of results.h5 (README "Outputs",
docs/architecture.md "Run folder") with its shape and dtype, nothing undocumented; run folders
created atomically (two runs in the same second without --out get two folders)."""

from __future__ import annotations

import json
import threading
from datetime import datetime

import h5py
import numpy as np
import yaml

from xaibench import runner
from xaibench.results import rundir

N, S = 10, 32  # images, pixels
STR, I8, I64, F16, F32, U8, BOOL = "string", np.int8, np.int64, np.float16, np.float32, np.uint8, np.bool_


def documented_layout(metric_t: int) -> dict[str, tuple[tuple[int, ...] | None, object]]:
    """name → (shape, dtype) for the config of `test_results_h5_layout`; shape None: a compound table."""
    out = {"index": ((N,), I64)}
    out.update({f"samples/{f}": ((N,), STR) for f in ("id", "error")})
    out.update({f"samples/{f}": ((N,), I64) for f in ("label", "target", "pred")})
    for e in ("gradcam", "scorecam"):
        out[f"maps/{e}"] = ((N, S, S), F16)
        out[f"map_scale/{e}"] = ((N,), F32)
        for m in ("deletion", "pointing_game", "pointing_game:hit_strict"):
            out[f"scores/{e}/{m}"] = ((N,), F32)
        for m in ("deletion", "pointing_game"):
            out[f"status/{e}/{m}"] = ((N,), I8)
        out[f"curves/{e}/deletion"] = ((N, metric_t), F32)
    out["diagnostics/scorecam/skipped_channels"] = ((N,), F32)
    out.update({"preview/images": ((4, S, S, 3), U8), "preview/rows": ((4,), I64), "preview/boxes": ((4, 1, 4), F32),
                "preview/masks": ((4, S, S), BOOL)})
    out.update({f"probes/feature_purity/{t}": (None, None) for t in ("purity", "sweep", "histogram", "summary")})
    out.update({"featviz/images": ((1, 3, S, S), U8), "featviz/summary": (None, None), "featviz/history": (None, None)})
    return out


def test_results_h5_layout(tiny_config, tmp_path):
    tiny_config.update(explainers=["gradcam", {"name": "scorecam", "limit": 6}],
                       metrics=[{"name": "deletion", "params": {"steps": 4}}, "pointing_game"],
                       probes=["feature_purity"], featviz={"targets": [0], "steps": 2})
    tiny_config["dataset"]["limit"] = N
    run_dir = runner.run(tiny_config, out=tmp_path / "run", progress=False)
    expected = documented_layout(metric_t=5)
    with h5py.File(run_dir / "results.h5", "r") as h5:
        found = {}
        h5.visititems(lambda name, obj: found.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
        assert sorted(found) == sorted(expected)  # every documented dataset, and nothing else
        for name, (shape, dtype) in expected.items():
            d = found[name]
            if shape is None:
                assert d.dtype.names and d.ndim == 1, name  # a table: a compound dataset
            elif dtype == STR:
                assert d.shape == shape and h5py.check_string_dtype(d.dtype) is not None, name
            else:
                assert d.shape == shape and d.dtype == dtype, (name, d.shape, d.dtype)
        assert set(h5.attrs) == {"config", "versions", "xaibench", "completed_batches"}
        assert yaml.safe_load(h5.attrs["config"])["explainers"][1] == {"name": "scorecam", "params": {}, "limit": 6}
        assert json.loads(h5.attrs["versions"])["xaibench"] == h5.attrs["xaibench"]
        assert list(h5.attrs["completed_batches"]) == [0, 1, 2]
        # the values the layout promises
        assert list(h5["index"]) == list(range(N)) and (h5["samples/error"].asstr()[:] == "").all()
        scale = h5["map_scale/gradcam"][()]
        maps = h5["maps/gradcam"][()].astype(np.float32) * scale[:, None, None]
        peak = np.abs(maps).reshape(N, -1).max(1)  # the scale is the map's peak |value| (1 for an all-zero map)
        np.testing.assert_allclose(np.where(peak > 0, peak, 1.0), scale, rtol=1e-3)
        assert np.isnan(h5["maps/scorecam"][6:]).all() and np.isnan(h5["scores/scorecam/deletion"][6:]).all()
        assert list(h5["status/scorecam/deletion"]) == [1] * 6 + [0] * 4
        assert set(np.unique(h5["status/gradcam/pointing_game"])) <= {1, -1}
        assert list(h5["preview/rows"]) == [0, 1, 2, 3]


def test_two_runs_in_the_same_second_get_two_folders(tiny_config, tmp_path, monkeypatch):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 5, 1, 12, 0, 0)

    monkeypatch.setattr(rundir, "datetime", Frozen)
    tiny_config.update(explainers=["gradcam"], metrics=[])
    tiny_config["dataset"]["limit"] = 2
    first = runner.run(tiny_config, progress=False)
    second = runner.run(tiny_config, progress=False)
    assert (first.name, second.name) == ("tiny-20240501-120000", "tiny-20240501-120000-2")
    assert (first / "results.h5").is_file() and (second / "results.h5").is_file()
    # many at once: mkdir is the atomic claim, so no two callers share a folder
    made, start = [], threading.Barrier(16)

    def claim():
        start.wait()
        made.append(rundir.new_folder(tmp_path / "race", "tiny"))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 16 and all(p.is_dir() for p in made)
