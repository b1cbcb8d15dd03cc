"""SAE checkpoints: what the trainer writes to resume exactly, and how any SAE is saved and rebuilt.

``checkpoint_dir/checkpoint.pt`` holds the SAE's class and constructor arguments (its
:meth:`~workbench.sae.base.SparseAutoencoder.spec`), its weights, the optimizer, scheduler, GradScaler,
dead-atom tracker, history, the torch CPU and CUDA random states of every rank, and the step. Files are
written under a temporary name and renamed, so a process killed at any moment leaves the previous
checkpoint intact. :func:`load_sae` rebuilds the SAE of a checkpoint (or of :func:`save_sae`'s file)
without the caller naming its class: the class is looked up in :data:`workbench.sae.base.SAES`.
"""

from __future__ import annotations

import importlib
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench._core.serialization import atomic_write_bytes
from workbench.sae.base import SAES, SparseAutoencoder

__all__ = ["CHECKPOINT_NAME", "save_sae", "load_sae", "sae_from_spec", "write_checkpoint", "read_checkpoint",
           "rng_state", "set_rng_state", "gather_rng_states"]  # fmt: skip

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "workbench.sae.checkpoint/1"
SAE_FORMAT = "workbench.sae/1"


# -- random states ---------------------------------------------------------------------------------------
def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The torch CPU random state, and the CUDA one of ``device`` when it is a GPU."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def gather_rng_states(device: torch.device, world: int) -> list[dict[str, torch.Tensor]]:
    """Every rank's random state, in rank order (a collective: every rank must call it)."""
    state = rng_state(device)
    if world == 1:
        return [state]
    import torch.distributed as dist

    states: list[Any] = [None] * world
    dist.all_gather_object(states, {k: v.cpu() for k, v in state.items()})
    return states


# -- the trainer's checkpoint ----------------------------------------------------------------------------
def write_checkpoint(path: str | os.PathLike, state: dict[str, Any], history: dict[str, Any]) -> None:
    """Write ``state`` (with the format tag) to ``path`` and ``history`` to ``history.json`` beside it,
    each atomically (temporary name, fsync, rename)."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_bytes(path.with_name("history.json"), json.dumps(history).encode())


def read_checkpoint(path: str | os.PathLike, seed: int, batch_size: int) -> dict[str, Any]:
    """The trainer's checkpoint at ``path``, checked to be one and to match ``seed`` and ``batch_size``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an SAE checkpoint (format={state.get('format')!r})")
    saved = state["config"]
    if (saved["seed"], saved["batch_size"]) != (seed, batch_size):
        raise ValueError(f"{path} was written with seed={saved['seed']}, batch_size={saved['batch_size']};"
                         f" this call has seed={seed}, batch_size={batch_size}. Pass the same values, or"
                         " resume=False to start over")  # fmt: skip
    return state


# -- any SAE -----------------------------------------------------------------------------------------------
def save_sae(sae: SparseAutoencoder, path: str | os.PathLike) -> Path:
    """Write ``sae`` (its spec and weights) to ``path`` (a ``.pt`` file), atomically; returns the path.

    :func:`load_sae` rebuilds it without knowing its class.
    """
    if not isinstance(sae, SparseAutoencoder):
        raise ValueError(f"sae: expected a SparseAutoencoder, got {type(sae).__name__}")
    buf = io.BytesIO()
    torch.save({"format": SAE_FORMAT, "sae": sae.spec(), "model": sae.state_dict()}, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def sae_from_spec(spec: dict[str, Any]) -> SparseAutoencoder:
    """A freshly initialised SAE built from a :meth:`~workbench.sae.base.SparseAutoencoder.spec`.

    The class is the one registered under ``spec["class"]`` in :data:`~workbench.sae.base.SAES` when its
    module matches, otherwise it is imported from ``spec["module"]`` (an SAE class defined elsewhere).
    """
    name, module = spec["class"], spec.get("module")
    cls = SAES.get(name) if name in SAES else None
    if cls is None or (module is not None and cls.__module__ != module):
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, TypeError) as err:
            raise ValueError(f"SAE class {name!r} of module {module!r} is neither registered nor importable;"
                             f" registered: {SAES.names()}") from err  # fmt: skip
    sae = cls(*spec.get("args", ()), **spec.get("kwargs", {}))
    if "archetypes" in spec:
        from workbench.sae.archetypal import with_archetypes

        with_archetypes(sae, **spec["archetypes"])
    return sae


def load_sae(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SparseAutoencoder:
    """The SAE saved at ``path``: a trainer checkpoint (``checkpoint.pt`` or its directory) or a file of
    :func:`save_sae`. Its class and constructor arguments come from the file; returned in eval mode.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    state = torch.load(path, map_location=map_location, weights_only=True)
    if state.get("format") not in (FORMAT, SAE_FORMAT) or "sae" not in state:
        raise ValueError(f"{path}: not an SAE file with the SAE's class and arguments"
                         f" (format={state.get('format')!r})")  # fmt: skip
    sae = sae_from_spec(state["sae"])
    sae.load_state_dict(state["model"])
    return sae.to(map_location).eval()


def spec_of(sae: nn.Module) -> dict[str, Any] | None:
    """The spec a checkpoint stores for ``sae`` (None for a module that is not a SparseAutoencoder)."""
    return sae.spec() if isinstance(sae, SparseAutoencoder) else None
