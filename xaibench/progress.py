"""What a run shows while it works: each step before and after the batches (model, chunk timing,
assembly, statistics, figures) as it starts and ends; in a terminal one progress bar over (batches ×
explainers) naming the explainer at work, its rate and the time left; in a log (not a TTY) one plain
line per finished batch; at the end a table of seconds and model passes per plug-in. `--quiet` shows
nothing; `TQDM_DISABLE` turns the bar into the plain lines; `NO_COLOR` keeps the bar uncoloured.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import IO, Any


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def display_mode(enabled: bool, stream: IO[str]) -> str:
    """`off` (quiet), `bar` (a terminal) or `lines` (a log or CI, or TQDM_DISABLE set)."""
    if not enabled:
        return "off"
    if _env_flag("TQDM_DISABLE") or not getattr(stream, "isatty", lambda: False)():
        return "lines"
    return "bar"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Steps:
    """The steps of a run outside its batches. In a terminal `[run] loading model … 0.4 s` (the
    time completes the line); in a log two lines, `[run] loading model …` when it starts and
    `[run] loading model: 0.4 s` when it ends, so a long step is visible while it runs."""

    def __init__(self, run_name: str, enabled: bool = True, stream: IO[str] | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.mode = display_mode(enabled, self.stream)
        self.run_name = run_name

    def say(self, text: str) -> None:
        if self.mode != "off":
            print(f"[{self.run_name}] {text}", file=self.stream, flush=True)

    @contextlib.contextmanager
    def step(self, what: str, show: bool = True) -> Iterator[None]:
        if self.mode == "off" or not show:
            yield
            return
        t0 = time.perf_counter()
        print(f"[{self.run_name}] {what} …", end="" if self.mode == "bar" else "\n", file=self.stream, flush=True)
        try:
            yield
        except BaseException:
            print(" failed" if self.mode == "bar" else f"[{self.run_name}] {what}: failed", file=self.stream, flush=True)
            raise
        took = f"{time.perf_counter() - t0:.1f} s"
        print(f" {took}" if self.mode == "bar" else f"[{self.run_name}] {what}: {took}", file=self.stream, flush=True)


class Progress:
    """Progress of one run's batches. The runner calls `start(name)` before an explainer (with its
    metrics) works on a batch, `done(name, images)` after it, and `batch_done(k)` after each batch.

    The time left weighs what remains: `workload` gives the images each plug-in ("explainer/<key>",
    "metric/<key>") takes in each batch still to do (a `limit` puts the costly work in the first
    batches), `costs` the run's live per-plug-in costs; left = Σ seconds-per-image × images still to
    come, plus the batches' own overhead. Without them, elapsed time per batch × batches left."""

    def __init__(self, run_name: str, n_batches: int, plugins: list[str], enabled: bool = True,
                 stream: IO[str] | None = None, workload: dict[str, list[int]] | None = None,
                 costs: dict[str, Any] | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.mode = display_mode(enabled, self.stream)
        self.run_name, self.n_batches, self.plugins = run_name, n_batches, plugins
        self.seconds: dict[str, float] = {}
        self.images: dict[str, int] = {}
        self.batch_seconds: dict[str, float] = {}
        self.batches_done = 0
        self.started = time.perf_counter()
        self._t0 = self._batch_t0 = self.started
        self.workload, self.costs = workload or {}, costs if costs is not None else {}
        self.bar: Any = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_batches * len(plugins), desc=run_name, unit="step", file=self.stream,
                            dynamic_ncols=True, leave=True, colour=None if _env_flag("NO_COLOR") else "green",
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} [{elapsed}]{postfix}")

    def rate(self, name: str) -> str:
        s, n = self.seconds.get(name, 0.0), self.images.get(name, 0)
        if not n or s <= 0:
            return ""
        return f"{n / s:.3g} img/s" if n / s >= 1 else f"{s / n:.3g} s/img"

    def time_left(self) -> float | None:
        """Seconds still to go after `batches_done` batches (see the class docstring); None before
        the first batch ends."""
        if not self.batches_done:
            return None
        elapsed = time.perf_counter() - self.started
        done, rest = slice(None, self.batches_done), slice(self.batches_done, None)
        rates: dict[str, float] = {}
        for p, counts in self.workload.items():
            cost = self.costs.get(p)
            if cost is not None and cost.images > 0:
                rates[p] = cost.seconds / cost.images
            elif sum(counts[done]):  # due in the batches done but never ran (no annotation for it)
                rates[p] = 0.0
        if self.workload and all(p in rates for p, counts in self.workload.items() if sum(counts[rest])):
            plugin_seconds = sum(c.seconds for c in self.costs.values())
            overhead = max(0.0, elapsed - plugin_seconds) / self.batches_done  # data, logits, batch files
            left = sum(rates[p] * sum(counts[rest]) for p, counts in self.workload.items() if sum(counts[rest]))
            return left + overhead * (self.n_batches - self.batches_done)
        return elapsed / self.batches_done * (self.n_batches - self.batches_done)

    def start(self, name: str) -> None:
        self._t0 = time.perf_counter()
        if self.bar is not None:
            rate, left = self.rate(name), self.time_left()
            batch = f"batch {self.batches_done + 1}/{self.n_batches}"
            eta = f"; about {_clock(left)} left" if left is not None else ""
            self.bar.set_postfix_str(f"{name} ({batch}{', ' + rate if rate else ''}){eta}", refresh=True)

    def done(self, name: str, images: int) -> None:
        spent = time.perf_counter() - self._t0
        self.seconds[name] = self.seconds.get(name, 0.0) + spent
        self.images[name] = self.images.get(name, 0) + images
        self.batch_seconds[name] = self.batch_seconds.get(name, 0.0) + spent
        if self.bar is not None:
            self.bar.update(1)

    def batch_done(self, k: int) -> None:
        self.batches_done += 1
        now = time.perf_counter()
        if self.mode == "lines":
            took, elapsed, left = now - self._batch_t0, now - self.started, self.time_left() or 0.0
            slow = sorted(self.batch_seconds.items(), key=lambda kv: -kv[1])[:3]
            slowest = ", ".join(f"{n} {s:.1f} s" for n, s in slow)
            print(f"[{self.run_name}] batch {self.batches_done}/{self.n_batches} done in {took:.1f} s (batch file {k}); "
                  f"elapsed {_clock(elapsed)}, about {_clock(left)} left; slowest: {slowest}",
                  file=self.stream, flush=True)
        self.batch_seconds = {}
        self._batch_t0 = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self, costs: dict[str, Any], wall: float) -> None:
        """The per-plug-in timing table (from run.json's costs), slowest first."""
        if self.mode == "off" or not costs:
            return
        print(timing_table(costs, wall), file=self.stream, flush=True)


def timing_table(costs: dict[str, Any], wall: float) -> str:
    """A plain-text table: plug-in, seconds, share of the wall time, images, s/image, passes/image."""
    rows = sorted(((name, c.as_dict()) for name, c in costs.items()), key=lambda r: -r[1]["seconds"])
    width = max([len("plug-in"), *(len(n) for n, _ in rows)])
    lines = [f"{'plug-in':<{width}}  {'seconds':>8}  {'share':>6}  {'images':>6}  {'s/image':>8}  {'fwd/img':>8}  "
             f"{'bwd/img':>8}"]
    for name, d in rows:
        share = d["seconds"] / wall if wall > 0 else 0.0
        lines.append(f"{name:<{width}}  {d['seconds']:8.2f}  {share:6.1%}  {d['images']:6d}  "
                     f"{d['seconds_per_image']:8.4f}  {d['forward_passes_per_image']:8.1f}  "
                     f"{d['backward_passes_per_image']:8.1f}")
    lines.append(f"{'wall time':<{width}}  {wall:8.2f}")
    return "\n".join(lines)
