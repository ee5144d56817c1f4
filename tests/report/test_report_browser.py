"""report.html in a real browser (headless Chromium, Debian's `chromium`; .ci/run installs it): the
page renders (non-blank leaderboard, map grid and worst-images regions in a full-page screenshot), no
JavaScript error reaches the console, a click on a column header sorts the table numerically, and
the class filter and worst-images chooser work (a page script reports the DOM after each action)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from htmltree import parse
from PIL import Image

from xaibench.report import render_run

WIDTH = 1300


def probe_script(table: str, row_key: str, before: str = "", after: str = "") -> str:
    """A page script: `before`, then a click on every header of `table` twice (order of `row_key` per
    row after each click into out.sorted), then `after`; `out` is appended as <pre id=probe-result>."""
    return """<script>
(function () {
  var table = document.getElementById("@TABLE@"), out = {errors: window.__errors};
  function order() { return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return @ROW@; }); }
  @BEFORE@
  out.sorted = {};
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.click(); var up = order(); th.click();
    out.sorted[th.textContent.trim().split(" ")[0]] = [up, order()];
  });
  @AFTER@
  var pre = document.createElement("pre"); pre.id = "probe-result"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}());
</script>""".replace("@TABLE@", table).replace("@ROW@", row_key).replace("@BEFORE@", before).replace("@AFTER@", after)


RUN_BEFORE = """function rect(id) { var r = document.getElementById(id).getBoundingClientRect();
    return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; }
  out.rects = {leaderboard: rect("leaderboard-table"), grid: rect("map-grid"), worst: rect("worst-strip")};
  out.height = document.documentElement.scrollHeight;
  out.worst_images = document.querySelectorAll("#worst-strip img").length;"""
RUN_AFTER = """var sel = document.getElementById("class-filter");
  sel.value = sel.options[1].value; sel.dispatchEvent(new Event("change"));
  out.filter_class = sel.value;
  out.visible_classes = Array.prototype.filter.call(document.getElementById("map-grid").tBodies[0].rows,
    function (r) { return r.style.display !== "none"; }).map(function (r) { return r.getAttribute("data-class"); });"""
CATCH = "<script>window.__errors = []; window.addEventListener('error', function (e) { window.__errors.push(e.message); });</script>"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("headless Chromium is required: apt-get install chromium (.ci/run installs it)")
    return path


def browse(page, tmp_path, *args: str, height: int = 2400) -> subprocess.CompletedProcess:
    """Chromium headless on a local file, console messages logged to stderr."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--window-size={WIDTH},{height}", *args, page.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def sorted_by(order: list[str], summary: pd.DataFrame, metric: str, ascending: bool) -> bool:
    """True when `order` lists the explainers by their mean on `metric`, numerically (ties in any
    order), the unmeasured last."""
    means = summary[summary.metric == metric].set_index("explainer")["mean"]
    values = [float(means[e]) if e in means else math.nan for e in order]
    finite = [v for v in values if math.isfinite(v)]
    if any(not math.isfinite(v) for v in values[: len(finite)]):
        return False  # a missing value before a measured one
    return finite == sorted(finite, reverse=not ascending)


@pytest.mark.slow
def test_report_renders_sorts_and_filters_in_chromium(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    summary = pd.read_csv(run / "summary.csv")
    summary = summary[~((summary.explainer == "saliency") & (summary.metric == "insertion"))]  # a missing cell
    summary.to_csv(run / "summary.csv", index=False)
    html = render_run(run).read_text()
    probed = tmp_path / "probed.html"
    probe = probe_script("leaderboard-table", 'r.getAttribute("data-explainer")', RUN_BEFORE, RUN_AFTER)
    probed.write_text(html.replace("<head>", "<head>" + CATCH, 1).replace("</body>", probe + "</body>", 1))
    res = browse(probed, tmp_path, "--dump-dom")
    out = json.loads(parse(res.stdout).by_id("probe-result").text())
    assert out["errors"] == [] and console_lines(res.stderr) == [], (out["errors"], console_lines(res.stderr))

    explainers = ["gradcam", "gradcampp", "saliency", "inputxgrad"]
    assert out["sorted"]["explainer"][0] == sorted(explainers)
    for metric in ("deletion", "insertion", "overall", "pointing_game"):
        up, down = out["sorted"][metric]
        assert sorted(up) == sorted(explainers) and sorted_by(up, summary, metric, True), (metric, up)
        assert sorted(down) == sorted(explainers) and sorted_by(down, summary, metric, False), (metric, down)
    assert out["worst_images"] == 8  # the worst-images chooser filled its strip on load
    assert out["visible_classes"] and set(out["visible_classes"]) == {out["filter_class"]}

    shot = tmp_path / "page.png"
    res = browse(run / "report.html", tmp_path, f"--screenshot={shot}", height=min(out["height"], 12000))
    assert console_lines(res.stderr) == [], console_lines(res.stderr)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[1] == WIDTH
    for name, (x, y, w, h) in out["rects"].items():
        assert w > 50 and h > 30, name
        region = pixels[int(y): int(y + h), int(x): int(x + w)]
        assert region.size and (region < 235).mean() > 0.15 and region.std() > 20, name  # drawn, not blank
    blank = pixels[: int(out["rects"]["leaderboard"][1]) - 5, WIDTH - 60:]  # the right margin above the table
    assert (blank > 250).mean() > 0.95  # a white page stays white: the region check can tell blank apart


@pytest.mark.slow
def test_comparison_page_has_no_javascript_errors_and_sorts(small_run, tmp_path):
    from xaibench.report import render_comparison

    page = render_comparison([small_run, small_run], tmp_path / "cmp.html")
    probe = probe_script("diff-table", 'r.cells[0].textContent + "/" + r.cells[1].textContent.split(" ")[0]')
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("<head>", "<head>" + CATCH, 1).replace("</body>", probe + "</body>", 1))
    res = browse(probed, tmp_path, "--dump-dom")
    out = json.loads(parse(res.stdout).by_id("probe-result").text())
    assert out["errors"] == [] and console_lines(res.stderr) == []
    up, down = out["sorted"]["explainer"]
    assert [r.split("/")[0] for r in up] == sorted(r.split("/")[0] for r in up) and up != down
