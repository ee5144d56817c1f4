"""SIGKILL at random points of a run, then `--resume`: the results equal an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_distributed import arrays, config


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    cfg = config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "xaibench", "run", str(cfg), "-q", "--out"]
    ref = subprocess.run([*run, str(tmp_path / "ref")], env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    expected = arrays(tmp_path / "ref" / "results.h5")
    killed_mid_run = 0
    for seed in range(5):
        out = tmp_path / f"run{seed}"
        proc = subprocess.Popen([*run, str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(random.Random(seed).uniform(1.0, 8.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_mid_run += not (out / "results.h5").exists()
        if not (out / "run.json").exists():  # killed before the run folder was claimed: start anew
            cmd = [*run, str(out)]
        else:
            cmd = [*run, str(out), "--resume"]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        got = arrays(out / "results.h5")
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"seed {seed}: {key}")
        for name in ("scores.csv", "summary.csv", "errors.csv"):
            assert (out / name).read_text() == (tmp_path / "ref" / name).read_text(), (seed, name)
    assert killed_mid_run >= 1  # at least one kill landed before the results were assembled
