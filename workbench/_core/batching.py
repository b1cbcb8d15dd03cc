"""One batching utility for every forward pass, so memory is bounded by ``batch_size``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from workbench._core.progress import progress as _progress


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Slices covering ``range(n)`` in chunks of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def batched_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    batch_size: int = 64,
    progress: bool = False,
    desc: str | None = None,
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in chunks along dimension 0 and concatenate the results.

    Parameters
    ----------
    fn
        Maps a chunk (B, ...) to (B, ...).
    x
        The full input; it is sliced, never copied.
    batch_size
        The largest chunk passed to ``fn``.
    progress
        Show a tqdm bar.
    """
    outs = [
        fn(x[sl]) for sl in _progress(list(iter_batches(len(x), batch_size)), enabled=progress, desc=desc)
    ]
    return torch.cat(outs, dim=0)


def default_batch_size(size: tuple[int, int] | int) -> int:
    """The default number of perturbed images per forward pass for images of ``size`` (H, W).

    ``clamp(128 * 64**2 / (H * W), 32, 256)`` rows: 128 at 64 px, 32 from 128 px up (224 px included),
    256 below 45 px. Measured with ``benchmarks/batch_size.py --quick`` (the Sobol/HSIC/RISE pipeline:
    masks, ``x * M``, forward; rows per second, 2 CPU threads shared with other jobs, load ~7):

    ========================  ====  ====  ====  ====  ====  ====  ====
    model, image size          8     16    32    64    128   256   512
    ========================  ====  ====  ====  ====  ====  ====  ====
    zoo CNN, 64 px             .     19.4  28.0  42.4  45.8  45.8  41.6
    timm resnet18, 224 px      3.9   6.2   6.8   6.1   5.1   4.9   .
    ========================  ====  ====  ====  ====  ====  ====  ====

    The best batch shrinks as images grow (a batch's activations leave the cache); beyond it the rate
    is flat or falls, and memory grows. The figures are noisy on a loaded machine: earlier runs on
    this machine measured the zoo CNN faster at 64 rows than at 256 and resnet18 faster at 256 than at
    64, so pass ``batch_size`` explicitly when throughput matters and measure on your hardware.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    rows = (128 * 64 * 64) // max(1, h * w)
    return int(min(256, max(32, rows)))
