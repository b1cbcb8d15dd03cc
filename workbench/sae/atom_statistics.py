"""Per-atom statistics of a sparse dictionary over the activations of a set of images.

:func:`atom_stats` encodes the activations once, in batches, and returns an :class:`AtomStats`: how often
and how strongly each atom fires, per image and per class, its co-firing atoms
(:func:`workbench.sae.metrics.cofiring`), its nearest atoms in the dictionary, its importance per class
(activation x gradient through ``model.split(layer)``, :func:`gradient_class_directions`), its stability
across other runs, and for an archetypal dictionary the data rows nearest to its candidates. The
:class:`~workbench.widgets.AtomBrowser` displays such a result; it computes none of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workbench._core.devices import eval_mode, module_device
from workbench.data.activation_rows import ActivationRows
from workbench.sae.base import encode_rows, unit_rows
from workbench.sae.metrics import cofiring, normalize_cofiring

__all__ = ["AtomStats", "atom_stats", "gradient_class_directions"]

HIST_BINS = 24


@dataclass
class AtomStats:
    """Per-atom statistics over all the rows (tokens) of the data, computed in one batched pass.

    Attributes
    ----------
    frequency : torch.Tensor
        (n_atoms,) fraction of rows where the atom is active (``|code| > 0``).
    image_frequency : torch.Tensor
        (n_atoms,) fraction of images with at least one active row.
    mean : torch.Tensor
        (n_atoms,) mean code over all rows (zeros included).
    max : torch.Tensor
        (n_atoms,) largest code.
    image_max : torch.Tensor
        (N, n_atoms) largest code of each atom in each image (N x n_atoms floats: the one per-image table).
    class_mean : torch.Tensor or None
        (n_classes, n_atoms) mean code over the rows of the images of each class (None without labels).
    importance : torch.Tensor or None
        (n_classes, n_atoms) ``class_mean * (atom . class direction)`` when class directions are known
        (a model or ``class_directions``); None otherwise.
    cofiring : torch.Tensor
        (n_atoms, n_atoms) ``P(j active | i active)`` over rows (row ``i``), as
        :func:`workbench.sae.metrics.cofiring` with ``normalize="conditional"``.
    hist : torch.Tensor
        (n_atoms, bins) counts of the non-zero codes of each atom in equal bins of ``(0, max]``.
    run_cosines : torch.Tensor or None
        (n_runs, n_atoms) best cosine of each atom with any atom of each other run.
    nearest_row : torch.Tensor or None
        (n_candidates,) for an archetypal dictionary: the index of the data row nearest to each candidate.
    atoms : torch.Tensor or None
        (n_atoms, d) the unit-norm atoms (for :meth:`nearest_atoms`).
    candidate_weights : torch.Tensor or None
        (n_atoms, n_candidates) for an archetypal dictionary: the row-stochastic weights ``W``.
    """

    frequency: torch.Tensor
    image_frequency: torch.Tensor
    mean: torch.Tensor
    max: torch.Tensor
    image_max: torch.Tensor
    class_mean: torch.Tensor | None
    importance: torch.Tensor | None
    cofiring: torch.Tensor
    hist: torch.Tensor
    run_cosines: torch.Tensor | None
    nearest_row: torch.Tensor | None
    atoms: torch.Tensor | None = None
    candidate_weights: torch.Tensor | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.frequency)

    @property
    def stability(self) -> torch.Tensor | None:
        """(n_atoms,) mean over the other runs of the best matched cosine (None without runs)."""
        return None if self.run_cosines is None else self.run_cosines.mean(0)

    @property
    def dead(self) -> torch.Tensor:
        """(n_atoms,) bool: atoms that fire on no row of the data."""
        return self.frequency == 0

    # -- per-atom queries -------------------------------------------------------------------------
    def nearest_atoms(self, atom: int, k: int = 6) -> list[tuple[int, float]]:
        """The ``k`` atoms with the largest cosine to ``atom`` in the dictionary: ``[(id, cosine)]``."""
        if self.atoms is None:
            return []
        cos = self.atoms @ self.atoms[atom]
        cos[atom] = -float("inf")
        top = cos.topk(min(k, self.n_atoms - 1))
        return [(int(i), float(c)) for i, c in zip(top.indices, top.values, strict=True)]

    def cofiring_atoms(self, atom: int, k: int = 6) -> list[tuple[int, float]]:
        """The ``k`` atoms most often active when ``atom`` is: ``[(id, P(id active | atom active))]``."""
        p = self.cofiring[atom].clone()
        p[atom] = -1.0
        top = p.topk(min(k, self.n_atoms - 1))
        return [(int(i), float(v)) for i, v in zip(top.indices, top.values, strict=True) if v > 0]

    def top_images(self, atom: int, k: int) -> list[tuple[int, float]]:
        """The images where ``atom`` fires most, ``[(image, max code)]`` (only images where it fires)."""
        v = self.image_max[:, atom]
        top = v.topk(min(k, len(v)))
        return [(int(i), float(a)) for i, a in zip(top.indices, top.values, strict=True) if a > 0]

    def quantile_images(self, atom: int, n: int) -> list[tuple[int, float]]:
        """``n`` images at evenly spaced quantiles (exclusive of the ends) of the atom's per-image maximum,
        among the images where it fires, highest first: ``[(image, max code)]``."""
        v = self.image_max[:, atom]
        on = torch.nonzero(v > 0).flatten()
        if not len(on) or not n:
            return []
        order = on[v[on].argsort(descending=True)]
        pos = np.unique(np.round(np.linspace(0, len(order) - 1, n + 2)[1:-1]).astype(int))
        return [(int(order[p]), float(v[order[p]])) for p in pos]

    def candidates(self, atom: int, k: int = 5) -> list[tuple[int, float, int]]:
        """Archetypal dictionaries: the ``k`` candidates with the largest weights in ``W[atom]``,
        ``[(candidate, weight, nearest data row)]``; empty for other dictionaries."""
        if self.candidate_weights is None:
            return []
        w = self.candidate_weights[atom]
        top = w.topk(min(k, len(w)))
        return [(int(c), float(v), int(self.nearest_row[c]))
                for c, v in zip(top.indices, top.values, strict=True) if v > 0]  # fmt: skip


def _archetypes(sae: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(C, W)`` of an archetypal dictionary (``with_archetypes`` / RASAE), else None."""
    arch = getattr(sae, "archetypes", None)
    if arch is not None and hasattr(arch, "C") and hasattr(arch, "W"):
        return arch.C.detach().float().cpu(), arch.W.detach().float().cpu()
    return None


