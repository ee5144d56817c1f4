"""`xai compare` leaderboards and `--check`, and the CLI's handling of user errors."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from xaibench.cli import app
from xaibench.results.compare import check, leaderboard, render
from xaibench.results.summary import bootstrap_ci

cli = CliRunner()


def fake_run(folder, rows):
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=["explainer", "metric", "mean", "std", "n", "n_skipped", "ci_low", "ci_high",
                                "higher_is_better", "protocol"]).to_csv(folder / "summary.csv", index=False)
    return folder


ROWS = [
    ("gradcam", "deletion", 0.10, 0.01, 10, 0, 0.09, 0.11, False, "{}"),
    ("saliency", "deletion", 0.20, 0.01, 10, 0, 0.19, 0.21, False, "{}"),
    ("gradcam", "insertion", 0.50, 0.01, 10, 0, 0.45, 0.55, True, "{}"),
    ("saliency", "insertion", 0.52, 0.01, 10, 0, 0.47, 0.57, True, "{}"),
]


def test_leaderboard_ranks_by_direction_and_marks_ties(tmp_path):
    df = leaderboard([fake_run(tmp_path / "a", ROWS)])
    dele = df[df.metric == "deletion"].set_index("explainer")
    assert dele.loc["gradcam", "rank"] == 1 and dele.loc["saliency", "rank"] == 2  # lower is better
    assert not dele.loc["saliency", "tie"]
    ins = df[df.metric == "insertion"].set_index("explainer")
    assert ins.loc["saliency", "rank"] == 1 and ins.loc["gradcam", "tie"]  # CIs overlap the leader's
    table = render(df, "table", sort="deletion")
    assert table.index("gradcam") < table.index("saliency")
    md = render(df, "markdown")
    assert md.startswith("| explainer | deletion | insertion |")


def test_parent_folder_finds_runs(tmp_path):
    fake_run(tmp_path / "runs" / "a", ROWS)
    fake_run(tmp_path / "runs" / "b", ROWS)
    assert set(leaderboard([tmp_path / "runs"])["run"]) == {"a", "b"}


def test_check_passes_on_identical_and_fails_on_worse(tmp_path):
    run = fake_run(tmp_path / "a", ROWS)
    assert check([run], run / "summary.csv", 0.02) == ([], [])
    better_baseline = [list(r) for r in ROWS]
    better_baseline[0][2] = 0.05  # baseline deletion was lower (better) by 0.05 > tolerance
    base = fake_run(tmp_path / "base", better_baseline)
    regressions, _ = check([run], base / "summary.csv", 0.02)
    assert [(r.explainer, r.metric) for r in regressions] == [("gradcam", "deletion")]
    assert check([run], base / "summary.csv", 0.06)[0] == []


def test_cli_check_exit_codes(tmp_path):
    run = fake_run(tmp_path / "a", ROWS)
    ok = cli.invoke(app, ["compare", str(run), "--check", str(run / "summary.csv")])
    assert ok.exit_code == 0, ok.output
    worse = [list(r) for r in ROWS]
    worse[2][2] = 0.60  # baseline insertion higher by 0.10
    base = fake_run(tmp_path / "base", worse)
    bad = cli.invoke(app, ["compare", str(run), "--check", str(base / "summary.csv"), "--tolerance", "0.02"])
    assert bad.exit_code == 1 and "gradcam / insertion" in bad.output


def test_bootstrap_ci_contains_mean_and_is_seeded():
    v = [0.1, 0.4, 0.35, 0.8, 0.5, 0.2]
    lo, hi = bootstrap_ci(v, seed=0)
    assert lo < sum(v) / len(v) < hi
    assert (lo, hi) == bootstrap_ci(v, seed=0)
    assert bootstrap_ci([3.0]) == (3.0, 3.0)


def test_bootstrap_ci_is_the_documented_95_percent_percentile_interval():
    """docs/metrics.md "Aggregation": 1000 resamples with NumPy's default_rng(seed), the 2.5 % and
    97.5 % quantiles of the resample means."""
    import numpy as np

    v = np.random.default_rng(7).normal(1.0, 2.0, size=400)
    v[3] = np.nan  # not finite: left out
    finite = v[np.isfinite(v)]
    idx = np.random.default_rng(5).integers(0, finite.size, size=(1000, finite.size))
    means = finite[idx].mean(1)
    assert bootstrap_ci(v, seed=5) == (np.quantile(means, 0.025), np.quantile(means, 0.975))
    lo, hi = bootstrap_ci(v, seed=5)  # and it is about the normal-theory interval mean ± 1.96·sd/√n
    assert (hi - lo) / 2 == pytest.approx(1.96 * finite.std(ddof=1) / np.sqrt(finite.size), rel=0.1)


def test_cli_user_error_exits_2_without_traceback(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"explainers": ["gradcan"]}))
    res = cli.invoke(app, ["validate", str(cfg)])
    assert res.exit_code == 2
    assert "unknown explainer 'gradcan'" in res.output and "Traceback" not in res.output
    res = cli.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.output
    res = cli.invoke(app, ["compare", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not found" in res.output


def test_cli_list_shows_parameters():
    res = cli.invoke(app, ["list", "explainers"])
    assert res.exit_code == 0 and "gradcam:" in res.output and "layer: str = 'auto'" in res.output


@pytest.mark.slow
def test_cli_run_then_compare_and_report(tiny_config, tmp_path):
    tiny_config["output"]["figures"] = True
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config))
    res = cli.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "r"), "--set", "dataset.limit=8", "-q"])
    assert res.exit_code == 0, res.output
    for fig in ("overlays.png", "curves.png", "leaderboard.png"):
        assert (tmp_path / "r" / "figures" / fig).stat().st_size > 1000
    res = cli.invoke(app, ["compare", str(tmp_path / "r"), "--format", "csv"])
    assert res.exit_code == 0 and "gradcam,deletion" in res.output
    (tmp_path / "r" / "figures" / "curves.png").unlink()
    res = cli.invoke(app, ["report", str(tmp_path / "r")])
    assert res.exit_code == 0 and (tmp_path / "r" / "figures" / "curves.png").is_file()


def test_cli_explain_writes_overlay_and_rejects_corrupt_files(tmp_path):
    import numpy as np
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype("uint8")).save(good)
    res = cli.invoke(app, ["explain", str(good), "--model", "testnet:tiny", "-e", "gradcam", "-e", "saliency",
                           "--out", str(tmp_path / "ex.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ex.png").stat().st_size > 1000 and "explaining class" in res.output
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    res = cli.invoke(app, ["explain", str(bad), "--model", "testnet:tiny"])
    assert res.exit_code == 2 and "bad.jpg" in res.output


def test_leaderboard_figure_shades_the_best_in_each_direction():
    import pandas as pd

    from xaibench.results.report import leaderboard_shades

    means = pd.DataFrame({"deletion": [0.1, 0.3, 0.2], "insertion": [0.9, 0.5, 0.7]}, index=["a", "b", "c"])
    shades = leaderboard_shades(means, pd.Series({"deletion": False, "insertion": True}))
    assert shades["deletion"].tolist() == [0.0, 1.0, 0.5]  # lowest deletion is best (0 = green)
    assert shades["insertion"].tolist() == [0.0, 1.0, 0.5]  # highest insertion is best
