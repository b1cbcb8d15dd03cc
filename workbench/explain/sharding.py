"""``workbench explain`` under ``torchrun``: which units a rank computes, its device, and the barriers.

torchrun starts one process per GPU with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in the environment.
Each rank joins the process group (NCCL on GPUs, gloo on CPUs: :func:`workbench.sae.distributed.join_process_group`),
computes the units ``i`` with ``i % world_size == rank`` of each stage into the one result store, and
waits at a barrier between stages; rank 0 renders the report after the last one. The store is the only
thing the ranks share: no tensor is sent between processes, so the result is the same as one process's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from workbench._core.devices import resolve_device

__all__ = ["Shard", "shard_of"]


@dataclass
class Shard:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False

    def mine(self, units: Sequence[int]) -> list[int]:
        """The units of ``units`` (indices into the stage's full list) this rank computes."""
        return [u for u in units if u % self.world_size == self.rank]

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def device(self, device: str | None) -> torch.device:
        """``auto`` gives ``cuda:LOCAL_RANK`` under torchrun on a GPU node, else the usual choice."""
        dev = resolve_device(device)
        if dev.type == "cuda" and dev.index is None and self.world_size > 1:
            dev = torch.device("cuda", self.local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return dev

    def close(self) -> None:
        if self.created_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def shard_of() -> Shard:
    """The shard of this process: joins the torchrun process group when ``WORLD_SIZE > 1``."""
    from workbench.sae.distributed import join_process_group

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        torch.cuda.set_device(local)  # before NCCL starts, so each rank's communicator uses its own GPU
    rank, world, created = join_process_group()
    return Shard(rank, world, int(os.environ.get("LOCAL_RANK", rank)), created)
