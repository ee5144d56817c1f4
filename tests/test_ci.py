"""The CI entry point `.ci/run`: it fails (does not warn and go on) when Fashion-MNIST cannot be
installed, and `make test` stays the README's test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ci_run(tmp_path: Path, apt_get: str | None) -> subprocess.CompletedProcess:
    """.ci/run with the Fashion-MNIST file missing and `apt-get` replaced (None: absent). `make` is a
    stub that records its call, so nothing is installed or tested."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'make_called'}\n")
    if apt_get is not None:
        (bin_dir / "apt-get").write_text(f"#!/bin/sh\n{apt_get}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))  # the only other program the script calls
    env = {**os.environ, "PATH": str(bin_dir), "XAI_FASHION_MNIST_FILE": str(tmp_path / "none.gz")}
    return subprocess.run([shutil.which("bash"), str(ROOT / ".ci/run")], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("apt_get,message", [("exit 100", "could not install dataset-fashion-mnist"),
                                             ("exit 0", "is missing"),
                                             (None, "no apt-get")])
def test_ci_fails_when_fashion_mnist_cannot_be_installed(tmp_path, apt_get, message):
    res = ci_run(tmp_path, apt_get)
    assert res.returncode == 1 and message in res.stderr, res.stderr
    assert not (tmp_path / "make_called").exists()  # stopped before the tests


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test\s", readme, re.M)
    assert (ROOT / ".ci/run").read_text().rstrip().endswith("make test")
    recipe = re.search(r"^test: .*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "-m pytest" in recipe and "not slow" not in recipe  # the whole suite, slow tests included
