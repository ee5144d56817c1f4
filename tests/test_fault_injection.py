"""SIGKILL at moments the test controls — inside a batch, right after a batch file, half-way through
writing a batch file, during assembly, and from outside once the first batch file appears — then
`--resume`: the results equal an uninterrupted run bit for bit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from interrupt import ENV, assert_same_run, xai

from xaibench import runner

# point → what the kill leaves: batch files, whether results.h5 exists
KILLS = {
    ("mid_batch", 0): ([], False),
    ("after_batch", 0): (["batch_000000.npz"], False),
    ("mid_write", 1): (["batch_000000.npz"], False),
    ("assembly", 0): (["batch_000000.npz", "batch_000001.npz"], True),
}


def resume_and_compare(cfg, out, ref, what):
    runner.run(cfg, out=out, resume=True, progress=False)
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    assert not [p.name for p in out.rglob("*.tmp")]  # the killed process's half-written files are gone
    assert_same_run(out, ref, what)


@pytest.mark.slow
@pytest.mark.parametrize("point,k", list(KILLS))
def test_killed_at_a_chosen_moment_then_resumed_is_bit_identical(reference_run, tmp_path, one_thread, point, k):
    cfg, ref = reference_run
    out = tmp_path / "run"
    res = xai("run", str(cfg), "-q", "--out", str(out), kill=(point, k))
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    files, assembled = KILLS[(point, k)]
    assert sorted(p.name for p in (out / ".partial").glob("batch_*.npz")) == files
    assert (out / "results.h5").exists() == assembled and not (out / "summary.csv").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    if point == "mid_write":  # the half-written temporary file is there, and never read as a batch
        assert len(list((out / ".partial").glob(".batch_000001.npz.*.tmp"))) == 1
    resume_and_compare(cfg, out, ref, f"{point} {k}")


@pytest.mark.slow
def test_killed_from_outside_once_the_first_batch_file_appears(reference_run, tmp_path, one_thread):
    cfg, ref = reference_run
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "xaibench", "run", str(cfg), "-q", "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / ".partial" / "batch_000000.npz"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, proc.stderr.read()[-2000:]  # killed, not finished
    assert first.exists() and not (out / "summary.csv").exists()
    resume_and_compare(cfg, out, ref, "outside")
