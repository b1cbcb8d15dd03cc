"""Device helpers: the device follows the model; "auto" picks CUDA, then MPS, then CPU. And the one way
to run a module in eval mode for a call without changing the caller's mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn "auto" / None / a string into a torch.device."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU when it has none)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


@contextmanager
def eval_mode(module: torch.nn.Module | None) -> Iterator[None]:
    """Run the block with ``module`` in eval mode, then restore the mode the caller left it in (errors
    included): BatchNorm, dropout and a BatchTopK SAE's threshold must not depend on, or change with, a
    call that only reads the module. ``None`` (a plain callable, no mode) does nothing."""
    if module is None:
        yield
        return
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
