"""Multi-process runs under `torchrun`: each rank explains a disjoint, deterministic shard of
the batches; rank 0 gathers the shard files and assembles exactly what one process writes.

torch.distributed is the engine (gloo on CPU, NCCL on CUDA); nothing home-made about transport.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .errors import OutputError, XaiError


@dataclass
class Ranks:
    """This process's place in a `torchrun` launch (rank 0 of 1 when launched plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """A rank uses its own GPU (`cuda:LOCAL_RANK`) when the run is on CUDA."""
        if self.active and requested.type == "cuda" and requested.index is None:
            return torch.device("cuda", self.local_rank)
        return requested

    def start(self, device: torch.device) -> None:
        if self.active and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def shard(self, batches: list[int]) -> list[int]:
        """The batches this rank computes: every world-th one, starting at its rank."""
        return [k for k in batches if k % self.world == self.rank]

    def share(self, fn, *args: Any) -> Any:
        """Run `fn` on rank 0 and hand its result (or its XaiError) to every rank."""
        if not self.active:
            return fn(*args)
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn(*args))
            except XaiError as e:
                box[0] = ("error", e)
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise value
        return value

    def gather_files(self, files, n_batches: int) -> None:
        """Bring every batch file to rank 0 (a no-op on a shared filesystem): rank 0 names the
        batches it cannot see, the ranks that computed them send their bytes."""
        if not self.active:
            return
        missing = [sorted(set(range(n_batches)) - files.done())] if self.is_main else [None]
        dist.broadcast_object_list(missing, src=0)
        mine = {k: files.path(k).read_bytes() for k in missing[0] if k in files.done()}
        gathered: list[Any] = [None] * self.world if self.is_main else None
        dist.gather_object(mine, gathered, dst=0)
        if self.is_main:
            for part in gathered:
                for k, data in part.items():
                    tmp = files.path(k).with_suffix(".part")
                    tmp.write_bytes(data)
                    os.replace(tmp, files.path(k))
            still = set(range(n_batches)) - files.done()
            if still:
                raise OutputError(f"batches {sorted(still)[:5]} were computed by no rank; run again with --resume")
