"""One registry for every named family of things: methods, baselines, samplers, estimators,
perturbations, zoo models, SAE classes, metrics.

Each family is a :class:`Registry` instance. Entries are registered with a decorator (or a direct
call), looked up with :meth:`Registry.get` (an unknown name fails with the closest valid names), and
listed with the paper and module they come from, so a newcomer can go from a paper to a function.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from workbench._core.validation import closest_names

T = TypeVar("T")

__all__ = ["Entry", "Registry"]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object, with where it comes from."""

    name: str
    obj: T
    paper: str | None
    module: str


class Registry(Generic[T]):
    """Named objects of one kind.

    Parameters
    ----------
    kind
        What the entries are ("attribution method", "baseline", ...); used in error messages.
    populate
        Modules to import before a lookup or a listing, so that entries registered with the decorator
        in those modules exist even when the caller imported only the registry.

    Examples
    --------
    >>> SAMPLERS = Registry("sampler")
    >>> @SAMPLERS.register("uniform", paper="i.i.d. uniform")
    ... def uniform(n, d, seed): ...
    >>> SAMPLERS.get("unifrom")  # doctest: +SKIP
    KeyError: "unknown sampler 'unifrom'; closest: ['uniform'] (all: ['uniform'])"
    """

    def __init__(self, kind: str, populate: tuple[str, ...] = ()):
        self.kind = kind
        self._populate = tuple(populate)
        self._entries: dict[str, Entry[T]] = {}

    # -- registering -----------------------------------------------------------------------------
    def register(self, name: str, obj: T | None = None, *, paper: str | None = None) -> Any:
        """Add ``obj`` under ``name``; without ``obj``, a decorator that adds what it decorates.

        A name can be registered once: a second registration is an error (two modules claiming one
        name is a bug, not an override).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name: expected a non-empty string, got {name!r}")

        def add(target: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            module = getattr(target, "__module__", None) or type(target).__module__
            self._entries[name] = Entry(name, target, paper, module)
            return target

        return add if obj is None else add(obj)

    # -- looking up ------------------------------------------------------------------------------
    def _load(self) -> None:
        for module in self._populate:
            importlib.import_module(module)

    def get(self, name: str) -> T:
        """The object registered under ``name``, or a KeyError naming the closest valid names."""
        if name not in self._entries:
            self._load()
        if name not in self._entries:
            names = self.names()
            raise KeyError(
                f"unknown {self.kind} {name!r}; closest: {closest_names(str(name), names)} (all: {names})"
            )
        return self._entries[name].obj

    def entry(self, name: str) -> Entry[T]:
        """The full :class:`Entry` (object, paper, module) for ``name``."""
        self.get(name)
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        """Every entry, sorted by name: what a table of papers and modules is made from."""
        return [self._entries[name] for name in self.names()]

    def table(self) -> str:
        """A plain-text table: name, paper, module."""
        rows = [(e.name, e.paper or "", e.module) for e in self.entries()]
        widths = [
            max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("name", "paper", "module"))
        ]
        lines = ["  ".join(h.ljust(w) for h, w in zip(("name", "paper", "module"), widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        return "\n".join(lines)

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self._load()
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(e.name, e.obj) for e in self.entries()]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"
