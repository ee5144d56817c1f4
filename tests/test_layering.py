"""The layering of the package is a checked contract (docs/architecture.md "Layering rules"):
import-linter's contracts in pyproject.toml must all be kept."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    res = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


def test_the_cli_starts_without_importing_torchvision():
    # importing torchvision pulls in torch._dynamo (through torchvision.ops): ~2 s of every `xai` command;
    # the built-in models, the photos dataset and the torchvision model family import it when they run
    code = "import sys, xaibench.cli; print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
