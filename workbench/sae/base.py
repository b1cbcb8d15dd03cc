"""The one interface every sparse dictionary implements.

A dictionary maps activations ``x`` (N, d) to sparse codes (N, n_atoms) and back:

- ``encode(x) -> codes``: the part each variant overrides (ReLU, TopK, BatchTopK, JumpReLU, matching
  pursuit, SpaDE, ...);
- ``decode(codes) -> x_hat = codes @ dictionary + bias``;
- ``dictionary``: the (n_atoms, d) matrix of atoms (a property: RA-SAE builds it from archetypes);
- ``forward(x) -> (codes, x_hat)``;
- ``loss(x, codes, x_hat) -> dict``: every variant returns the same keys, ``"loss"`` (the scalar to
  minimize) and ``"mse"``, plus its own terms (``"l1"``, ``"aux"``, ...). The trainer only reads
  ``"loss"`` and logs the rest;
- ``constrain()``: called by the trainer after every optimizer step for constraints that a gradient
  step breaks (unit-norm atoms, RA-SAE's row-stochastic W). A no-op by default;
- ``aux_loss(x, codes, x_hat, dead_mask)`` and ``revive(x, dead_mask)``: what the trainer does about
  dead atoms (an auxiliary loss term, re-seeding atoms). Declared here as no-ops, with one argument order
  (data first, then the dead mask); a variant overrides the one it needs (TopK-aux, MP-SAE's
  resampling) and the trainer calls only overridden ones;
- ``spec()``: the class and constructor arguments the SAE was built with (recorded automatically when
  any subclass is constructed), which checkpoints store so that
  :func:`workbench.sae.checkpoints.load_sae` rebuilds the SAE without the caller naming its class.

Every SAE class registers itself in :data:`SAES` (a :class:`~workbench._core.registry.Registry`, with its
paper), which ``load_sae`` uses to find the class of a checkpoint.

``train()`` and ``eval()`` have no hidden side effects, and the device follows the module: nothing is
created on a device other than the parameters'.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn

from workbench._core.devices import eval_mode, module_device
from workbench._core.registry import Registry
from workbench._core.validation import check_int

__all__ = ["SAES", "SparseAutoencoder", "check_k", "unit_rows", "encode_rows"]

#: Every SAE class, by class name, with its paper (``load_sae`` looks classes up here).
SAES: Registry[type] = Registry("SAE class", populate=("workbench.sae",))


def check_k(k: int, n_atoms: int, name: str = "k") -> int:
    """``k`` as an int in [1, n_atoms], or a clear error."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_atoms:
        raise ValueError(f"{name}: expected an integer in [1, n_atoms={n_atoms}], got {k!r}")
    return k


def unit_rows(w: torch.Tensor) -> torch.Tensor:
    """Each row of ``w`` divided by its Euclidean norm (zero rows stay zero): unit-norm atoms.

    The one helper for unit-norm rows (dictionaries, synthetic atoms, cosines between dictionaries);
    it keeps ``w``'s device, dtype and autograd graph.
    """
    return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _records_arguments(init: Any) -> Any:
    """Wrap a constructor so that the outermost call records its arguments on the instance."""
    if getattr(init, "_records_arguments", False):
        return init
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        if "_init_arguments" not in self.__dict__:  # the outermost constructor: the one the caller called
            bound = signature.bind(self, *args, **kwargs)
            object.__setattr__(self, "_init_arguments", (tuple(bound.args[1:]), dict(bound.kwargs)))
        init(self, *args, **kwargs)

    wrapper._records_arguments = True
    return wrapper


