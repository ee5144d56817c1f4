"""report.html of a small run, checked with an HTML parser: every section, one leaderboard row per
explainer with summary.csv's numbers and directions, every inlined image decodes, nothing external,
the worst images are the worst in each metric's direction; controls and rank groups when present."""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from htmltree import parse
from PIL import Image

from xaibench.report import render_run
from xaibench.report.images import outline
from xaibench.report.rundata import worst_rows

EXPLAINERS = ["gradcam", "gradcampp", "saliency", "inputxgrad"]


def decode(uri: str) -> Image.Image:
    head, _, payload = uri.partition(",")
    assert head in ("data:image/png;base64", "data:image/jpeg;base64"), head[:40]
    img = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    img.load()  # raises on a truncated or corrupt image
    return img


def page_data(doc) -> dict:
    return json.loads(doc.by_id("report-data").text())


@pytest.mark.slow
def test_every_section_and_the_leaderboard(small_run):
    doc = parse((small_run / "report.html").read_text())
    for section in ("header", "leaderboard", "maps", "worst", "curves", "probe-feature_purity", "errors"):
        doc.by_id(section)
    board = doc.by_id("leaderboard-table")
    rows = board.find("tbody")[0].find("tr")
    assert [r.attrs["data-explainer"] for r in rows] == EXPLAINERS  # one row per explainer
    summary = pd.read_csv(small_run / "summary.csv")
    heads = [th.text().split()[0] for th in board.find("th")]
    arrows = {th.text().split()[0]: th.text().split()[-1] for th in board.find("th") if len(th.text().split()) > 1}
    assert arrows["deletion"] == "↓" and arrows["insertion"] == "↑" and arrows["pointing_game"] == "↑"
    for row in rows:
        cells = row.find("td")
        for metric, cell in zip(heads[1:], cells[1:]):
            hit = summary[(summary.explainer == row.attrs["data-explainer"]) & (summary.metric == metric)]
            if len(hit):
                assert float(cell.attrs["data-v"]) == pytest.approx(hit["mean"].iloc[0], rel=1e-12), metric
    costs = json.loads((small_run / "run.json").read_text())["costs"]
    gradcam_row = rows[0].find("td")
    assert float(gradcam_row[heads.index("s/image")].attrs["data-v"]) == costs["explainer/gradcam"]["seconds_per_image"]
    assert float(gradcam_row[heads.index("bwd/image")].attrs["data-v"]) == 1.0  # one backward per image
    assert "errors" in doc.by_id("header").text() and doc.find("a", href="#errors")
    assert "testnet:tiny" in doc.by_id("header").text()
    assert "name: small" in doc.find("details")[0].text()  # the config, collapsible


@pytest.mark.slow
def test_self_contained_and_every_image_decodes(small_run):
    html = (small_run / "report.html").read_text()
    doc = parse(html)
    for node in doc.iter():
        for attr in ("src", "href"):
            value = node.attrs.get(attr, "")
            assert not value.startswith(("http:", "https:", "//", "file:")), value[:80]
        assert not (node.tag == "link" and node.attrs.get("rel") == "stylesheet")
        assert not (node.tag == "script" and "src" in node.attrs)
    imgs = [n.attrs["src"] for n in doc.iter("img")]
    data = page_data(doc)
    uris = imgs + list(data["uris"].values()) + list(data["images"].values())
    assert len(imgs) >= 12 * (1 + 2) and len(data["uris"]) >= 12 * 2 + 8 * 2  # grid: CAMs on all 12, gradients on 8
    for u in uris:
        decode(u)
    assert {decode(u).size for u in data["uris"].values()} == {(32, 32)}  # overlays at the thumbnails' size
    grid = doc.by_id("map-grid")
    assert len(grid.find("tbody")[0].find("tr")) == 12 and len(doc.by_id("curves").find("svg")) == 2


@pytest.mark.slow
def test_worst_images_are_the_worst_in_each_direction(small_run):
    data = page_data(parse((small_run / "report.html").read_text()))
    scores = pd.read_csv(small_run / "scores.csv")
    for explainer in ("gradcam", "saliency"):
        for metric, worst_first in (("deletion", False), ("insertion", True)):  # deletion: the highest are worst
            s = scores[(scores.explainer == explainer) & (scores.metric == metric)]
            expected = s.sort_values(["value", "index"], ascending=[worst_first, True])["index"].head(8).tolist()
            shown = data["worst"][explainer][metric]
            assert [r for r, _ in shown] == expected, (explainer, metric)
            assert [v for _, v in shown] == pytest.approx(s.set_index("index").loc[expected, "value"].tolist(), abs=1e-4)


