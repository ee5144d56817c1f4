"""What the result files carry beyond their numbers: permissions a plain `open` would give, and the
versions of the packages that computed them."""

import os
import stat
from importlib.metadata import version

from xaibench.results.provenance import versions
from xaibench.results.store import atomic_write


def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "summary.csv", "a,b\n")
        with open(tmp_path / "plain.csv", "w") as f:
            f.write("a,b\n")
        os.umask(0o077)
        atomic_write(tmp_path / "private.csv", "a,b\n")
    finally:
        os.umask(previous)
    mode = lambda name: stat.S_IMODE((tmp_path / name).stat().st_mode)  # noqa: E731
    assert mode("summary.csv") == mode("plain.csv") == 0o644  # mkstemp alone leaves 0600: others cannot read
    assert mode("private.csv") == 0o600
    assert (tmp_path / "summary.csv").read_text() == "a,b\n" and len(list(tmp_path.iterdir())) == 3


def test_versions_name_the_installed_zennit():
    assert versions()["zennit"] == version("zennit") != "unknown"