def _portable(value: Any) -> Any:
    """A constructor argument as a checkpoint stores it: tensors detached on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, list | tuple):
        return type(value)(_portable(v) for v in value)
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    return value


class SparseAutoencoder(nn.Module):
    """Base class: a linear decoder with a bias, and the shared loss (mean squared error).

    Parameters
    ----------
    d
        Dimension of the activations.
    n_atoms
        Number of atoms (the width of the codes).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _records_arguments(cls.__dict__["__init__"])

    def __init__(self, d: int, n_atoms: int):
        super().__init__()
        check_int(d, "d")
        check_int(n_atoms, "n_atoms")
        self.d = d
        self.n_atoms = n_atoms
        self.bias = nn.Parameter(torch.zeros(d))

    # -- the parts a variant overrides ------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (N, n_atoms) of activations (N, d)."""
        raise NotImplementedError

    @property
    def dictionary(self) -> torch.Tensor:
        """The atoms, (n_atoms, d)."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``codes @ dictionary + bias`` (N, d)."""
        return torch.addmm(self.bias, codes, self.dictionary)  # one fused kernel for product and bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x)
        return codes, self.decode(codes)

    def loss(self, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss": ..., "mse": ...}``; variants add their own terms and keep these two keys."""
        mse = (x_hat - x).pow(2).mean()
        return {"loss": mse, "mse": mse}

    @torch.no_grad()
    def constrain(self) -> None:
        """Restore constraints after an optimizer step (no-op here)."""

    def aux_loss(
        self, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor, dead_mask: torch.Tensor
    ) -> torch.Tensor | None:
        """An auxiliary loss term for dead atoms, already weighted (None here: no term).

        The trainer calls it, when a subclass overrides it, at every step where some atom is dead:
        ``dead_mask`` (n_atoms,) is True for atoms that fired on no input during the last
        ``dead_window`` steps. The returned term is added to ``loss`` and logged as ``"aux"``.
        """
        return None

    @torch.no_grad()
    def revive(self, x: torch.Tensor, dead_mask: torch.Tensor) -> int:
        """Re-seed the dead atoms (``dead_mask`` (n_atoms,)) from a batch ``x``; returns how many were
        revived (0 here: nothing to do). The trainer calls it, when a subclass overrides it, every
        ``revive_every`` steps where some atom is dead."""
        return 0

    def spec(self) -> dict[str, Any]:
        """``{"class", "module", "args", "kwargs"}``: what this SAE was constructed with (tensors on the
        CPU), plus what was attached after construction (``"archetypes"``, see
        :func:`workbench.sae.archetypal.with_archetypes`). Checkpoints store it."""
        args, kwargs = self.__dict__.get("_init_arguments", ((), {}))
        out = {"class": type(self).__name__, "module": type(self).__module__, "args": _portable(list(args)),
               "kwargs": _portable(kwargs)}  # fmt: skip
        extra = self.__dict__.get("_attached")
        if extra:
            out.update(_portable(extra))
        return out

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Activations (N, d) as they are, or a clear error."""
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.d:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected activations of shape (N, {self.d}), got {shape}")
        return x

    def extra_repr(self) -> str:
        return f"d={self.d}, n_atoms={self.n_atoms}"


SparseAutoencoder.__init__ = _records_arguments(SparseAutoencoder.__init__)


def overrides(sae: nn.Module, name: str) -> bool:
    """Whether ``sae``'s class overrides the base-class method ``name`` (the trainer's test for the
    optional dead-atom methods)."""
    return getattr(type(sae), name, None) is not getattr(SparseAutoencoder, name)


@torch.no_grad()
def encode_rows(sae: nn.Module, rows: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Codes (R, n_atoms) of rows (R, d), encoded in batches on the SAE's device, returned on the CPU.

    Encodes in eval mode and restores the caller's mode: in train mode a BatchTopK SAE's codes depend on
    the batch and every call moves its threshold.
    """
    device = module_device(sae)
    with eval_mode(sae):
        out = [
            sae.encode(rows[s : s + batch_size].to(device)).float().cpu()
            for s in range(0, len(rows), batch_size)
        ]
    return torch.cat(out) if out else torch.zeros(0, sae.n_atoms)