def test_worst_rows_follow_the_direction_and_skip_unscored():
    values = np.array([0.5, np.nan, 0.1, 0.9, 0.1, 0.3])
    assert worst_rows(values, higher_is_better=True, k=3).tolist() == [2, 4, 5]
    assert worst_rows(values, higher_is_better=False, k=3).tolist() == [3, 0, 5]


def test_outline_is_the_boundary_of_the_mask():
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:5, 1:5] = True
    ring = outline(mask)
    assert ring.sum() == 12 and not ring[2:4, 2:4].any() and ring[1, 1:5].all()


@pytest.mark.slow
def test_controls_and_rank_groups_are_shown_when_summary_has_them(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    summary = pd.read_csv(run / "summary.csv")
    control = summary[summary.explainer == "gradcam"].assign(explainer="random", mean=lambda d: d["mean"] - 0.5)
    summary = pd.concat([summary, control], ignore_index=True)
    summary["group"] = np.where(summary.explainer == "random", "C", "A")
    summary["p_value"] = 0.0123
    summary.to_csv(run / "summary.csv", index=False)
    doc = parse(render_run(run).read_text())
    rows = {r.attrs["data-explainer"]: r for r in doc.by_id("leaderboard-table").find("tbody")[0].find("tr")}
    assert rows["random"].attrs["class"] == "control" and rows["gradcam"].attrs["class"] == ""
    groups = [s.text() for s in rows["random"].find("span", class_="group")]
    assert groups and set(groups) == {"C"}
    assert "p_value=0.0123" in rows["gradcam"].find("td")[1].attrs["title"]  # an unknown column, shown generically


@pytest.mark.slow
def test_comparison_page_differences_and_protocol_checks(small_run, tmp_path):
    from xaibench.report import render_comparison

    other = tmp_path / "other"
    shutil.copytree(small_run, other)
    summary = pd.read_csv(other / "summary.csv")
    shifted = (summary.explainer == "gradcam") & (summary.metric == "deletion")
    summary.loc[shifted, ["mean", "ci_low", "ci_high"]] += 0.25  # clearly worse: deletion, lower is better
    proto = summary.metric == "insertion"
    summary.loc[proto, "protocol"] = summary.loc[proto, "protocol"].map(
        lambda p: json.dumps({**json.loads(p), "steps": 99}, sort_keys=True))
    summary.to_csv(other / "summary.csv", index=False)
    doc = parse(render_comparison([small_run, other], tmp_path / "cmp.html").read_text())
    rows = doc.by_id("diff-table").find("tbody")[0].find("tr")
    by_pair = {(r.find("td")[0].text(), r.find("td")[1].text().split()[0]): r.find("td") for r in rows}
    delta = by_pair[("gradcam", "deletion")][-1]
    assert float(delta.attrs["data-v"]) == pytest.approx(0.25) and delta.attrs["class"] == "worse"
    assert float(by_pair[("gradcam", "insertion")][-1].attrs["data-v"]) == 0.0
    checks = doc.by_id("checks").text()
    assert "✗ protocol of insertion" in checks and "steps: 8 → 99" in checks
    assert "✗ protocol of deletion" not in checks and "✓ dataset" in checks


@pytest.mark.slow
def test_cli_report_and_compare_html(small_run, tmp_path):
    from typer.testing import CliRunner

    from xaibench.cli import app

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "report.html").unlink()
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert str(run / "report.html") in res.output and (run / "figures" / "overlays.png").is_file()
    assert parse((run / "report.html").read_text()).by_id("leaderboard-table")
    res = CliRunner().invoke(app, ["compare", str(small_run), str(run), "--html", str(tmp_path / "c.html"), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert "gradcam,deletion" in res.stdout and len(parse((tmp_path / "c.html").read_text()).by_id("runs-table").find("tr")) == 3
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "not a finished run" in res.output


def test_inlined_images_choose_png_for_flat_pictures_and_jpeg_otherwise():
    from xaibench.report.images import data_uri

    flat = np.zeros((40, 40, 3), dtype=np.uint8)
    flat[10:30, 10:30] = (0, 255, 0)
    noisy = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    assert data_uri(flat).startswith("data:image/png") and data_uri(noisy).startswith("data:image/jpeg")
    assert np.array_equal(np.asarray(decode(data_uri(flat)).convert("RGB")), flat)  # PNG: lossless
    assert decode(data_uri(noisy)).size == (40, 40)


def test_rank_groups_print_as_integers():
    """summary.csv's `group` column is read as float when a row has none (NaN): show 1, not 1.0."""
    from xaibench.report.page import rank_group

    assert str(rank_group({"group": 1.0})) == "1" and rank_group({"group": float("nan")}) is None
    assert rank_group({"rank_group": "2"}) == "2"
