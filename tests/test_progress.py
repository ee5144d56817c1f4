"""What a run shows: one bar in a terminal, one line per batch in a log, a timing table, nothing when quiet."""

from __future__ import annotations

import io
import re

from xaibench import runner
from xaibench.progress import Progress, display_mode
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
    table = err[err.index("plug-in"):]
    for name in ("explainer/gradcam", "explainer/saliency", "metric/deletion", "metric/insertion", "wall time"):
        assert name in table
    runner.run(tiny_config, out=tmp_path / "quiet", progress=False)
    assert capsys.readouterr().err == ""
