"""The README's CNN-vs-ViT leaderboard: configs/examples/synthetic-vit.yaml run on the built-in ViT and,
with the explainers that apply to it, on the built-in CNN (same images, metrics and seed), side by side.

    python scripts/cnn_vs_vit.py                       # runs both into results/cnn-vs-vit/, prints markdown
    python scripts/cnn_vs_vit.py --out DIR --set dataset.limit=16 -m insertion -m energy_pointing_game

Each cell is `mean (rank group)` within its own model's run (group 1: not significantly different from
that model's leader, paired Wilcoxon with Holm, as `xai compare`); `—` where the explainer does not
apply to the model. A finished run in the output folder is reused, never overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import yaml

from xaibench import api
from xaibench.models.zoo import load_model
from xaibench.saliency import EXPLAINERS
from xaibench.saliency.base import unmet_needs

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "examples" / "synthetic-vit.yaml"
MODELS = {"cnn": "builtin:synthetic-cnn", "vit": "builtin:synthetic-vit"}


def explainer_name(entry) -> str:
    return entry if isinstance(entry, str) else entry["name"]


def config_for(model: str) -> dict:
    """The ViT example config with `model` and only the explainers that apply to it."""
    config = yaml.safe_load(CONFIG.read_text())
    adapter = load_model(model, weights="none")
    config["name"] = f"synthetic-{model.split(':')[-1].split('-')[-1]}-twin"
    config["model"]["name"] = model
    config["explainers"] = [e for e in config["explainers"]
                            if not unmet_needs(EXPLAINERS.get(explainer_name(e)).obj, adapter)]
    return config


def run_once(model: str, folder: Path, overrides: list[str]) -> Path:
    if (folder / "summary.csv").exists():
        print(f"reusing {folder}", flush=True)
        return folder
    return api.run(config_for(model), overrides, out=folder, resume=folder.exists())


def cell(row: pd.Series) -> str:
    group = "" if pd.isna(row["group"]) else f" ({int(row['group'])})"
    return f"{row['mean']:.3g}{group}"


def side_by_side(runs: dict[str, Path], metrics: list[str] | None = None) -> pd.DataFrame:
    """explainer × (metric, model) cells (every per-image metric, or `metrics`); explainers in the
    ViT config's order, controls last."""
    frames = []
    for key, folder in runs.items():
        board = api.compare([folder])
        board = board[~board["metric"].str.contains(":")]
        if metrics:
            board = board[board["metric"].isin(metrics)]
        frames.append(board.assign(model=key, cell=board.apply(cell, axis=1)))
    long = pd.concat(frames)
    table = long.pivot_table(index="explainer", columns=["metric", "model"], values="cell", aggfunc="first")
    order = [explainer_name(e) for e in yaml.safe_load(CONFIG.read_text())["explainers"]]
    table = table.reindex([e for e in order if e in table.index])
    metrics = metrics or list(dict.fromkeys(long["metric"]))
    return table.reindex(columns=pd.MultiIndex.from_product([metrics, list(runs)])).fillna("—")


def markdown(table: pd.DataFrame) -> str:
    head = ["explainer"] + [f"{metric} {model.upper()}" for metric, model in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([name, *row]) + " |" for name, row in zip(table.index, table.to_numpy())]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/cnn-vs-vit"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override, as xai run --set")
    ap.add_argument("-m", "--metric", dest="metrics", action="append", default=None, help="only this metric; repeat")
    args = ap.parse_args()
    runs = {key: run_once(model, args.out / key, args.overrides) for key, model in MODELS.items()}
    text = markdown(side_by_side(runs, args.metrics))
    (args.out / "cnn-vs-vit.md").write_text(text + "\n")
    print(text)
    print(f"\nwrote {args.out / 'cnn-vs-vit.md'}")


if __name__ == "__main__":
    main()
