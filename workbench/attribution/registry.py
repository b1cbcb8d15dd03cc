"""A registry of attribution methods: ``explainer(name, model, **params)`` and ``list_methods()``.

Widgets and notebooks pick methods by name; an :class:`Explainer` binds a method to a model and
parameters so it can be called like a function, and wrappers compose (``forgrad`` over any method).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from workbench._core.registry import Registry

# Importing workbench.attribution registers every method (each module decorates its functions).
METHODS: Registry[Callable[..., torch.Tensor]] = Registry(
    "attribution method", populate=("workbench.attribution",)
)


def register(name: str, *, paper: str | None = None) -> Callable:
    """Decorator: add ``fn(model, x, y, **params) -> (N, H, W)`` to :data:`METHODS` under ``name``,
    with the paper it implements."""
    return METHODS.register(name, paper=paper)


def list_methods() -> list[str]:
    """Names of the registered attribution methods (``METHODS.table()`` lists their papers and modules)."""
    return METHODS.names()


def get_method(name: str) -> Callable[..., torch.Tensor]:
    """The function registered under ``name``; KeyError naming the closest names otherwise."""
    return METHODS.get(name)


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
