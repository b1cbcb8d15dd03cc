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


def default_batch_size(size: tuple[int, int] | int, device: torch.device | str | None = None) -> int:
    """The default number of perturbed images per forward pass for images of ``size`` (H, W).

    On a CPU: ``clamp(64 * 64**2 / (H * W), 8, 256)`` rows: 64 at 64 px, 16 at 128 px, 8 at 224 px,
    256 below 33 px. Measured with ``benchmarks/batch_size.py --quick`` (the Sobol/HSIC/RISE pipeline:
    masks, ``x * M``, forward; rows per second, 2 CPU threads, nothing else running):

    ========================  =====  =====  =====  =====  =====  =====  =====
    model, image size           8     16     32     64     128    256    512
    ========================  =====  =====  =====  =====  =====  =====  =====
    zoo CNN, 64 px              .     559    583    586    570    374    284
    timm resnet18, 224 px      38.3   34.2   30.2   27.0   25.8   25.5    .
    zoo CNN, 64 px, 1 thread   289    298    304    299    299    198    154
    resnet18, 224 px, 1 thr.   19.6   17.8   15.9   14.3   13.1   13.5    .
    ========================  =====  =====  =====  =====  =====  =====  =====

    (The 1-thread rows: contiguous batches, 2026-12-03; the zoo CNN's first column is batch 8. On one
    thread the plateau is flat from 8 to 128 rows at 64 px, so the same rule serves.)

    On a CPU the rate peaks once a batch's activations fill the cache and falls beyond it (the zoo CNN
    runs 1.6x slower at 256 rows than at 64; resnet18 1.5x slower at 256 than at 8), so the best batch
    shrinks as images grow. On an accelerator (``device`` not a CPU) larger batches fill the device:
    ``clamp(256 * 224**2 / (H * W), 64, 1024)`` rows, 256 at 224 px; this rule is not measured here
    (no GPU on the project's machines): pass ``batch_size`` explicitly, and measure with the benchmark.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if device is not None and torch.device(device).type != "cpu":
        return int(min(1024, max(64, (256 * 224 * 224) // max(1, h * w))))
    rows = (64 * 64 * 64) // max(1, h * w)
    return int(min(256, max(8, rows)))
