"""The CI gate (results/gate.py, `xai compare RUN --check BASELINE`): every rule with a run that
must fail and one that must pass; the CLI lists every reason and exits 1 (2 on a user mistake)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from xaibench.cli import app
from xaibench.errors import ConfigError
from xaibench.results.gate import check, parse_tolerances

cli = CliRunner()
COLUMNS = ["explainer", "metric", "mean", "std", "n", "n_skipped", "ci_low", "ci_high", "higher_is_better", "protocol"]
DEL = json.dumps({"steps": 32, "chunk_size": 64, "baseline": "zeros"}, sort_keys=True)
# deletion on 0–1 (lower better), a count-like metric on 0–100 (higher better)
BASE = [("gradcam", "deletion", 0.20, 0.10, 100, 0, 0.18, 0.22, False, DEL),
        ("gradcam", "hits", 60.0, 20.0, 100, 0, 56.0, 64.0, True, "{}"),
        ("saliency", "deletion", 0.15, 0.10, 100, 0, 0.13, 0.17, False, DEL)]


def write(folder, rows, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([list(r) for r in rows], columns=COLUMNS).to_csv(folder / "summary.csv", index=False)
    if config is not None:
        (folder / "run.json").write_text(json.dumps({"config": config}))
    return folder


def changed(index, **values):
    rows = [list(r) for r in BASE]
    for key, value in values.items():
        rows[index][COLUMNS.index(key)] = value
    return rows


def test_identical_run_passes(tmp_path):
    base = write(tmp_path / "base", BASE)
    result = check([write(tmp_path / "run", BASE)], base / "summary.csv")
    assert result.passed and (result.table["status"] == "ok").all()


def test_missing_pair_fails(tmp_path):
    base = write(tmp_path / "base", BASE)
    result = check([write(tmp_path / "run", BASE[:2])], base / "summary.csv")
    assert result.reasons == ["saliency / deletion: missing from the run"]
    extra = BASE + [("lrp", "deletion", 0.5, 0.1, 100, 0, 0.4, 0.6, False, DEL)]
    assert check([write(tmp_path / "more", extra)], base / "summary.csv").passed  # new pairs are shown, not failed


def test_n_fell_fails_below_the_fraction(tmp_path):
    base = write(tmp_path / "base", BASE) / "summary.csv"
    assert check([write(tmp_path / "ok", changed(0, n=90))], base).passed  # 90 ≥ 0.9 · 100
    result = check([write(tmp_path / "few", changed(0, n=3))], base)
    assert result.reasons == ["gradcam / deletion: n fell from 100 to 3 (below 0.9 × the baseline's n)"]
    assert not check([write(tmp_path / "ok2", changed(0, n=90))], base, min_n_fraction=0.95).passed


def test_protocol_change_fails_but_chunk_size_does_not(tmp_path):
    base = write(tmp_path / "base", BASE) / "summary.csv"
    chunk = json.dumps({"steps": 32, "chunk_size": 8, "baseline": "zeros"}, sort_keys=True)
    assert check([write(tmp_path / "chunk", changed(0, protocol=chunk))], base).passed
    steps = json.dumps({"steps": 16, "chunk_size": 64, "baseline": "zeros"}, sort_keys=True)
    result = check([write(tmp_path / "steps", changed(0, protocol=steps))], base)
    assert result.reasons == ["gradcam / deletion: protocol changed (steps: 32 → 16)"]


def test_run_settings_change_fails_when_both_have_run_json(tmp_path):
    config = {"target": "label", "model": {"name": "builtin:synthetic-cnn"},
              "dataset": {"name": "synthetic", "image_size": 128, "limit": 48},
              "explainers": ["gradcam", {"name": "saliency", "params": {"reduce": "abs_max"}}]}
    base = write(tmp_path / "base", BASE, config) / "summary.csv"
    assert check([write(tmp_path / "same", BASE, {**config, "dataset": {**config["dataset"], "limit": 50}})], base).passed
    other = {**config, "dataset": {**config["dataset"], "image_size": 64},
             "explainers": ["gradcam", {"name": "saliency", "params": {"reduce": "sum"}}]}
    result = check([write(tmp_path / "other", BASE, other)], base)
    assert result.reasons == ["run setting changed (other): dataset.image_size: 128 → 64",
                              "run setting changed (other): explainer saliency params: {'reduce': 'abs_max'} → {'reduce': 'sum'}"]


def test_tolerance_is_a_multiple_of_each_metrics_standard_error(tmp_path):
    """SE = std/√n: deletion 0.01 (tolerance 0.03), hits 2.0 (tolerance 6): one absolute number
    could not serve both scales."""
    base = write(tmp_path / "base", BASE) / "summary.csv"
    assert check([write(tmp_path / "a", changed(0, mean=0.229))], base).passed  # lower is better: +0.029
    result = check([write(tmp_path / "b", changed(0, mean=0.231))], base)
    assert len(result.reasons) == 1 and result.reasons[0].startswith("gradcam / deletion: 0.231 vs baseline 0.2, worse by 0.031")
    assert check([write(tmp_path / "c", changed(0, mean=0.10))], base).passed  # better is never a failure
    assert check([write(tmp_path / "d", changed(1, mean=54.5))], base).passed  # higher is better: −5.5 < 6
    assert not check([write(tmp_path / "e", changed(1, mean=53.9))], base).passed
    assert check([write(tmp_path / "f", changed(1, mean=53.9))], base, tolerance_se=4).passed


def test_absolute_tolerance_per_metric(tmp_path):
    base = write(tmp_path / "base", BASE) / "summary.csv"
    run = write(tmp_path / "r", changed(0, mean=0.215))
    assert check([run], base).passed  # 0.015 < 3 SE
    result = check([run], base, tolerances=["deletion=0.01"])
    assert not result.passed and "tolerance 0.01 (deletion=0.01" in result.reasons[0]
    assert result.tolerances["hits"] == "3·SE"
    assert check([run], base, tolerances={"deletion": 0.02}).passed


def test_tolerance_mistakes_are_user_errors():
    with pytest.raises(ConfigError, match="METRIC=VALUE"):
        parse_tolerances(["0.02"])
    with pytest.raises(ConfigError, match="not a number"):
        parse_tolerances(["deletion=abc"])
    with pytest.raises(ConfigError, match=">= 0"):
        parse_tolerances(["deletion=-1"])


def test_cli_lists_every_reason_and_exits_1(tmp_path):
    base = write(tmp_path / "base", BASE) / "summary.csv"
    rows = changed(0, n=3, mean=0.9)[:2]  # n fell, worse, saliency missing
    res = cli.invoke(app, ["compare", str(write(tmp_path / "r", rows)), "--check", str(base)])
    assert res.exit_code == 1
    for text in ("n fell from 100 to 3", "gradcam / deletion: 0.9 vs baseline 0.2", "saliency / deletion: missing",
                 "3 reason(s)", "n fell, worse"):
        assert text in res.output
    ok = cli.invoke(app, ["compare", str(write(tmp_path / "ok", BASE)), "--check", str(base)])
    assert ok.exit_code == 0 and "passed" in ok.output
    bad = cli.invoke(app, ["compare", str(tmp_path / "ok"), "--check", str(base), "--tolerance", "0.02"])
    assert bad.exit_code == 2 and "METRIC=VALUE" in bad.output
    bad = cli.invoke(app, ["compare", str(tmp_path / "ok"), "--check", str(base), "--tolerance", "delition=0.1"])
    assert bad.exit_code == 2 and "did you mean 'deletion'" in bad.output.lower()
