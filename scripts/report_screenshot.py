"""The screenshot of a run's report.html in the README (docs/figures/report.png): `xai report RUN`,
then headless Chromium (Debian's `chromium`) captures the page's top (header, leaderboard, map grid).

    .venv/bin/python scripts/report_screenshot.py RUN_DIR [--out docs/figures/report.png] [--width 1400 --height 1800]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from xaibench import api

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures/report.png")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1800)
    args = ap.parse_args()
    page = [p for p in api.report(args.run) if p.suffix == ".html"][0]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is required: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                        f"--user-data-dir={profile}", f"--window-size={args.width},{args.height}",
                        f"--screenshot={args.out.resolve()}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=180)
    print(f"wrote {args.out} from {page}")


if __name__ == "__main__":
    main()
