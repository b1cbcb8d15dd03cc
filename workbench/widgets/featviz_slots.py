"""Feature-visualization slots of the dictionary widgets: images given, or computed a page at a time.

The ConceptGallery and the AtomBrowser show a feature visualization (MACO, Fel et al., NeurIPS 2023) of
each concept or atom. :class:`FeatureVizSlots` holds those images: a dict given by the caller, and the
ones it asks an optimizer callable for (``functools.partial(workbench.featviz.visualize, model, ...)``):
one call per shown page, with the objectives of every item of the page that has no image yet (the core
optimizes them together in one batch), each image kept once computed. The widgets never optimize.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from workbench._core.validation import check_images
from workbench.widgets.checks import as_tensor, check_atom


def check_optimizer(optimizer: Any, name: str) -> Callable[..., Any] | None:
    """``optimizer`` if it is callable (or None); a ValueError naming the argument otherwise."""
    if optimizer is not None and not callable(optimizer):
        raise ValueError(
            f"{name}: expected a callable like functools.partial(workbench.featviz.visualize, model),"
            f" got {type(optimizer).__name__}"
        )
    return optimizer


def one_image(x: Any, name: str) -> torch.Tensor:
    """One image (3, H, W) (or (1, 3, H, W)) in [0, 1] as a float CPU tensor."""
    t = as_tensor(x, name, "(3, H, W)")
    if t.ndim == 3:
        t = t[None]
    return check_images(t, name=name, channels=3)[0].detach().float().cpu()


def result_images(result: Any, k: int, name: str) -> torch.Tensor:
    """The (k, 3, S, S) images of an optimizer's result (a ``FeatureViz``: its ``image``), checked."""
    images = getattr(result, "image", None)
    if images is None:
        raise ValueError(
            f"{name}: the optimizer returned {type(result).__name__}, expected a FeatureViz (.image)"
        )
    images = check_images(as_tensor(images, f"{name} .image", f"({k}, 3, S, S)"), name=f"{name} .image", channels=3)  # fmt: skip
    if images.shape[0] != k:
        raise ValueError(
            f"{name}: asked for {k} visualizations, the optimizer returned {images.shape[0]} images"
        )
    return images.detach().float().cpu()


class FeatureVizSlots:
    """The feature visualization of each item (concept, atom): given, or computed a page at a time.

    Parameters
    ----------
    n_items
        Number of items (ids 0..n_items-1).
    given
        ``{item: image (3, H, W) in [0, 1]}`` given by the caller (None: none).
    optimizer
        ``optimizer(objectives) -> FeatureViz`` with one image per objective (a list), e.g.
        ``functools.partial(workbench.featviz.visualize, model, steps=128, progress=False)``; None: only
        the given images are shown.
    objective
        ``objective(item)``: the objective of one item (built with :mod:`workbench.featviz.objectives`).
    kind, owner
        Names of the items and of what holds them, for error messages.
    """

    def __init__(
        self,
        n_items: int,
        given: Mapping[int, Any] | None = None,
        optimizer: Callable[..., Any] | None = None,
        objective: Callable[[int], Any] | None = None,
        kind: str = "concept",
        owner: str = "gallery",
    ):
        self.n_items, self.kind, self.owner = n_items, kind, owner
        self.optimizer = check_optimizer(optimizer, "featviz_optimizer")
        self.objective = objective
        self.computed: dict[int, torch.Tensor] = {}
        self.calls = 0  # optimizer calls so far (one per page that needed images)
        self.given = self.check_given(given)

    @property
    def enabled(self) -> bool:
        """Whether any slot can hold an image (some are given, or an optimizer computes them)."""
        return bool(self.given) or self.optimizer is not None

    def check_given(self, given: Mapping[int, Any] | None) -> dict[int, torch.Tensor]:
        """``given`` checked: a dict of item ids to images (3, H, W) in [0, 1]."""
        if given is None:
            return {}
        if not isinstance(given, Mapping):
            raise ValueError(f"featviz: expected a dict {{{self.kind}: image (3, H, W)}}, got {type(given).__name__}")  # fmt: skip
        out = {}
        for item, image in given.items():
            item = check_atom(item, self.n_items, self.kind, self.owner)
            out[item] = one_image(image, f"featviz[{item}]")
        return out

    def images(self) -> dict[int, torch.Tensor]:
        """Every image held: the computed ones, and the given ones over them."""
        return {**self.computed, **self.given}

    def get(self, item: int) -> torch.Tensor | None:
        """The image of ``item``, or None (not given, not computed yet)."""
        return self.given.get(item, self.computed.get(item))

    def fill(self, items: Iterable[int]) -> None:
        """Compute the images of ``items`` that have none, in ONE optimizer call (nothing without an optimizer)."""
        missing = [i for i in dict.fromkeys(int(i) for i in items) if self.get(i) is None]
        if not missing or self.optimizer is None:
            return
        objectives = [self.objective(i) for i in missing]
        self.calls += 1
        images = result_images(self.optimizer(objectives), len(missing), "featviz_optimizer")
        self.computed.update(zip(missing, images, strict=True))
