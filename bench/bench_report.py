"""report.html of the quickstart: its size (total, and the share of inlined images) and the time to
write it from the run folder, beside the time to redraw the PNG figures from the same results.h5.

    .venv/bin/python bench/bench_report.py [--run RUN_DIR] [--repeats 5] [--threads 2]

Without --run, the quickstart is run first into a temporary folder (minutes on 2 CPU cores). Issue 20's
targets: under 10 MB, written in under 15 s on 2 cores (`cold`: a fresh `xai report` process, imports
included; `warm`: render_run in a process that has imported everything).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import markdown, median_seconds

from xaibench.report import render_run
from xaibench.results.report import make_figures

ROOT = Path(__file__).resolve().parents[1]


def cold_seconds(run: Path, out: Path, repeats: int) -> float:
    """Median wall time of a fresh Python process that writes the report (what `xai report` costs)."""
    code = f"from xaibench.report import render_run; render_run({str(run)!r}, {str(out)!r})"
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", type=Path, default=None, help="a finished quickstart run folder")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "quickstart"
            subprocess.run([sys.executable, "-m", "xaibench", "run", str(ROOT / "configs/quickstart.yaml"), "--out", str(run),
                            "-q", "--set", "output.figures=false"], check=True, cwd=ROOT)
        out = Path(tmp) / "report.html"
        warm = median_seconds(lambda: render_run(run, out), args.repeats)
        figures = median_seconds(lambda: make_figures(run), args.repeats)
        cold = cold_seconds(run, out, args.repeats)
        html = out.read_text()
        images = sum(len(m) for m in re.findall(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", html))
        n_images = len(re.findall(r"data:image/", html))
        size = out.stat().st_size
    rows = [dict(what="report.html size (MB)", value=size / 1e6),
            dict(what=f"inlined images ({n_images}) share of the size", value=images / size),
            dict(what="write report.html, fresh process (s, median)", value=cold),
            dict(what="write report.html, warm (s, median)", value=warm),
            dict(what="redraw figures/*.png, warm (s, median)", value=figures),
            dict(what="report.html / figures time (warm, same run)", value=warm / figures)]
    print(f"run: {run}, repeats: {args.repeats}, threads: {args.threads}")
    print(markdown(rows, ["what", "value"]))


if __name__ == "__main__":
    main()
