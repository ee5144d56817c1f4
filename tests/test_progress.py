"""What a run shows: one bar in a terminal, one line per batch in a log, a timing table, nothing when quiet."""

from __future__ import annotations

import io
import re

from xaibench import runner
from xaibench.progress import Progress, Steps, display_mode
from xaibench.results.provenance import Cost


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drive(progress: Progress, batches: int, plugins: list[str]) -> None:
    for k in range(batches):
        for name in plugins:
            progress.start(name)
            progress.done(name, 4)
        progress.batch_done(k)
    progress.close()


def test_a_terminal_gets_one_bar_over_batches_times_plugins(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    p = Progress("demo", 3, ["gradcam", "rise"], stream=out)
    assert p.mode == "bar"
    drive(p, 3, ["gradcam", "rise"])
    text = out.getvalue()
    assert "6/6" in text and "batch 3/3" in text and "rise" in text and "img/s" in text
    assert len(set(re.findall(r"(\w+): +\d+%", text))) == 1  # one bar, however often redrawn
    assert "[demo] batch" not in text  # no log lines in a terminal


def test_a_log_gets_one_plain_line_per_finished_batch(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    out = io.StringIO()  # not a TTY
    p = Progress("demo", 3, ["gradcam", "rise"], stream=out)
    assert p.mode == "lines"
    drive(p, 3, ["gradcam", "rise"])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("[demo] batch ") for line in lines)
    assert "batch 3/3 done" in lines[-1] and "slowest:" in lines[0] and "\r" not in out.getvalue()


def test_quiet_tqdm_disable_and_no_color(monkeypatch):
    out = Terminal()
    p = Progress("demo", 2, ["gradcam"], enabled=False, stream=out)
    drive(p, 2, ["gradcam"])
    p.summary({"explainer/gradcam": Cost(1.0, 4, {"forward_images": 4, "backward_images": 4})}, 2.0)
    assert out.getvalue() == "" and p.mode == "off"
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert display_mode(True, Terminal()) == "lines"
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert display_mode(True, Terminal()) == "bar"
    monkeypatch.setenv("NO_COLOR", "1")
    assert Progress("demo", 1, ["gradcam"], stream=Terminal()).bar.colour is None
    monkeypatch.delenv("NO_COLOR")
    assert Progress("demo", 1, ["gradcam"], stream=Terminal()).bar.colour == "green"


def test_a_run_logs_one_line_per_batch_and_a_timing_table(tiny_config, tmp_path, capsys):
    runner.run(tiny_config, out=tmp_path / "run", progress=True)  # 12 images, batches of 4
    err = capsys.readouterr().err
    batch_lines = [line for line in err.splitlines() if line.startswith("[tiny] batch")]
    assert len(batch_lines) == 3
    steps = [line for line in err.splitlines() if line.startswith("[tiny] ") and line not in batch_lines]
    # each step outside the batches: a line when it starts, one with its time when it ends
    for what in ("loading model", "writing results.h5", "statistics (stats/)"):
        started = [line for line in steps if what in line and line.endswith("…")]
        ended = [line for line in steps if what in line and re.search(r": \d+\.\d s$", line)]
        assert len(started) == 1 and len(ended) == 1, (what, steps)
    assert err.index("loading model") < err.index("[tiny] batch 1/3") < err.index("writing results.h5")
    table = err[err.index("plug-in"):]
    for name in ("explainer/gradcam", "explainer/saliency", "metric/deletion", "metric/insertion", "wall time"):
        assert name in table
    runner.run(tiny_config, out=tmp_path / "quiet", progress=False)
    assert capsys.readouterr().err == ""


class FakeCost:
    def __init__(self, seconds: float, images: int):
        self.seconds, self.images = seconds, images


def test_time_left_weighs_the_images_each_plugin_still_has(monkeypatch):
    """With `limit`, the costly plug-ins work in the first batch only: after it, the time left is what
    the cheap ones still take, not the first batch's time again (the old estimate)."""
    now = [0.0]
    monkeypatch.setattr("xaibench.progress.time.perf_counter", lambda: now[0])
    workload = {"explainer/rise": [4, 0, 0], "explainer/gradcam": [4, 4, 4], "metric/deletion": [8, 4, 4]}
    costs = {"explainer/rise": FakeCost(80.0, 4), "explainer/gradcam": FakeCost(2.0, 4),
             "metric/deletion": FakeCost(16.0, 8)}
    p = Progress("demo", 3, ["rise", "gradcam"], enabled=False, workload=workload, costs=costs)
    assert p.time_left() is None
    now[0] = 100.0
    p.batch_done(0)  # at t = 100: 98 s in plug-ins, 2 s of overhead per batch
    # gradcam 0.5 s/img × 8 + deletion 2 s/img × 8 + 2 batches × 2 s overhead = 24 s (not 200 s)
    assert abs(p.time_left() - 24.0) < 1e-9
    # a plug-in due in batch 0 that never ran (its annotation is missing) costs nothing
    workload["metric/box_iou"] = [4, 4, 4]
    assert abs(p.time_left() - 24.0) < 1e-9
    # a plug-in whose work is still all to come makes the rate unknown: elapsed per batch instead
    workload["explainer/late"] = [0, 4, 0]
    assert abs(p.time_left() - 200.0) < 1e-9


def test_steps_in_a_terminal_complete_their_own_line():
    out = Terminal()
    steps = Steps("demo", stream=out)
    with steps.step("loading model m"):
        pass
    with steps.step("hidden", show=False):
        pass
    try:
        with steps.step("figures"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and re.fullmatch(r"\[demo\] loading model m … \d+\.\d s", lines[0])
    assert lines[1] == "[demo] figures … failed"
    quiet = Terminal()
    with Steps("demo", enabled=False, stream=quiet).step("x"):
        pass
    assert quiet.getvalue() == ""
