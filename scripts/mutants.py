"""Mutation check (`make mutants`): swap each method's core formula for its sibling's, one mutant at a
time in a temporary copy of the worktree, run the tests that should notice, and print which test kills it.

    python scripts/mutants.py [--only NAME ...] [--list]

Each mutant is a text substitution that must match its source exactly once (a stale mutant is an
error, not a survivor). The unmutated copy must pass the same tests first. Exit status 1 when a
mutant survives.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAM, SCORE, FAITH = "xaibench/saliency/cam.py", "xaibench/saliency/score.py", "xaibench/metrics/faithfulness.py"
T_CAM, T_SCORE = "tests/saliency/test_cam.py", "tests/saliency/test_score_cam.py"
T_FAITH, T_LOC = "tests/metrics/test_metrics_faithfulness.py", "tests/metrics/test_metrics_localization.py"

WEIGHTS = {  # the body of each gradient CAM's `weights`
    "gradcam": "return grads.mean(dim=(2, 3), keepdim=True)",
    "xgradcam": "return safe_divide((acts * grads).sum(dim=(2, 3), keepdim=True), acts.sum(dim=(2, 3), keepdim=True))",
    "hirescam": "return grads",
    "layercam": "return torch.relu(grads)",
}
GRADCAMPP = """        g2 = grads.pow(2)
        alpha = safe_divide(g2, 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g2 * grads)
        return (alpha * torch.relu(grads)).sum(dim=(2, 3), keepdim=True)"""


@dataclass
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


def swap_weights(src: str, dst: str) -> Mutant:
    """`src`'s weight formula replaced by `dst`'s (the class docstring's closing line anchors it)."""
    anchors = {"gradcam": "∂y_c/∂A_k(i,j).\"\"\"\n\n    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:\n",
               "xgradcam": "(a channel whose activations sum to 0 gets weight 0).\"\"\"\n\n    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:\n",
               "hirescam": "Grad-CAM without the gradient averaging.\"\"\"\n\n    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:\n",
               "layercam": "element-wise weights ReLU(∂y_c/∂A_kij).\"\"\"\n\n    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:\n",
               "gradcampp": "A 0/0 coefficient is 0 (no epsilon).\"\"\"\n\n    def weights(self, acts: Tensor, grads: Tensor, logits: Tensor, target: Tensor) -> Tensor:\n"}
    body = {name: f"        {w}" for name, w in WEIGHTS.items()} | {"gradcampp": GRADCAMPP}
    return Mutant(f"{src} → {dst} weights", CAM, anchors[src] + body[src], anchors[src] + body[dst], (T_CAM,))


MUTANTS = [
    *(swap_weights(a, b) for a, b in [("gradcam", "xgradcam"), ("gradcam", "hirescam"), ("xgradcam", "gradcam"),
                                      ("xgradcam", "hirescam"), ("hirescam", "gradcam"), ("hirescam", "xgradcam"),
                                      ("gradcampp", "layercam"), ("layercam", "gradcampp")]),
    Mutant("scorecam → sscam channel scores (noise std 2, 35 samples)", SCORE,
           "return torch.softmax(self.channel_scores(model, x, target, acts), dim=1)[:, :, None, None]",
           "return torch.softmax(SSCAM(layer=self.layer, chunk_size=self.chunk_size).channel_scores(model, x, target, acts), "
           "dim=1)[:, :, None, None]", (T_SCORE,)),
    Mutant("sscam → scorecam channel scores (no noise)", SCORE,
           "        gen = torch.Generator(device=x.device).manual_seed(self.seed)\n        pairs",
           "        return ScoreCAM.channel_scores(self, model, x, target, acts)\n        pairs", (T_SCORE,)),
    Mutant("smoothgradcampp → gradcampp (noise ignored)", SCORE,
           "            noisy = (x[rows] + z).flatten(0, 1)", "            noisy = (x[rows] + 0 * z).flatten(0, 1)", (T_SCORE,)),
    Mutant("deletion → insertion's substrate", FAITH, "baseline=self.baseline or preset[self.mode],",
           "baseline=self.baseline or preset[\"insertion\"],", (T_FAITH,)),
    Mutant("insertion → deletion's substrate", FAITH, "baseline=self.baseline or preset[self.mode],",
           "baseline=self.baseline or preset[\"deletion\"],", (T_FAITH,)),
    Mutant("average_drop → average_gain figure", FAITH,
           "return torch.where(y > 0, (y - o).clamp_min(0) / y.abs().clamp_min(1e-300), 0.0)",
           "return torch.where(y < 1, (o - y).clamp_min(0) / (1 - y).clamp_min(1e-300), 0.0)", (T_FAITH,)),
    Mutant("energy pointing game without min-max normalization", "xaibench/metrics/localization.py",
           "s = minmax(clean_maps(maps).double())", "s = clean_maps(maps).double()", (T_LOC,)),
    Mutant("tie-breaks shared by every image (one permutation per batch)", "xaibench/metrics/ordering.py",
           "return image_seeds(seed, seeds.tolist() if seeds is not None else range(b))",
           "return image_seeds(seed, [0] * b)", (T_LOC, T_FAITH)),
    Mutant("ROAD noise by batch position, not by image", "xaibench/metrics/road.py",
           "for s, o, p in zip(per_image, orders, percentages, strict=True)]",
           "for s, o, p in zip(range(len(per_image)), orders, percentages, strict=True)]",
           ("tests/metrics/test_metrics_road.py",)),
    Mutant("randomization cascading ↔ independent (the two modes swapped)", "xaibench/metrics/sanity.py",
           'if self.mode == "cascading":', 'if self.mode != "cascading":', ("tests/metrics/test_metrics_sanity.py",)),
    Mutant("bootstrap level 95 % → 90 %", "xaibench/results/summary.py", "level: float = 0.95", "level: float = 0.90",
           ("tests/results/test_compare_cli.py",)),
    Mutant("epsilon_plus → epsilon_plus_flat (z⁺ → flat first layer)", "xaibench/saliency/lrp.py",
           '"epsilon_plus": (None, "zplus")', '"epsilon_plus": ("flat", "zplus")', ("tests/saliency/test_lrp_rules.py",)),
    Mutant("CLRP dual not averaged over the other classes", "xaibench/saliency/lrp.py",
           "return onehot - (1 - onehot) / (k - 1)", "return onehot - (1 - onehot)", ("tests/saliency/test_lrp_rules.py",)),
]


def copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info")
    for name in ("xaibench", "tests", "configs", "docs", "scripts", "bench"):
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)
    for name in ("pyproject.toml", "Makefile", "README.md", ".ci"):
        src = ROOT / name
        (shutil.copytree(src, dst / name) if src.is_dir() else shutil.copy2(src, dst / name))


def pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout", "600", "-o",
           "addopts=", *tests]
    res = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    return res.returncode, res.stdout + res.stderr


def killer(output: str) -> str:
    found = re.findall(r"^FAILED (\S+)", output, re.M)
    return found[0].split(" ")[0] if found else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run only the mutants whose name contains one of these")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per pytest call")
    args = ap.parse_args()
    mutants = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        print("\n".join(f"{m.name}  [{', '.join(m.tests)}]" for m in mutants))
        return 0
    rows, survived = [], 0
    with tempfile.TemporaryDirectory(prefix="xai-mutants-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        for m in mutants:  # every mutant must match its source exactly once
            count = (copy / m.path).read_text().count(m.old)
            if count != 1:
                raise SystemExit(f"stale mutant '{m.name}': its text occurs {count} times in {m.path}")
        for tests in sorted({m.tests for m in mutants}):
            code, out = pytest(copy, tests, args.timeout)
            if code != 0:
                raise SystemExit(f"the unmutated tests fail ({' '.join(tests)}):\n{out[-3000:]}")
        for m in mutants:
            path = copy / m.path
            original = path.read_text()
            t0 = time.perf_counter()
            try:
                path.write_text(original.replace(m.old, m.new))
                code, out = pytest(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = "killed" if code == 1 else ("SURVIVED" if code == 0 else f"error (pytest exit {code})")
            survived += code != 1
            rows.append((m.name, verdict, killer(out) if code == 1 else "-", f"{time.perf_counter() - t0:.0f}s"))
            print(f"{rows[-1][1]:>8}  {m.name}  {rows[-1][2]}", flush=True)
    print("\n| mutant | result | killed by | time |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
