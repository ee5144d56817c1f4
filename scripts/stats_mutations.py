"""Mutation check of the leaderboard statistics, the CI gate and the controls: each deliberate
mistake (unpaired test, no Holm, Spearman–Brown omitted, …) is applied to a copy of the repository
and the tests named beside it must fail.

    .venv/bin/python scripts/stats_mutations.py [NAME-FRAGMENT ...]    # CAUGHT / MISSED per mistake
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]

MUTS = [
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
def main(only: list[str]) -> int:
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, old, new, tests in MUTS:
            if only and not any(o in name for o in only):
                continue
            dst = Path(tmp) / "tree"
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(SRC, dst, ignore=lambda d, names: [n for n in names if n in (".git", "__pycache__", ".venv")
                                                                or (d == str(SRC) and n == "results")])
            f = dst / path
            text = f.read_text()
            assert text.count(old) == 1, (name, old)
            f.write_text(text.replace(old, new))
            env = {**os.environ, "PYTHONPATH": str(dst), "MPLBACKEND": "Agg"}
            res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()],
                                 cwd=dst, env=env, capture_output=True, text=True)
            last = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr[-200:]
            missed += res.returncode == 0
            print(f"{'CAUGHT' if res.returncode else 'MISSED'}  {name}: {last}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
