"""Universal sparse autoencoder: one concept space shared by several models.

Thasarathan, Forsyth, Fel, Kowal and Derpanis 2025, "Universal Sparse Autoencoders: Interpretable
Cross-Model Concept Alignment", arXiv:2502.03714. Each model ``m`` has its own encoder and decoder;
all share one TopK code. A training step encodes the batch's activations of one model (drawn at random
each step) and decodes the code into every model's activation space, so an atom must mean the same thing
for all models.

The loss signature differs from :class:`~workbench.sae.base.SparseAutoencoder` (it needs the paired
activations of every model), so ``UniversalSAE`` is its own ``nn.Module`` with ``encode(x, source)``,
``decode(codes, target)`` and ``loss(acts_by_model, source)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench._core.seeding import make_generator
from workbench.sae.base import check_k, unit_rows
from workbench.sae.metrics import r2

__all__ = ["UniversalSAE", "cross_r2", "cross_cofiring"]


class UniversalSAE(nn.Module):
    """Per-model linear encoders and decoders around one shared TopK code (Thasarathan et al. 2025).

    Parameters
    ----------
    dims
        Activation dimension of each model (M entries).
    n_atoms
        Width of the shared code.
    k
        Non-zero codes per input.
    seed
        Seed of the initialisation (decoder rows unit-norm, encoders tied to them at the start).
    """

    def __init__(self, dims: Sequence[int], n_atoms: int, k: int, seed: int = 0):
        super().__init__()
        dims = list(dims)
        if not dims or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in dims):
            raise ValueError(f"dims: expected a non-empty list of integers >= 1, got {dims!r}")
        if isinstance(n_atoms, bool) or not isinstance(n_atoms, int) or n_atoms < 1:
            raise ValueError(f"n_atoms: expected an integer >= 1, got {n_atoms!r}")
        self.dims = dims
        self.n_atoms = n_atoms
        self.k = check_k(k, n_atoms)
        g = make_generator(seed)
        decs = []
        for d in dims:
            w = torch.randn(n_atoms, d, generator=g)
            decs.append(unit_rows(w))
        self.W_dec = nn.ParameterList([nn.Parameter(w.clone()) for w in decs])
        self.W_enc = nn.ParameterList([nn.Parameter(w.clone()) for w in decs])
        self.b_enc = nn.ParameterList([nn.Parameter(torch.zeros(n_atoms)) for _ in dims])
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(d)) for d in dims])

    @property
    def n_models(self) -> int:
        return len(self.dims)

    def _check(self, x: torch.Tensor, m: int, name: str) -> torch.Tensor:
        if isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < self.n_models:
            raise ValueError(f"{name}: expected a model index in [0, {self.n_models}), got {m!r}")
        if x is not None and (not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dims[m]):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"activations of model {m}: expected shape (N, {self.dims[m]}), got {shape}")
        return x

    def dictionary(self, model: int) -> torch.Tensor:
        """Model ``model``'s atoms (n_atoms, d_model); row ``i`` of every model is the same concept."""
        self._check(None, model, "model")
        return self.W_dec[model]

    def encode(self, x: torch.Tensor, source: int) -> torch.Tensor:
        """Shared TopK codes (N, n_atoms) of model ``source``'s activations."""
        x = self._check(x, source, "source")
        pre = torch.relu((x - self.bias[source]) @ self.W_enc[source].T + self.b_enc[source])
        top = torch.topk(pre, check_k(self.k, self.n_atoms), dim=1)
        return torch.zeros_like(pre).scatter(1, top.indices, top.values)

    def decode(self, codes: torch.Tensor, target: int) -> torch.Tensor:
        """Model ``target``'s reconstruction (N, d_target) from shared codes."""
        self._check(None, target, "target")
        return codes @ self.W_dec[target] + self.bias[target]

    def forward(self, x: torch.Tensor, source: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Codes from model ``source`` and the reconstructions of every model."""
        codes = self.encode(x, source)
        return codes, [self.decode(codes, t) for t in range(self.n_models)]

    def loss(self, acts_by_model: Sequence[torch.Tensor], source: int) -> dict[str, torch.Tensor]:
        """Encode model ``source``, decode into all; ``loss`` sums the per-model MSEs (``mse_<m>``)."""
        acts = list(acts_by_model)
        if len(acts) != self.n_models:
            raise ValueError(f"acts_by_model: expected {self.n_models} tensors, got {len(acts)}")
        if len({a.shape[0] for a in acts}) != 1:
            raise ValueError("acts_by_model: every model needs the same inputs (same N), in the same order")
        codes, recons = self(acts[source], source)
        out = {f"mse_{m}": (recons[m] - acts[m]).pow(2).mean() for m in range(self.n_models)}
        total = sum(out.values())
        out["loss"] = total
        out["mse"] = total / self.n_models
        return out

    @torch.no_grad()
    def constrain(self) -> None:
        """Unit-norm decoder rows for every model."""
        for w in self.W_dec:
            w.copy_(unit_rows(w))


@torch.no_grad()
def cross_r2(usae: UniversalSAE, acts_by_model: Sequence[torch.Tensor]) -> torch.Tensor:
    """(M, M) matrix: entry ``[i, j]`` is the R2 (:func:`~workbench.sae.metrics.r2`) of model ``j``'s
    activations decoded from the codes of model ``i``'s activations (Thasarathan et al. 2025)."""
    acts = list(acts_by_model)
    M = usae.n_models
    out = torch.zeros(M, M)
    for i in range(M):
        codes = usae.encode(acts[i], i)
        for j in range(M):
            out[i, j] = r2(acts[j], usae.decode(codes, j))
    return out


@torch.no_grad()
def cross_cofiring(usae: UniversalSAE, acts_by_model: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-atom co-firing across models (n_atoms,): over the ordered pairs of models ``(i, j)``, the mean
    of ``P(atom active on model j's encoding | active on model i's)`` for the same inputs. 1 means the
    atom fires on the same inputs whichever model encodes them; atoms never active give NaN."""
    acts = list(acts_by_model)
    active = [usae.encode(a, m).abs() > 0 for m, a in enumerate(acts)]
    ratios = []
    for i in range(usae.n_models):
        for j in range(usae.n_models):
            if i != j:
                both = (active[i] & active[j]).sum(0).float()
                ratios.append(both / active[i].sum(0).float())
    return torch.stack(ratios).nanmean(0)
