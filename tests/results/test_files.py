"""What the result files carry beyond their numbers: permissions a plain `open` would give, and the
versions of the packages that computed them."""

import os
import stat
from importlib.metadata import version

from xaibench.results import store
from xaibench.results.provenance import versions
from xaibench.results.store import atomic_write, current_umask


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


def test_the_umask_is_read_without_being_changed(monkeypatch):
    # os.umask(0) then os.umask(mask) would leave 0 in place for an instant: a file another thread
    # creates then is world-writable. Where /proc shows the umask, it is read, never set.
    previous = os.umask(0o027)
    try:
        real = os.umask
        monkeypatch.setattr(store.os, "umask", lambda mask: (_ for _ in ()).throw(AssertionError("umask set")))
        if os.path.exists("/proc/self/status"):
            assert current_umask() == 0o027
        monkeypatch.setattr(store, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")), raising=False)
        monkeypatch.setattr(store.os, "umask", real)
        assert current_umask() == 0o027  # the fallback sets and restores it
        assert real(0o027) == 0o027
    finally:
        os.umask(previous)


def test_versions_name_the_installed_zennit():
    assert versions()["zennit"] == version("zennit") != "unknown"
