"""Sanity checks: does the explanation depend on what the model learned, and on the class asked?

- :func:`model_randomization` (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for
  Saliency Maps", NeurIPS 2018): re-initialize the layers, from the output down (*cascading*) or one at
  a time (*independent*), and compare the maps with those of the trained model. A method that passes
  gives maps that stop resembling the trained ones.
- :func:`random_logit` (Sixt, Granz & Landgraf, "When Explanations Lie: Why Many Modified BP
  Attributions Fail", ICML 2020): compare the map of the target class with the map of a random other
  class. A class-sensitive method gives dissimilar maps.

Both take the method as a callable ``explain(model, x, y) -> maps`` so that they know no method.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench._core.seeding import make_generator
from workbench._core.validation import as_tensor, check_targets, closest_names
from workbench.metrics.map_similarity import map_spearman, ssim
from workbench.metrics.noise_stability import Explain
from workbench.metrics.registry import METRICS
from workbench.models.hooks import network
from workbench.models.model import Model

__all__ = ["RandomizationResult", "model_randomization", "random_logit", "randomizable_layers"]

SIMILARITIES = {
    "spearman": lambda a, b: map_spearman(a, b),
    "spearman_abs": lambda a, b: map_spearman(a, b, absolute=True),
    "ssim": ssim,
}
MODES = ("cascading", "independent")


@dataclass(frozen=True)
class RandomizationResult:
    """The result of :func:`model_randomization`.

    Attributes
    ----------
    mode : str
        "cascading" or "independent".
    layers : tuple[str, ...]
        The layers in the order they were randomized (output first). Stage ``i`` of a cascading run
        has layers ``0..i`` re-initialized; stage ``i`` of an independent run only layer ``i``.
    similarity : dict[str, torch.Tensor]
        Measure name -> (stages, N) similarity of each stage's maps to the trained model's maps.
    """

    mode: str
    layers: tuple[str, ...]
    similarity: dict[str, torch.Tensor]

    def mean(self) -> dict[str, list[float]]:
        """Measure name -> the mean over images at each stage."""
        return {k: v.mean(1).tolist() for k, v in self.similarity.items()}


_WHY = "the layers of a plain callable cannot be re-initialized"


def randomizable_layers(model: Model | nn.Module) -> list[str]:
    """The top-level blocks of the network that hold parameters, from the output to the input (the
    default order of :func:`model_randomization`; for a timm ResNet: fc, layer4, ..., bn1, conv1)."""
    net = network(model, _WHY)
    names = [name for name, child in net.named_children() if any(True for _ in child.parameters())]
    return names[::-1]


def _reinitialize(module: nn.Module, generator_seed: int) -> None:
    """Fresh initialization of every parameter of ``module``, seeded, without touching the global RNG.

    Submodules with ``reset_parameters`` (convolutions, linear layers, norms) use their own default
    initialization; any other parameter (a ViT's position embedding, say) is drawn from N(0, 0.02^2).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        covered = set()
        for sub in module.modules():
            if hasattr(sub, "reset_parameters") and callable(sub.reset_parameters):
                sub.reset_parameters()
                covered.update(id(p) for p in sub.parameters())
        with torch.no_grad():
            for p in module.parameters():
                if id(p) not in covered:
                    p.normal_(0.0, 0.02)


def _similarities(measures: Sequence[str]) -> list[str]:
    measures = [measures] if isinstance(measures, str) else list(measures)
    unknown = [m for m in measures if m not in SIMILARITIES]
    if unknown or not measures:
        raise ValueError(f"similarity: expected names among {sorted(SIMILARITIES)}, got {measures!r}")
    return measures


@METRICS.register(
    "model_randomization",
    paper="Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, Sanity Checks for Saliency Maps, NeurIPS 2018",
)
def model_randomization(
    explain: Explain,
    model: Model | nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    mode: str = "cascading",
    layers: Sequence[str] | None = None,
    similarity: Sequence[str] | str = ("spearman", "spearman_abs", "ssim"),
    seed: int = 0,
) -> RandomizationResult:
    """The model-parameter randomization test (Adebayo et al., NeurIPS 2018).

    The model is **copied** (the trained one is never touched); on the copy, layers are re-initialized
    from the output down, cumulatively (``mode="cascading"``) or one at a time on a fresh copy
    (``"independent"``), and after each stage the maps of ``explain`` are compared with the trained
    model's maps on the same images and targets.

    Parameters
    ----------
    explain
        ``explain(model, x, y) -> maps`` (N, H, W), e.g. ``workbench.attribution.saliency``.
    model
        A workbench Model or an ``nn.Module`` (its parameters must be reachable).
    x, y
        Images (N, C, H, W) and targets (N,) or one int.
    mode
        "cascading" (default) or "independent".
    layers
        Names of modules of the network (``model.layers()`` lists them), in the order to randomize;
        default :func:`randomizable_layers` (top-level blocks, output first).
    similarity
        Any of "spearman", "spearman_abs" (of the magnitudes) and "ssim" (see
        :mod:`workbench.metrics.map_similarity`).
    seed
        Seed of the re-initializations (stage ``i`` uses ``seed + i``).

    Returns
    -------
    RandomizationResult
        Per measure, a (stages, N) tensor of similarities to the trained maps.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if not callable(explain):
        raise ValueError(
            f"explain: expected a callable explain(model, x, y) -> maps, got {type(explain).__name__}"
        )
    measures = _similarities(similarity)
    x, y = as_tensor(x), as_tensor(y)  # NumPy images and targets are accepted like tensors
    net = network(model, _WHY)
    modules = dict(net.named_modules())
    names = randomizable_layers(model) if layers is None else list(layers)
    if not names:
        raise ValueError("layers: expected at least one layer to randomize")
    for name in names:
        if name not in modules or name == "":
            raise ValueError(
                f"layers: unknown module {name!r}; closest: {closest_names(name, [m for m in modules if m])}"
            )
        if not any(True for _ in modules[name].parameters()):
            raise ValueError(f"layers: module {name!r} has no parameters to randomize")
    reference = explain(model, x.clone(), y).detach()
    scores: dict[str, list[torch.Tensor]] = {m: [] for m in measures}
    work = copy.deepcopy(model)
    for stage, name in enumerate(names):
        if mode == "independent":
            work = copy.deepcopy(model)
        work_modules = dict(network(work, _WHY).named_modules())
        _reinitialize(work_modules[name], seed + stage)
        maps = explain(work, x.clone(), y).detach()
        for m in measures:
            scores[m].append(SIMILARITIES[m](maps, reference).cpu())
    return RandomizationResult(
        mode=mode, layers=tuple(names), similarity={m: torch.stack(v) for m, v in scores.items()}
    )


@METRICS.register(
    "random_logit",
    paper="Sixt, Granz & Landgraf, When Explanations Lie: Why Many Modified BP Attributions Fail, ICML 2020",
)
def random_logit(
    explain: Explain,
    model: Model | nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    num_classes: int | None = None,
    similarity: str = "ssim",
    seed: int = 0,
) -> torch.Tensor:
    """The random-logit test (Sixt et al., ICML 2020): similarity between the map of class ``y`` and the
    map of a class drawn uniformly among the others. **Lower is better** (class-sensitive maps).

    Parameters
    ----------
    explain
        ``explain(model, x, y) -> maps`` (N, H, W).
    model
        A workbench Model (its number of classes is known) or any model with ``num_classes`` given.
    x, y
        Images (N, C, H, W) and targets (N,) or one int.
    num_classes
        Number of classes; default the Model's.
    similarity
        "ssim" (default), "spearman" or "spearman_abs".
    seed
        Seed of the other classes.

    Returns
    -------
    torch.Tensor
        (N,) similarities.
    """
    measure = _similarities(similarity)[0]
    x = as_tensor(x)
    k = num_classes if num_classes is not None else getattr(model, "num_classes", None)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"num_classes: expected an integer >= 2 (pass it for plain modules), got {k!r}")
    y = check_targets(y, len(x), k).cpu()
    gen = make_generator(seed)
    # a uniform draw among the k - 1 other classes: shift past y
    other = torch.randint(0, k - 1, (len(y),), generator=gen)
    other = other + (other >= y).long()
    a = explain(model, x.clone(), y).detach()
    b = explain(model, x.clone(), other).detach()
    return SIMILARITIES[measure](a, b.to(a.device)).cpu()
