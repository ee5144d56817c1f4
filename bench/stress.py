"""Stress run (issue 9): N synthetic images × every registered explainer × the faithfulness
metrics, as one process and as `torchrun` ranks; images/s per explainer, peak RSS, speed-up.

    .venv/bin/python bench/stress.py [--images 2000] [--size 64] [--ranks 2] [--single-images 2000]

On a 2-core CPU machine two ranks share the cores a single process already uses (torchrun sets
OMP_NUM_THREADS=1 per rank), so the speed-up measures the sharding overhead, not scaling. The
single-process run may cover fewer images (`--single-images`) to save time: throughputs are
compared per image, and the shared prefix of the two runs is checked for identical scores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from common import LIGHT_SETTINGS

from xaibench.saliency import EXPLAINERS

LIGHT = LIGHT_SETTINGS["stress"]
FAITHFULNESS = ["deletion", "insertion", "average_drop", "increase_in_confidence", "average_gain"]

PEAK_RSS = """import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)"""


def config(images: int, size: int, steps: int, batch: int) -> dict:
    return {
        "name": "stress", "seed": 0, "device": "auto", "target": "label",
        "model": {"name": "builtin:synthetic-cnn"},
        "dataset": {"name": "synthetic", "split": "test", "limit": images, "batch_size": batch,
                    "image_size": size, "params": {"n_images": images}},
        "explainers": [{"name": n, "params": LIGHT.get(n, {})} for n in EXPLAINERS.names()],
        "metrics": [{"name": m, "params": {"steps": steps}} if m in ("deletion", "insertion") else m
                    for m in FAITHFULNESS],
        "output": {"save_maps": False, "figures": False},
    }


def run(cfg_path: Path, out: Path, ranks: int, limit: int) -> dict:
    """One run in a wrapper process that reports the peak RSS of the largest descendant."""
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    xai = [*launcher, "-m", "xaibench", "run", str(cfg_path), "--out", str(out), "--set", f"dataset.limit={limit}"]
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", PEAK_RSS, *xai], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"run with {ranks} rank(s) failed:\n{res.stderr[-3000:]}")
    meta = json.loads((out / "run.json").read_text())
    return {"wall": wall, "peak_rss_mib": int(res.stdout.strip().splitlines()[-1]) / 1024, "meta": meta,
            "scores": pd.read_csv(out / "scores.csv")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--single-images", type=int, default=None, help="images of the 1-process run (default: --images)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    a = p.parse_args()
    single = a.single_images or a.images
    root = Path(a.out or tempfile.mkdtemp(prefix="xai-stress-"))
    root.mkdir(parents=True, exist_ok=True)
    cfg_path = root / "stress.yaml"
    cfg_path.write_text(yaml.safe_dump(config(a.images, a.size, a.steps, a.batch), sort_keys=False))
    print(f"config {cfg_path}; runs under {root}", flush=True)
    one = run(cfg_path, root / "ranks1", 1, single)
    print(f"1 process: {single} images in {one['wall']:.0f} s, peak RSS {one['peak_rss_mib']:.0f} MiB", flush=True)
    many = run(cfg_path, root / f"ranks{a.ranks}", a.ranks, a.images)
    print(f"{a.ranks} ranks: {a.images} images in {many['wall']:.0f} s, peak RSS (largest rank) "
          f"{many['peak_rss_mib']:.0f} MiB", flush=True)

    on = ["index", "explainer", "metric"]
    both = one["scores"].merge(many["scores"], on=on, suffixes=("_1", "_n"))
    equal = (both.value_1 == both.value_n) | (both.value_1.isna() & both.value_n.isna())
    speedup = (a.images / many["wall"]) / (single / one["wall"])
    print(f"\n{a.size}² synthetic images, batch {a.batch}, deletion/insertion {a.steps} steps, "
          f"light settings {LIGHT}\n")
    print(f"wall: 1 process {single / one['wall']:.2f} images/s (all explainers), {a.ranks} ranks "
          f"{a.images / many['wall']:.2f} images/s; speed-up {speedup:.2f}× (2 cores: overhead, not scaling)")
    print(f"peak RSS: 1 process {one['peak_rss_mib']:.0f} MiB, largest of {a.ranks} ranks {many['peak_rss_mib']:.0f} MiB")
    print(f"scores of the {single} shared images: {equal.mean():.1%} bit-identical, largest difference "
          f"{(both.value_1 - both.value_n).abs().max():.2g} (bit-identity needs equal thread counts: the ranks run "
          "OMP_NUM_THREADS=1, the single process 2 threads; tests/test_distributed.py checks it at 1 thread)\n")
    print("| plug-in | images/s (1 process) | images/s per rank | fwd passes/img | bwd passes/img |")
    print("|---|---|---|---|---|")
    costs1, costsn = one["meta"]["costs"], many["meta"]["costs"]
    for name in sorted(costs1):
        c1, cn = costs1[name], costsn.get(name, {})
        ips1 = 1 / c1["seconds_per_image"] if c1["seconds_per_image"] else float("nan")
        ipsn = 1 / cn["seconds_per_image"] if cn.get("seconds_per_image") else float("nan")
        print(f"| {name} | {ips1:.1f} | {ipsn:.1f} | {c1['forward_passes_per_image']:.0f} | "
              f"{c1['backward_passes_per_image']:.0f} |")


if __name__ == "__main__":
    main()
