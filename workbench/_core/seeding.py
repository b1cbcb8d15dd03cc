"""Randomness only through seeds: same seed, same result."""

from __future__ import annotations

import torch


def make_generator(seed: int | torch.Generator | None, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator from a seed (or the generator itself, passed through)."""
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else int(seed))
    return g
