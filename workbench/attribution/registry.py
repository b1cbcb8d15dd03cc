"""A registry of attribution methods: ``explainer(name, model, **params)`` and ``list_methods()``.

Widgets and notebooks pick methods by name; an :class:`Explainer` binds a method to a model and
parameters so it can be called like a function, and wrappers compose (``forgrad`` over any method).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from workbench._core.validation import closest_names

METHODS: dict[str, Callable[..., torch.Tensor]] = {}


def register(name: str) -> Callable:
    """Decorator: add ``fn(model, x, y, **params) -> (N, H, W)`` to the registry under ``name``."""

    def deco(fn: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"attribution method {name!r} is already registered")
        METHODS[name] = fn
        return fn

    return deco


def list_methods() -> list[str]:
    """Names of the registered attribution methods."""
    import workbench.attribution  # noqa: F401  (registers the methods)

    return sorted(METHODS)


def get_method(name: str) -> Callable[..., torch.Tensor]:
    """The function registered under ``name``."""
    methods = list_methods()
    if name not in METHODS:
        raise KeyError(
            f"unknown attribution method {name!r}; closest: {closest_names(name, methods)} (all: {methods})"
        )
    return METHODS[name]


@dataclass
class Explainer:
    """A method bound to a model and parameters: ``explainer(x, y) -> maps``."""

    name: str
    model: object
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        fn = get_method(self.name)
        accepted = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            unknown = set(self.params) - set(accepted)
            if unknown:
                valid = [k for k in accepted if k not in ("model", "x", "y")]
                raise TypeError(f"{self.name}: unknown parameters {sorted(unknown)}; valid: {valid}")
        self.fn = fn

    def __call__(self, x: torch.Tensor, y: torch.Tensor | int, **overrides) -> torch.Tensor:
        return self.fn(self.model, x, y, **{**self.params, **overrides})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Explainer({self.name}{', ' if args else ''}{args})"


def explainer(name: str, model, **params) -> Explainer:
    """Bind the method ``name`` to ``model`` with ``params``; see :func:`list_methods`."""
    return Explainer(name, model, params)