def _as_dictionary(run: Any, d: int, k: int) -> torch.Tensor:
    D = run.dictionary if hasattr(run, "dictionary") else run
    if isinstance(D, np.ndarray):
        D = torch.from_numpy(D)
    if not isinstance(D, torch.Tensor) or D.ndim != 2 or D.shape[1] != d:
        shape = tuple(D.shape) if isinstance(D, torch.Tensor) else type(D).__name__
        raise ValueError(f"runs[{k}]: expected a dictionary (n_atoms, {d}) or a SAE, got {shape}")
    return unit_rows(D.detach().float().cpu())


@torch.no_grad()
def atom_stats(
    sae: Any,
    acts: Any,
    labels: torch.Tensor | Sequence[int] | np.ndarray | None = None,
    *,
    n_classes: int | None = None,
    images: torch.Tensor | None = None,
    model: Any = None,
    layer: str | None = None,
    class_directions: torch.Tensor | np.ndarray | None = None,
    runs: Sequence[Any] = (),
    rows_per_image: int | None = None,
    batch_size: int = 4096,
) -> AtomStats:
    """Per-atom statistics of ``sae`` over the activations of N images (see :class:`AtomStats`).

    Importance of atom ``i`` for class ``c`` (with a model or class directions):
    ``class_mean[c, i] * (D_i . w_c)``, where ``D_i`` is the decoder atom and ``w_c`` the class direction:
    a first-order (activation x gradient) estimate of what the atom adds to the logit of ``c`` per row of
    an average image of that class (Simonyan et al. 2014's gradient, taken at the activations as in
    concept-attribution work such as Fel et al. 2023, "A Holistic Approach to Unifying Automatic Concept
    Extraction and Concept Importance Estimation").

    Parameters
    ----------
    sae
        The dictionary (``encode``, ``dictionary`` (n_atoms, d)); an archetypal one's candidates are used.
    acts
        The activations, image after image: an :class:`~workbench.data.activation_rows.ActivationRows`,
        or anything it accepts (an ActivationStore, a map (N, C, H, W), tokens (N, T, C), rows (R, d)).
    labels
        (N,) class indices of the images (default: the store's labels).
    n_classes
        Number of classes (default: ``max(labels) + 1``).
    images
        (N, 3, H, W) in [0, 1]: needed with ``model`` for the gradient class directions.
    model, layer
        A :class:`~workbench.models.Model` and the layer of the activations (default: the store's), for
        :func:`gradient_class_directions`.
    class_directions
        (n_classes, d) class directions given directly (instead of ``model``).
    runs
        Dictionaries (n_atoms_b, d) or SAEs of other training runs, for the stability score.
    rows_per_image
        Rows per image for 2-D ``acts``.
    batch_size
        Rows per encoding batch.
    """
    D = sae.dictionary.detach().float().cpu()
    n, d = D.shape
    rows = acts if isinstance(acts, ActivationRows) else ActivationRows(
        acts, rows_per_image, None if images is None else len(images), name="acts"
    )  # fmt: skip
    if rows.d != d:
        raise ValueError(
            f"acts: activations of dimension {rows.d}, but the dictionary's atoms have dimension {d}"
        )
    k, rpi = rows.n_images, rows.rows_per_image
    if labels is None and rows.store is not None:
        labels = rows.store.image_labels
    if labels is not None:
        labels = (
            torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
            .long()
            .cpu()
        )
        if labels.shape != (k,):
            raise ValueError(f"labels: expected ({k},) class indices, got shape {tuple(labels.shape)}")
        if bool((labels < 0).any()):
            raise ValueError("labels: expected class indices >= 0")
        n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    if layer is None and rows.store is not None:
        layer = rows.store.meta.get("layer")
    count, total = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    amax, img_max = torch.zeros(n), torch.zeros(k, n)
    co = torch.zeros(n, n, dtype=torch.float64)
    csum = torch.zeros(n_classes, n, dtype=torch.float64) if labels is not None else None
    arch = _archetypes(sae)
    cand = None if arch is None else arch[0]
    best_d = None if cand is None else torch.full((len(cand),), float("inf"))
    best_r = None if cand is None else torch.zeros(len(cand), dtype=torch.long)
    for lo, hi in rows.image_batches(batch_size):
        x = rows.get(lo, hi)
        z = encode_rows(sae, x, batch_size)
        act = (z.abs() > 0).double()
        count += act.sum(0)
        total += z.double().sum(0)
        amax = torch.maximum(amax, z.max(0).values)
        zi = z.view(hi - lo, rpi, n)
        img_max[lo:hi] = zi.max(1).values
        co += cofiring(z, "count").double()
        if csum is not None:
            csum.index_add_(0, labels[lo:hi], zi.double().sum(1))
        if cand is not None:
            dist = torch.cdist(cand, x)  # (n_c, rows)
            m = dist.min(1)
            better = m.values < best_d
            best_d[better], best_r[better] = m.values[better], m.indices[better] + lo * rpi
    rows_total = k * rpi
    hist = torch.zeros(n, HIST_BINS)
    scale = torch.where(amax > 0, HIST_BINS / amax.clamp_min(1e-30), torch.zeros_like(amax))
    atom_ids = torch.arange(n)
    for lo, hi in rows.image_batches(batch_size):  # second pass: bins need each atom's max
        z = encode_rows(sae, rows.get(lo, hi), batch_size)
        on = z > 0
        b = (z * scale).floor().long().clamp(0, HIST_BINS - 1)
        flat = (atom_ids * HIST_BINS + b)[on]
        hist.view(-1).index_add_(0, flat, torch.ones(len(flat)))
    class_mean = None
    if csum is not None:
        n_rows = torch.bincount(labels, minlength=n_classes).double() * rpi
        class_mean = (csum / n_rows.clamp_min(1).unsqueeze(1)).float()
    directions = None
    if class_directions is not None:
        directions = torch.as_tensor(np.asarray(class_directions) if isinstance(class_directions, np.ndarray)
                                     else class_directions).detach().float().cpu()  # fmt: skip
        if directions.shape != (n_classes or 0, d):
            raise ValueError(f"class_directions: expected ({n_classes}, {d}), got {tuple(directions.shape)}")
    elif model is not None:
        if images is None or labels is None:
            raise ValueError("model: class directions need the images and their labels")
        directions = gradient_class_directions(model, layer, images, labels, n_classes, d,
                                               batch_size=max(1, batch_size // rpi))  # fmt: skip
    importance = None
    if directions is not None and class_mean is not None:
        importance = class_mean * (directions @ D.T)
    unit = unit_rows(D)
    run_cos = None
    if runs:
        others = [_as_dictionary(r, d, i) for i, r in enumerate(runs)]
        run_cos = torch.stack([(unit @ r.T).max(1).values for r in others])
    return AtomStats(
        frequency=(count / rows_total).float(), image_frequency=(img_max > 0).float().mean(0),
        mean=(total / rows_total).float(), max=amax, image_max=img_max, class_mean=class_mean,
        importance=importance, cofiring=normalize_cofiring(co, rows_total, "conditional").float(), hist=hist,
        run_cosines=run_cos, nearest_row=best_r, atoms=unit, candidate_weights=None if arch is None else arch[1],
    )  # fmt: skip


def gradient_class_directions(
    model: Any,
    layer: str | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    d: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """(n_classes, d) mean gradient of each class's logit with respect to the activations at ``layer``.

    The backward pass goes through ``model.split(layer)`` (``g``: input -> activations, ``h``:
    activations -> logits); the gradient of image ``n``'s own-class logit is averaged over its rows
    (tokens, positions), then over the images of each class. The model runs in eval mode (the caller's
    mode is restored).
    """
    if layer is None or not hasattr(model, "split"):
        raise ValueError("model: expected a workbench Model and the layer of the activations (layer=...)")
    g, h = model.split(layer)
    device = module_device(model)
    labels = torch.as_tensor(labels).long().cpu()
    images = images.detach().float().cpu()
    out = torch.zeros(n_classes, d, dtype=torch.float64)
    with eval_mode(model):
        for lo in range(0, len(images), batch_size):
            x, y = images[lo : lo + batch_size].to(device), labels[lo : lo + batch_size].to(device)
            with torch.no_grad():
                a = g(x)
            with torch.enable_grad():  # callers may run under no_grad
                a = a.detach().requires_grad_(True)
                h(a).gather(1, y[:, None]).sum().backward()
            grad = a.grad.detach().cpu()
            rows = grad.permute(0, 2, 3, 1).flatten(1, 2) if grad.ndim == 4 else grad  # (B, rows, d)
            if rows.shape[-1] != d:
                raise ValueError(
                    f"model: layer {layer!r} gives activations of dimension {rows.shape[-1]}, not {d}"
                )
            out.index_add_(0, y.cpu(), rows.double().mean(1))
    return (out / torch.bincount(labels, minlength=n_classes).clamp_min(1).double().unsqueeze(1)).float()
