"""Mutation check (`make mutants`): swap each method's core formula for its sibling's (and each statistic,
gate rule and control for its classic mistake), one mutant at a time in a temporary copy of the worktree,
run the tests that should notice, and print which test kills it.

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


# the leaderboard statistics, the CI gate and the controls: (name, file, text, its mistake, tests)
STATISTICS = [
    ("direction from the mean, not the signed ranks", "xaibench/results/stats.py",
     "diff[k], p[k], direction[k] = d.mean(1), wilcoxon_pvalues(d), rank_direction(d)",
     "diff[k], p[k], direction[k] = d.mean(1), wilcoxon_pvalues(d), np.sign(d.mean(1))",
     "tests/results/test_stats.py::test_beating_a_control_is_a_significant_test_not_a_higher_mean"),
    ("runs paired by row index, not image id", "xaibench/results/compare.py",
     'per_image["id"].astype(str) + "|" + per_image["target"].astype(str) if multi else per_image["index"]',
     'per_image["index"]',
     "tests/results/test_compare_cli.py::test_runs_are_paired_by_image_id_across_runs"),
    ("unpaired Wilcoxon -> Mann-Whitney", "xaibench/results/stats.py",
     "        diff[k], p[k], direction[k] = d.mean(1), wilcoxon_pvalues(d), rank_direction(d)",
     "        from scipy.stats import mannwhitneyu\n        diff[k], p[k], direction[k] = d.mean(1), "
     "[mannwhitneyu(v[shared, i], v[shared, j]).pvalue for _, i, j in members], rank_direction(d)",
     "tests/results/test_stats.py::test_groups_use_paired_tests_on_a_large_between_image_spread"),
    ("no Holm correction in the board", "xaibench/results/stats.py",
     'out["diff"], out["direction"], out["p"], out["p_holm"] = diff, direction, p, holm(p)',
     'out["diff"], out["direction"], out["p"], out["p_holm"] = diff, direction, p, p',
     "tests/results/test_stats.py::test_holm_keeps_an_unadjusted_difference_in_the_leaders_group"),
    ("Bonferroni instead of Holm", "xaibench/results/statistics.py",
     "    out[order] = np.maximum.accumulate(scaled)", "    out[order] = np.minimum(1.0, m * p[order])",
     "tests/results/test_statistics.py::test_holm_hand_computed"),
    ("Spearman-Brown omitted", "xaibench/results/statistics.py",
     "    corrected = np.maximum(spearman_brown(rho), -1.0)", "    corrected = rho",
     "tests/results/test_statistics.py::test_split_half_is_spearman_brown_corrected_then_averaged"),
    ("average then correct", "xaibench/results/statistics.py",
     "    corrected = np.maximum(spearman_brown(rho), -1.0)", "    corrected = np.array([spearman_brown(np.nanmean(rho))])",
     "tests/results/test_statistics.py::test_split_half_is_spearman_brown_corrected_then_averaged"),
    ("Krippendorff interval instead of ordinal", "xaibench/results/meta.py",
     'krippendorff_alpha(rank_rows(values, hib), "ordinal")', 'krippendorff_alpha(rank_rows(values, hib), "interval")',
     "tests/results/test_meta.py::test_reliability_is_split_half_and_alpha_on_the_block_and_discrimination_from_the_board"),
    ("Krippendorff o_ck without 1/(m_u-1)", "xaibench/results/statistics.py",
     "    o = (pairs / (m_u - 1)[:, None, None]).sum(0)", "    o = pairs.sum(0)",
     "tests/results/test_statistics.py::test_krippendorff_alpha_published_example"),
    ("Kendall tau-a instead of tau-b", "xaibench/results/statistics.py",
     "    return float(stats.kendalltau(a, b).statistic)",
     "    n = a.size\n    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i in range(n) for j in range(i + 1, n))\n    return float(2 * s / (n * (n - 1)))",
     "tests/results/test_statistics.py::test_kendall_tau_b_hand_computed"),
    ("Cohen's d with ddof=0", "xaibench/results/statistics.py",
     "    mean, sd = d.mean(), d.std(ddof=1)", "    mean, sd = d.mean(), d.std(ddof=0)",
     "tests/results/test_statistics.py::test_cohens_dz_hand_computed tests/results/test_stats.py::test_effect_sizes_are_the_paired_ones"),
    ("direction ignored", "xaibench/results/stats.py",
     "    sign = 1.0 if higher_is_better else -1.0\n    v = table", "    sign = 1.0\n    v = table",
     "tests/results/test_meta.py::test_agreement_is_kendall_tau_of_the_rankings_in_each_metrics_direction tests/results/test_stats.py::test_lower_is_better_is_signed_and_leader_is_the_lowest"),
    ("unpaired bootstrap CI of the difference", "xaibench/results/stats.py",
     "        lo, hi = paired_ci(d, seed=seed)",
     "        lo, hi = paired_ci(sign * (v[shared, i] - np.random.default_rng(0).permutation(v[shared, ref])), seed=seed)",
     "tests/results/test_stats.py::test_effect_sizes_are_the_paired_ones"),
    ("leader among all explainers incl. partial, unpaired means", "xaibench/results/stats.py",
     "    better = np.where(full, sign * means, -np.inf)", "    better = sign * means",
     "tests/results/test_stats.py::test_partial_explainer_is_compared_on_its_own_images_never_on_a_different_set"),
    ("Wilcoxon always normal approximation", "xaibench/results/statistics.py",
     '    kinds = {"exact": exactable,', '    kinds = {"exact": exactable & False,',
     "tests/results/test_statistics.py::test_wilcoxon_hand_computed_exact_values"),
    ("Wilcoxon: tied differences sent to the untied exact table", "xaibench/results/statistics.py",
     "    exactable = ~(ties | (~nonzero).any(1)) & (n <= 50)", "    exactable = ~(~nonzero).any(1) & (n <= 50)",
     "tests/results/test_statistics.py::test_wilcoxon_hand_computed_exact_values"),
    ("gate: n rule removed", "xaibench/results/gate.py",
     '        if r["n"] < min_n_fraction * r["n_base"]:', '        if False:',
     "tests/results/test_gate.py::test_n_fell_fails_below_the_fraction"),
    ("gate: chunk_size not neutral", "xaibench/results/gate.py",
     'NEUTRAL_KEYS = {"chunk_size"}', "NEUTRAL_KEYS = set()",
     "tests/results/test_gate.py::test_protocol_change_fails_but_chunk_size_does_not"),
    ("gate: protocol ignored", "xaibench/results/gate.py",
     '        changes = protocol_changes(r["protocol_base"], r.get("protocol"))', "        changes = []",
     "tests/results/test_gate.py::test_protocol_change_fails_but_chunk_size_does_not"),
    ("gate: one absolute tolerance 0.02", "xaibench/results/gate.py",
     "    return se_multiple * se, f\"{se_multiple:g}·SE\"", "    return 0.02, 'abs'",
     "tests/results/test_gate.py::test_tolerance_is_a_multiple_of_each_metrics_standard_error"),
    ("gate: SE from std without sqrt(n)", "xaibench/results/gate.py",
     "    se = std / math.sqrt(n) if n >= 1 and math.isfinite(std) else 0.0", "    se = std",
     "tests/results/test_gate.py::test_tolerance_is_a_multiple_of_each_metrics_standard_error"),
    ("gate: direction ignored", "xaibench/results/gate.py",
     "        better = (r[\"mean\"] - r[\"mean_base\"]) * (1 if hib else -1)", "        better = r[\"mean\"] - r[\"mean_base\"]",
     "tests/results/test_gate.py::test_tolerance_is_a_multiple_of_each_metrics_standard_error"),
    ("gate: missing pairs pass", "xaibench/results/gate.py",
     '            reasons.append(f"{pair}: missing from the run")', "            pass",
     "tests/results/test_gate.py::test_missing_pair_fails"),
    ("gate: settings ignored", "xaibench/results/gate.py",
     '            reasons += [f"run setting changed', '            reasons += [] and [f"run setting changed',
     "tests/results/test_gate.py::test_run_settings_change_fails_when_both_have_run_json"),
    ("edges on the normalized input", "xaibench/saliency/controls.py",
     "        grey = model.denormalize(x).float().mean(1, keepdim=True)", "        grey = x.float().mean(1, keepdim=True)",
     "tests/saliency/test_controls.py::test_edges_is_scikit_image_sobel_of_the_grey_pixel_image"),
    ("random noise seeded per batch", "xaibench/saliency/controls.py",
     "generator=torch.Generator().manual_seed(image_seed(xi, self.seed))) for xi in x]",
     "generator=g) for g in [torch.Generator().manual_seed(self.seed)] for xi in x]",
     "tests/saliency/test_controls.py::test_random_is_uniform_noise_seeded_per_image_not_per_batch"),
    ("rank groups: partial explainers open groups", "xaibench/results/stats.py",
     "    measured = [i for i in order if full[i]]", "    measured = list(order)",
     "tests/results/test_stats.py"),
    ("controls: beats means better mean, not significant", "xaibench/results/stats.py",
     "            beaten[i] = sum(bool(p_adj[i, c] < alpha and side[i, c] > 0) for c in ctrl)",
     "            beaten[i] = sum(bool(margin[i, 0] > 0) for c in ctrl)",
     "tests/results/test_meta.py::test_reliability_is_split_half_and_alpha_on_the_block_and_discrimination_from_the_board tests/results/test_stats.py::test_margin_over_the_best_control_and_the_flag"),
    ("complete block: most explainers", "xaibench/results/meta.py",
     "        size = int(rows.sum()) * len(cols)", "        size = len(cols)",
     "tests/results/test_meta.py::test_complete_block_takes_the_largest_gap_free_part"),
]

MUTANTS += [Mutant(name, path, old, new, tuple(tests.split())) for name, path, old, new, tests in STATISTICS]
MUTANTS += [
    Mutant("MaxBoxAcc sweep: 4-connected (no diagonal edges)", "xaibench/metrics/component_sweep.py",
           "    parts.append((index[:, :-1, :-1], index[:, 1:, 1:], level, keep))\n", "",
           ("tests/metrics/test_component_sweep.py",)),
    Mutant("MaxBoxAcc sweep: equal sizes go to the last first pixel", "xaibench/metrics/component_sweep.py",
           "np.maximum.at(best, r // hw, size[r] * hw + (hw - 1 - first[r]))",
           "np.maximum.at(best, r // hw, size[r] * hw + first[r])", ("tests/metrics/test_component_sweep.py",)),
    Mutant("MaxBoxAcc sweep: a horizontal edge dropped when one pixel above reaches it", "xaibench/metrics/component_sweep.py",
           "keep[:, 1:] &= np.minimum(v[:, :-1, :-1], v[:, :-1, 1:]) < level[:, 1:]",
           "keep[:, 1:] &= np.maximum(v[:, :-1, :-1], v[:, :-1, 1:]) < level[:, 1:]", ("tests/metrics/test_component_sweep.py",)),
    Mutant("fused copy: residual block's ReLU dropped", "xaibench/models/onednn_fusion.py",
           '"add", 1.0, "relu", [], ""', '"add", 1.0, "none", [], ""', ("tests/models/test_fused.py",)),
    Mutant("token layers: patch grid read column-major", "xaibench/models/tokens.py",
           "return t[:, prefix:].transpose(1, 2).reshape(b, c, grid[0], grid[1])",
           "return t[:, prefix:].transpose(1, 2).reshape(b, c, grid[1], grid[0]).transpose(-1, -2)",
           ("tests/saliency/test_cam_tokens.py", "tests/saliency/test_msgcam.py")),
    Mutant("attention rollout: residual rows not renormalized", "xaibench/saliency/attention.py",
           "                    a = a / a.sum(-1, keepdim=True)\n", "", ("tests/saliency/test_attention.py",)),
    Mutant("gradient rollout: negative gradient·attention kept (no ReLU)", "xaibench/saliency/attention.py",
           "(grad * probs.detach()).clamp_min(0).mean(1)", "(grad * probs.detach()).mean(1)",
           ("tests/saliency/test_attention.py",)),
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
