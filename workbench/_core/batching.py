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

    Chosen from ``benchmarks/batch_size.py`` (rows per second of forward passes on this project's
    2-core CPU); see :data:`BATCH_SIZE_TABLE` for the measured figures. Larger batches amortize the
    per-call overhead of small images; for large images the throughput is flat beyond a few dozen rows
    and a smaller batch bounds memory. The rule keeps about ``256 * 64**2`` pixels per batch, between
    32 and 256 rows.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    rows = (256 * 64 * 64) // max(1, h * w)
    return int(min(256, max(32, rows)))
