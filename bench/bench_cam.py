"""Speed of the CAM family against its floor (the model's own forward+backward at the same batch
size) and against the grad-cam package's Score-CAM / Ablation-CAM, measured in one run.

    python bench/bench_cam.py --model builtin:synthetic-cnn --size 128 --images 8
    python bench/bench_cam.py --model torchvision:resnet50 --weights none --size 224 --images 2 --repeats 1

Prints a markdown table: method, s/image (median over repeats), ratio to the floor, model passes
per image (forward / backward images counted by the adapter), and agreement with the reference.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
from common import pearson_min

from xaibench.models.zoo import load_model
from xaibench.saliency import EXPLAINERS

GRADIENT = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam"]
DEFAULT = GRADIENT + ["smoothgradcampp", "scorecam", "ablationcam", "msgcam", "cameras"]


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:synthetic-cnn")
    p.add_argument("--weights", default="default")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--images", type=int, default=8, help="images = the batch size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", default=",".join(DEFAULT))
    p.add_argument("--chunk-size", type=int, default=64)
    p.add_argument("--no-reference", action="store_true", help="skip the grad-cam package's ScoreCAM/AblationCAM")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model, weights=args.weights)
    x = model.normalize(torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        target = model(x).argmax(1)
    layer = model.resolve_layer("auto")
    b = args.images

    def forward_backward():
        xg = x.clone().requires_grad_(True)
        model(xg).gather(1, target[:, None]).sum().backward()

    def forward():
        with torch.inference_mode():
            model(x)

    forward_backward(), forward()  # warm-up
    floor_fb, _ = timed(forward_backward, max(3, args.repeats))
    floor_f, _ = timed(forward, max(3, args.repeats))
    print(f"model {args.model} ({args.weights}) at {args.size}², batch {b}, layer {layer}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"floor forward+backward {floor_fb / b:.4f} s/image, forward {floor_f / b:.4f} s/image\n")
    print("| method | s/image | ratio to fwd+bwd floor | fwd/image | bwd/image | agreement (min Pearson) |")
    print("|---|---|---|---|---|---|")
    ours_maps = {}
    for name in args.methods.split(","):
        params = {}
        if "chunk_size" in EXPLAINERS.get(name).params:
            params["chunk_size"] = args.chunk_size
        explainer = EXPLAINERS.build(name, **params)
        try:
            explainer(model, x[:1], target[:1])  # warm-up
        except Exception as e:  # noqa: BLE001 - e.g. cam on a non-GAP head: report and go on
            print(f"| {name} | – | – | – | – | {type(e).__name__}: {str(e)[:60]} |")
            continue
        # the machine is shared: time the floor right beside each method, interleaved
        floor_times, times, maps = [], [], None
        before = model.counter.snapshot()
        for _ in range(args.repeats):
            floor_times.append(timed(forward_backward, 1)[0])
            t1, maps = timed(lambda e=explainer: e(model, x, target), 1)
            times.append(t1)
        used = model.counter.since(before)
        used = {k: v - (args.repeats * b if k.endswith("_images") else args.repeats) for k, v in used.items()}
        t, floor_fb = statistics.median(times), statistics.median(floor_times)
        ours_maps[name] = maps
        fwd, bwd = used["forward_images"] / (b * args.repeats), used["backward_images"] / (b * args.repeats)
        print(f"| {name} | {t / b:.4f} | {t / floor_fb:.2f} | {fwd:.1f} | {bwd:.1f} | floor {floor_fb / b:.4f} s/image |")
        if name == "msgcam":
            k = _channels(model, x, layer)
            print(f"| msgcam spec formula | | | {explainer.scales + math.ceil(k / explainer.group_size) + 1} | "
                  f"{explainer.scales} | N={explainer.scales} fwd+bwd + ceil({k}/{explainer.group_size})+1 fwd |")
    if args.no_reference:
        return
    from pytorch_grad_cam import AblationCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = copy.deepcopy(model.module).eval()
    for prm in module.parameters():
        prm.requires_grad_(True)
    target_layer = dict(module.named_modules())[layer]
    targets = [ClassifierOutputTarget(int(c)) for c in target]
    for name, cls in (("scorecam", ScoreCAM), ("ablationcam", AblationCAM)):
        if name not in ours_maps:
            continue
        explainer = EXPLAINERS.build(name, chunk_size=args.chunk_size)
        # the machine is shared: ours and the reference alternate, the speed-up is the median of
        # the per-repeat ratios
        ratios, times, maps = [], [], None
        with cls(module, [target_layer]) as ref:
            ref.batch_size = args.chunk_size
            for _ in range(args.repeats):
                t_ours, _ = timed(lambda e=explainer: e(model, x, target), 1)
                t_ref, maps = timed(lambda r=ref: r(x, targets), 1)
                ratios.append(t_ref / t_ours)
                times.append(t_ref)
        print(f"| grad-cam {cls.__name__} | {statistics.median(times) / b:.4f} | | | | "
              f"{pearson_min(ours_maps[name], torch.from_numpy(maps)):.4f} vs ours; "
              f"ours {statistics.median(ratios):.2f}× faster (median of {args.repeats} alternating pairs) |")


def _channels(model, x, layer) -> int:
    with torch.no_grad(), model.capture(layer) as cap:
        model(x[:1])
    return cap.activation.shape[1]


if __name__ == "__main__":
    main()
