"""The metrics of issue 16 against their reference implementations on the same model, images and maps
in one run: model passes per image (the adapter's counter, for both), seconds per image (medians), and
both against the floor of those passes — the metric's forward images through the fused copy at batch 64
plus its forward+backward images at the batch, timed in the same run (a metric bound by the passes its
formula needs cannot run faster than its floor, whatever the reference does).

    .venv/bin/python bench/bench_new_metrics.py                      # builtin:synthetic-cnn, 32 images, 128²
    .venv/bin/python bench/bench_new_metrics.py --repeats 1 --only irof mask_auc

References: Captum `sensitivity_max`, `infidelity`; Quantus `FaithfulnessCorrelation`, `RegionPerturbation`,
`IROF`, `AUC`, `TopKIntersection`, `RandomLogit`; wsolevaluation's box sweep (OpenCV, transcribed).
Both sides get the same parameters (listed in PARAMS); the references draw their own random numbers.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import builtin_synthetic_batch, forward_backward_floor, forward_floor, markdown, median_seconds

from xaibench.metrics.base import METRICS
from xaibench.saliency import EXPLAINERS

PARAMS = {
    "max_sensitivity": dict(samples=10, radius=0.02),
    "infidelity": dict(samples=10, noise=0.1, normalize=True),
    "faithfulness_correlation": dict(runs=50, subset_size=224),
    "aopc_morf": dict(patch_size=8, regions=100),
    "irof": dict(segment_space="input", baseline="black"),
    "max_box_acc": dict(thresholds=100),
    "mask_auc": {},
    "top_k_intersection": dict(k=1000),
    "random_logit": dict(similarity="ssim_flat"),
}


def wsol_box_sweep(maps: np.ndarray, boxes: list[np.ndarray], thresholds: int) -> np.ndarray:
    """wsolevaluation's BoxEvaluator.accumulate per map (cv2 threshold, contours, boundingRect, inclusive IoU)."""
    import cv2

    out = []
    for m, gt in zip(maps, boxes):
        m = (m - m.min()) / max(m.max() - m.min(), 1e-12)
        h, w = m.shape
        image = np.expand_dims((m * 255).astype(np.uint8), 2)
        ious = []
        for t in np.arange(0, 1, 1 / thresholds):
            _, binary = cv2.threshold(image, int(t * image.max()), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
            box = [0, 0, 0, 0]
            if contours:
                x, y, bw, bh = cv2.boundingRect(max(contours, key=cv2.contourArea))
                box = [x, y, min(x + bw, w - 1), min(y + bh, h - 1)]
            iw = np.maximum(0, np.minimum(box[2], gt[:, 2]) - np.maximum(box[0], gt[:, 0]) + 1)
            ih = np.maximum(0, np.minimum(box[3], gt[:, 3]) - np.maximum(box[1], gt[:, 1]) + 1)
            union = (box[2] - box[0] + 1) * (box[3] - box[1] + 1) + (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
            ious.append((iw * ih / (union - iw * ih)).max())
        out.append(ious)
    return np.asarray(out)


def references(model, explainer, x, target, maps, boxes, masks):
    """{metric: zero-argument call of its reference on the same inputs}."""
    import quantus
    from captum.metrics import infidelity, sensitivity_max

    np.trapz = getattr(np, "trapz", np.trapezoid)  # Quantus 0.6 calls np.trapz (removed in NumPy 2.4)
    from quantus.functions.perturb_func import baseline_replacement_by_mask

    xn, yn, an = x.numpy(), target.numpy(), maps[:, None].numpy()
    sn = masks[:, None].numpy().astype(float)
    b = len(x)
    common = dict(model=model, x_batch=xn, y_batch=yn, a_batch=an, device="cpu", channel_first=True, batch_size=b)

    def q_explain(model, inputs, targets, **kwargs):
        with torch.enable_grad():
            return explainer(model, torch.as_tensor(inputs), torch.as_tensor(targets))[:, None].detach().numpy()

    def irof_replace(arr, mask, **kw):  # Quantus 0.6's IROF mask is (B,1,H,W) for (B,C,H,W) inputs
        return baseline_replacement_by_mask(arr, np.broadcast_to(mask, arr.shape), **kw)

    p = PARAMS
    return {
        "max_sensitivity": lambda: sensitivity_max(
            lambda inp, target: (explainer(model, inp[0] if isinstance(inp, tuple) else inp, target),), x,
            perturb_radius=p["max_sensitivity"]["radius"], n_perturb_samples=p["max_sensitivity"]["samples"],
            target=target),
        "infidelity": lambda: infidelity(
            model, lambda inp: (lambda n: (n, inp - n))(torch.randn_like(inp) * p["infidelity"]["noise"]), x,
            maps[:, None].expand_as(x).contiguous(), target=target, n_perturb_samples=p["infidelity"]["samples"],
            normalize=True),
        "faithfulness_correlation": lambda: quantus.FaithfulnessCorrelation(
            nr_runs=p["faithfulness_correlation"]["runs"], subset_size=224, return_aggregate=False,
            disable_warnings=True)(**common, softmax=False),
        "aopc_morf": lambda: quantus.RegionPerturbation(patch_size=8, regions_evaluation=100, disable_warnings=True)(
            **common, softmax=True),
        "irof": lambda: quantus.IROF(perturb_func=irof_replace, perturb_baseline="black", return_aggregate=False,
                                     disable_warnings=True)(**common, softmax=True),
        "max_box_acc": lambda: wsol_box_sweep(maps.numpy(), [bx.numpy() for bx in boxes], 100),
        "mask_auc": lambda: quantus.AUC(disable_warnings=True)(**common, s_batch=sn),
        "top_k_intersection": lambda: quantus.TopKIntersection(k=1000, disable_warnings=True)(**common, s_batch=sn),
        "random_logit": lambda: quantus.RandomLogit(num_classes=model.num_classes, disable_warnings=True)(
            **common, explain_func=q_explain),
    }


def passes(model, fn) -> tuple[int, int]:
    before = model.counter.snapshot()
    fn()
    after = model.counter.since(before)
    return after["forward_images"], after["backward_images"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()

    model, samples, x, target = builtin_synthetic_batch(args.images, args.size)
    boxes = [s.boxes for s in samples]
    masks = torch.stack([s.mask for s in samples])
    explainer = EXPLAINERS.build("saliency", reduce="abs_max")
    b = len(x)
    rows = []
    with model.inference():
        maps = explainer(model, x, target)
        print("importing quantus ...", flush=True)
        refs = references(model, explainer, x, target, maps, boxes, masks)
        seeds = torch.arange(b)
        with model.fused_inference():
            per_forward = median_seconds(forward_floor(model, torch.cat([x, x])), args.repeats) / (2 * b)
        per_fb = median_seconds(forward_backward_floor(model, x, target), args.repeats) / b
        for name in args.only or list(PARAMS):
            metric = METRICS.build(name, **PARAMS[name])
            ours = lambda metric=metric: metric(model, x, maps, target, annotation={"boxes": boxes, "mask": masks},  # noqa: E731
                                                explain=explainer, seeds=seeds)
            f_o, b_o = passes(model, ours)
            f_r, b_r = passes(model, refs[name])
            t_o = median_seconds(ours, args.repeats, warmup=0) / b
            t_r = median_seconds(refs[name], args.repeats, warmup=0) / b
            # floor: the forwards without a backward, then forward+backward pairs (re-run explainers)
            floor = (f_o - b_o) / b * per_forward + b_o / b * per_fb
            rows.append(dict(metric=name, params=str(PARAMS[name]), passes_ours=f"{f_o / b:g} F + {b_o / b:g} B",
                             passes_reference=f"{f_r / b:g} F + {b_r / b:g} B", ms_per_image_floor=1e3 * floor,
                             ms_per_image_ours=1e3 * t_o, ms_per_image_reference=1e3 * t_r,
                             ours_vs_floor=t_o / floor if floor else float("nan"),
                             reference_vs_floor=t_r / floor if floor else float("nan"), speedup=t_r / t_o))
            print(f"  {name}: floor {1e3 * floor:.3g}, ours {1e3 * t_o:.3g}, reference {1e3 * t_r:.3g} ms/image; "
                  f"x{t_r / t_o:.2f}", flush=True)
    print(f"builtin:synthetic-cnn, {b} images of {args.size}², maps: saliency (abs_max); medians of {args.repeats}; "
          f"torch threads {torch.get_num_threads()}")
    print(markdown(rows, ["metric", "params", "passes_ours", "passes_reference", "ms_per_image_floor",
                          "ms_per_image_ours", "ms_per_image_reference", "ours_vs_floor", "reference_vs_floor",
                          "speedup"]))


if __name__ == "__main__":
    main()
