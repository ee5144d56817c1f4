"""`python -m xaibench …` is the `xai` command (also what `torchrun -m xaibench` starts)."""

from .cli import main

main()
