"""Budgets of ``workbench explain`` (``--scale ci|full``) and the attribution methods it runs.

``full`` is the references' defaults: Sobol ``grid_size=8, nb_design=32`` (Fel et al. 2021), MuFidelity
``grid_size=9, n_samples=200`` (Bhatt et al. 2020, Xplique's), deletion / insertion ``steps=10``
(Xplique's), MACO ``steps=256, n_crops=8`` (Fel et al. 2023), CRAFT's 64-px patch at 224 px and Sobol
importance designs 32 (Fel et al. 2023). ``ci`` keeps the same pipeline at budgets that explain 64
PlantedShapes images with the zoo CNN in about a minute on 2 CPU cores; ``tiny`` only checks that every
stage runs (the tests).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from workbench.attribution import forgrad, get_method, list_methods

__all__ = ["DEFAULT_METHODS", "SCALES", "Budget", "method_fn"]

DEFAULT_METHODS = ("saliency", "sobol", "forgrad_saliency")
FORGRAD_PREFIX = "forgrad_"
# FORGrad's cutoff: sigma 15 at 224 px (the paper's and Xplique's default), scaled with the side
FORGRAD_SIGMA_224 = 15.0


@dataclass(frozen=True)
class Budget:
    """The work per image, class and method at one ``--scale``."""

    method_params: dict  # method name -> its budget parameters (only those it accepts are passed)
    deletion_steps: int
    mufidelity_grid: int
    mufidelity_samples: int
    sanity_images: int
    class_images: int  # at most this many images of a class go into CRAFT and its importance
    top_crops: int  # crops shown per concept
    maco_steps: int
    maco_crops: int
    n_clusters: int

    def to_dict(self) -> dict:
        return asdict(self)


SCALES = {
    "ci": Budget(
        method_params={
            "sobol": {"grid_size": 4, "nb_design": 4},
            "hsic": {"grid_size": 4, "nb_design": 64},
            "rise": {"n_masks": 256},
            "lime": {"n_samples": 64},
            "kernel_shap": {"n_samples": 64},
            "smoothgrad": {"n_samples": 8},
            "vargrad": {"n_samples": 8},
            "squaregrad": {"n_samples": 8},
            "integrated_gradients": {"steps": 8},
        },
        deletion_steps=8,
        mufidelity_grid=8,
        mufidelity_samples=16,
        sanity_images=4,
        class_images=32,
        top_crops=6,
        maco_steps=24,
        maco_crops=2,
        n_clusters=3,
    ),  # fmt: skip
    # the smallest budgets that still run every stage: tests and smoke runs, not for reading
    "tiny": Budget(
        method_params={
            "sobol": {"grid_size": 2, "nb_design": 2},
            "rise": {"n_masks": 16},
            "smoothgrad": {"n_samples": 2},
        },
        deletion_steps=4,
        mufidelity_grid=4,
        mufidelity_samples=4,
        sanity_images=2,
        class_images=8,
        top_crops=3,
        maco_steps=2,
        maco_crops=1,
        n_clusters=2,
    ),  # fmt: skip
    "full": Budget(
        method_params={
            "sobol": {"grid_size": 8, "nb_design": 32},
            "hsic": {"grid_size": 8, "nb_design": 1500},
        },
        deletion_steps=10,
        mufidelity_grid=9,
        mufidelity_samples=200,
        sanity_images=16,
        class_images=256,
        top_crops=8,
        maco_steps=256,
        maco_crops=8,
        n_clusters=3,
    ),  # fmt: skip
}


def check_method(name: str) -> str:
    """``name`` if it is a registered method or ``forgrad_<method>``; ValueError with the valid names."""
    base = name[len(FORGRAD_PREFIX) :] if name.startswith(FORGRAD_PREFIX) else name
    if base not in list_methods() or base == "hsic_interactions":
        valid = list_methods() + [FORGRAD_PREFIX + m for m in ("saliency", "gradient_input", "smoothgrad")]
        raise ValueError(f"--methods: unknown method {name!r}; valid: registered methods {list_methods()}"
                         f" and forgrad_<method> (FORGrad-filtered), e.g. {valid[-3:]}")  # fmt: skip
    return name


def method_fn(name: str, budget: Budget, seed: int, batch_size: int, image_size: int) -> Callable:
    """``explain(model, x, y) -> (N, H, W)`` for a method name at a budget.

    ``forgrad_<method>`` is ``<method>``'s maps low-pass filtered by FORGrad (Muzellec et al. 2023) at
    sigma ``15 * side / 224`` cycles per image. Every stochastic method gets the same ``seed`` for every
    block of images, so an image's maps depend on the seed and the block layout, never on the process.
    """
    filtered = name.startswith(FORGRAD_PREFIX)
    base = name[len(FORGRAD_PREFIX) :] if filtered else name
    fn = get_method(base)
    accepted = inspect.signature(fn).parameters
    params = {k: v for k, v in budget.method_params.get(base, {}).items() if k in accepted}
    for key, value in (("seed", seed), ("progress", False), ("batch_size", batch_size)):
        if key in accepted:
            params[key] = value
    sigma = FORGRAD_SIGMA_224 * image_size / 224

    def explain(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        maps = fn(model, x, y, **params)
        return forgrad(maps, sigma=sigma) if filtered else maps

    explain.__name__ = name
    return explain
