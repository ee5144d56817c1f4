"""Interrupted and sharded runs for the tests (not a test file): a small resnet18 config of two
batches, results compared bit for bit, torchrun on a port the OS hands out, and — run as a script —
`xai` that SIGKILLs its own process at a chosen moment:

    python tests/interrupt.py POINT K run CONFIG --out RUN ...

POINT: `after_batch` (batch K's file complete), `mid_write` (half of batch K's file written to its
temporary file), `mid_batch` (batch K computed for the first explainer only), `assembly` (results.h5
and scores.csv written, summary.csv not).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import yaml

N_BATCHES = 2
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def config(folder: Path) -> Path:
    cfg = {
        "name": "dist",
        "model": {"name": "torchvision:resnet18", "weights": "none"},
        "dataset": {"name": "synthetic", "limit": 4 * N_BATCHES, "batch_size": 4, "num_workers": 0, "image_size": 32,
                    "root": str(folder / "cache"), "params": {"n_images": 8}},
        "explainers": ["gradcam", "saliency"],
        "metrics": [{"name": "deletion", "params": {"steps": 4}}, {"name": "insertion", "params": {"steps": 4}}],
        "output": {"figures": False},
    }
    path = folder / "dist.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def arrays(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def assert_same_run(got: Path, expected: Path, what: str = "") -> None:
    """Bit-identical results.h5 arrays and identical CSV files."""
    a, b = arrays(expected / "results.h5"), arrays(got / "results.h5")
    assert a.keys() == b.keys(), what
    for key in a:
        np.testing.assert_array_equal(b[key], a[key], err_msg=f"{what}: {key}")
    for name in ("scores.csv", "summary.csv", "errors.csv"):
        assert (got / name).read_text() == (expected / name).read_text(), (what, name)


def xai(*args: str, kill: tuple[str, int] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m xaibench ARGS` in a fresh process (one OpenMP thread), or through this script's kill points."""
    pre = [sys.executable, __file__, kill[0], str(kill[1])] if kill else [sys.executable, "-m", "xaibench"]
    return subprocess.run([*pre, *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(ranks: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "xaibench", *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str, k: int) -> None:
    import numpy

    from xaibench import runner
    from xaibench.results import store

    if point == "after_batch":
        real_write = store.BatchFiles.write

        def write(self, kk, data):
            real_write(self, kk, data)
            if kk == k:
                _die()

        store.BatchFiles.write = write
    elif point == "mid_write":
        real_savez, real_write = numpy.savez, store.BatchFiles.write

        def write(self, kk, data):
            if kk == k:
                def half_savez(f, **packed):
                    import io

                    buf = io.BytesIO()
                    real_savez(buf, **packed)
                    f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                    _die()

                numpy.savez = half_savez
            real_write(self, kk, data)

        store.BatchFiles.write = write
    elif point == "mid_batch":
        real_explain = runner.BatchWork.explain

        def explain(self, slot, spec, explainer):
            if self.k == k and slot == 1:
                _die()
            return real_explain(self, slot, spec, explainer)  # the images explained (for the progress display)

        runner.BatchWork.explain = explain
    elif point == "assembly":
        real_atomic = store.atomic_write

        def atomic_write(path, write, mode="w"):
            if Path(path).name == "summary.csv":
                _die()
            real_atomic(path, write, mode)

        store.atomic_write = atomic_write
    else:
        raise SystemExit(f"unknown kill point {point}")


if __name__ == "__main__":
    _arm(sys.argv[1], int(sys.argv[2]))
    from xaibench.cli import main

    sys.argv = ["xai", *sys.argv[3:]]
    sys.exit(main())
