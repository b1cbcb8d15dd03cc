"""Timing helpers shared by the benchmark scripts: interleaved repeats, medians, machine line."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> str:
    """One line naming the hardware the figures come from."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each callable, timed in alternation so machine noise hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain text table."""
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(out)


class BatchLog:
    """A forward hook on the network recording the rows of every forward pass."""

    def __init__(self, net: torch.nn.Module):
        self.sizes: list[int] = []
        self._handle = net.register_forward_hook(lambda mod, inp, out: self.sizes.append(len(inp[0])))

    def take(self) -> list[int]:
        sizes, self.sizes = self.sizes, []
        return sizes

    def close(self) -> None:
        self._handle.remove()


def bare_passes(model, sizes: list[int], sample_shape: tuple[int, ...], device) -> Callable[[], None]:
    """A callable that runs ``model.net`` on already-normalized random batches of the recorded ``sizes``,
    under ``inference_mode``: the forward passes a method or metric made, without the method or metric."""
    xn = model.normalize(torch.rand(max(sizes), *sample_shape, device=device))

    @torch.inference_mode()
    def bare() -> None:
        for s in sizes:
            model.net(xn[:s])

    return bare
