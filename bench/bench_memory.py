"""Peak memory of every explainer and chunked metric under `chunk_size: auto` (issue 9): each
plug-in runs in its own process so its high-water RSS is its own; reported beside the budget.

    .venv/bin/python bench/bench_memory.py [--budget-gb 0.25] [--batch 8] [--size 128] [NAME ...]

Per plug-in: the chunk `auto` resolved to, the peak RSS above the process's peak after loading
the model and one forward+backward of the batch (the floor), and the same with a fixed large
chunk (`--fixed 1024`) for contrast. On CUDA the same is read from the allocator's peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from common import LIGHT_SETTINGS

MiB = 2**20
METRIC_NAMES = ("deletion", "insertion", "road_combined")
LIGHT = LIGHT_SETTINGS["quickstart"]


def peak_bytes(device: torch.device) -> int:
    """The process's high-water mark: CUDA allocator peak, else VmHWM of /proc/self/status."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found (Linux only)")


def measure(name: str, chunk: str, budget_gb: float, batch: int, size: int) -> dict:
    """Run one plug-in once on `batch` synthetic images; return its peak memory above the floor."""
    from xaibench.datasets.synthetic import SyntheticShapes
    from xaibench.memory import build_sized
    from xaibench.metrics import METRICS
    from xaibench.models.zoo import load_model
    from xaibench.saliency import EXPLAINERS
    from xaibench.tensorops import target_scores

    torch.manual_seed(0)
    model = load_model("builtin:synthetic-cnn")
    data = SyntheticShapes(split="test", image_size=size, n_images=batch, cache=False)
    x = model.normalize(torch.stack([data[i].image for i in range(batch)]).to(model.device))
    target = torch.tensor([data[i].label for i in range(batch)], device=model.device)
    shape = tuple(x.shape[1:])
    with torch.enable_grad():  # the floor: what any explainer of this batch needs anyway
        xg = x.clone().requires_grad_(True)
        torch.autograd.grad(target_scores(model(xg), target).sum(), xg)
    is_metric = name in METRICS
    registry = METRICS if is_metric else EXPLAINERS
    params = dict(LIGHT.get(name, {}))
    chunked = "chunk_size" in registry.get(name).params
    if chunked:
        params["chunk_size"] = chunk if chunk == "auto" else int(chunk)
    if "scale_batch" in registry.get(name).params:  # MSG-CAM's gradient passes, sized per scale
        params["scale_batch"] = chunk if chunk == "auto" else int(chunk)
    plugin = build_sized(registry, name, params, model, shape, not is_metric, budget_gb)
    floor = peak_bytes(model.device)
    if is_metric:
        maps = EXPLAINERS.build("gradcam")(model, x, target)
        floor = peak_bytes(model.device)
        plugin(model, x, maps, target)
    else:
        plugin(model, x, target)
    return {"name": name, "chunk": getattr(plugin, "chunk_size", "-"), "floor_mib": floor / MiB,
            "extra_mib": (peak_bytes(model.device) - floor) / MiB}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*")
    p.add_argument("--budget-gb", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--fixed", default="1024", help="the fixed chunk_size to contrast with auto")
    p.add_argument("--one", nargs=2, metavar=("NAME", "CHUNK"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(a.one[0], a.one[1], a.budget_gb, a.batch, a.size)))
        return
    from xaibench.saliency import EXPLAINERS

    names = a.names or [*EXPLAINERS.names(), *METRIC_NAMES]
    print(f"builtin:synthetic-cnn, {a.batch} images of {a.size}², budget {a.budget_gb * 1024:.0f} MiB; "
          "extra = peak above the floor (model + one forward+backward of the batch)\n")
    print(f"| plug-in | auto chunk | extra MiB (auto) | within budget | extra MiB (chunk {a.fixed}) |")
    print("|---|---|---|---|---|")
    budget_mib = a.budget_gb * 1024
    for name in names:
        rows = {}
        for chunk in ("auto", a.fixed):
            cmd = [sys.executable, __file__, "--one", name, chunk, "--budget-gb", str(a.budget_gb),
                   "--batch", str(a.batch), "--size", str(a.size)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{name} ({chunk}) failed:\n{out.stderr[-2000:]}")
            rows[chunk] = json.loads(out.stdout.strip().splitlines()[-1])
            if rows[chunk]["chunk"] == "-":
                break  # not chunked: one row is the whole story
        auto = rows["auto"]
        fixed = f"{rows[a.fixed]['extra_mib']:.0f}" if a.fixed in rows else "(not chunked)"
        within = "yes" if auto["extra_mib"] <= budget_mib else "NO"
        print(f"| {name} | {auto['chunk']} | {auto['extra_mib']:.0f} | {within} | {fixed} |", flush=True)


if __name__ == "__main__":
    main()
