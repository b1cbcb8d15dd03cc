"""The SAE trainer under ``torchrun``: joining the process group, and the reductions over ranks.

The logged R2 has the definition of :func:`workbench.sae.metrics.r2` but is computed from per-step
sufficient statistics: under DDP the ranks sum them at log time, so the logged value is the global
batch's, equal to a 1-process run's, at no per-step communication.
"""

from __future__ import annotations

import atexit
import os

import torch

__all__ = ["join_process_group", "all_mean", "all_max", "broadcast_module", "r2_stats", "r2_mean"]


def join_process_group() -> tuple[int, int, bool]:
    """(rank, world_size, created): joins the torchrun process group when the environment names one."""
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # Leave the group we joined before the interpreter finalizes, even if the script never does: a gloo
        # group torn down during finalization can abort its process ("terminate called without an active
        # exception", SIGABRT; seen once on rank 1 of tests/test_sae_training.py's DDP test in a full suite).
        atexit.register(_leave_process_group)
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def all_mean(t: torch.Tensor, world: int) -> torch.Tensor:
    """Mean of ``t`` over the ranks (``t`` itself in one process)."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
        t = t / world
    return t


def all_max(t: torch.Tensor, world: int) -> torch.Tensor:
    """Elementwise maximum of a bool tensor over the ranks (an atom is alive when it fired on any rank)."""
    if world > 1:
        import torch.distributed as dist

        t = t.to(torch.uint8)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        t = t.bool()
    return t


def broadcast_module(module: torch.nn.Module, world: int) -> None:
    """Copy rank 0's parameters and buffers to every rank (after ranks changed them differently)."""
    if world > 1:
        import torch.distributed as dist

        for t in (*module.parameters(), *module.buffers()):
            dist.broadcast(t.data, 0)


def r2_stats(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-step sums (1 + 4d values) from which the R2 of the union of the ranks' batches follows.

    float64, because pooling the ranks' variances subtracts squared means that can dwarf the variance.
    """
    dt = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
    m = x.mean(0)
    rows = x.new_full((1,), float(len(x)), dtype=dt)
    sse = (x - x_hat).pow(2).sum(0).to(dt)
    m2 = (x - m).pow(2).sum(0).to(dt)  # centred on this rank's mean: no cancellation here
    md = m.to(dt)
    return torch.cat([rows, sse, m2, rows * md.pow(2), rows * md])


def r2_mean(stats: torch.Tensor, world: int) -> float:
    """Mean over steps of each global batch's R2, from stacked :func:`r2_stats` (steps, 1 + 4d)."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(stats)
    rows, (sse, m2, q, s) = stats[:, :1], stats[:, 1:].chunk(4, dim=1)
    sst = m2 + q - s.pow(2) / rows  # per dimension, about the global batch's mean
    keep = sst > 1e-12 * sst.amax(1, keepdim=True).clamp_min(1e-30)  # constant dimensions: undefined
    r2 = ((1 - sse / sst.clamp_min(1e-30)) * keep).sum(1) / keep.sum(1).clamp_min(1)
    return float(r2.mean())
