"""What a feature-visualization widget can target: a layer's channels, SAE atoms, concepts, classes.

:class:`FeatureVizTargets` holds the choices a :class:`~workbench.widgets.FeatureVizCanvas` offers, checks
a pick (unknown layer, index out of range, a direction of the wrong dimension) and turns it into a
:mod:`workbench.featviz.objectives` objective: ``channel(layer, c)``, ``direction(layer, atom, cosine=True)``
for an SAE atom, ``direction(layer, concept)`` for a concept, ``logit(c)`` for a class (MACO, Fel et al.,
NeurIPS 2023). Building an objective computes nothing: the optimizer the widget receives runs it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from workbench._core.validation import check_int, closest_names
from workbench.widgets.checks import check_names, check_values

#: The kinds of targets, in the order the widget lists them.
TARGET_KINDS = ("channel", "atom", "concept", "class")
_PLURAL = {"channel": "channels", "atom": "atoms", "concept": "concepts", "class": "classes"}


def dictionary_of(sae: Any, name: str = "sae") -> torch.Tensor:
    """The (n_atoms, d) dictionary of a sparse dictionary (anything with ``dictionary``) or a tensor."""
    d = getattr(sae, "dictionary", sae)
    return check_values(
        d, name, (None, None), "a dictionary of shape (n_atoms, d), or an SAE with .dictionary"
    )


@dataclass(frozen=True)
class FeatureVizTargets:
    """The targets offered, checked.

    Parameters
    ----------
    channels
        ``{layer: number of channels}`` of the layers whose channels can be visualized.
    atoms, atom_layer
        (n_atoms, d) dictionary rows of an SAE and the layer it was trained on (or None).
    concepts, concept_layer
        (k, C) concept vectors (e.g. CRAFT's ``W``) and their layer (or None).
    concept_names
        Names of the k concepts.
    class_names
        Names of the model's classes (an empty list: no class target).
    """

    channels: dict[str, int] = field(default_factory=dict)
    atoms: torch.Tensor | None = None
    atom_layer: str | None = None
    concepts: torch.Tensor | None = None
    concept_layer: str | None = None
    concept_names: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    @classmethod
    def checked(
        cls,
        channels: Mapping[str, int] | None = None,
        sae: Any = None,
        sae_layer: str | None = None,
        concepts: Any = None,
        concept_layer: str | None = None,
        concept_names: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> FeatureVizTargets:
        """The targets from the widget's arguments, with clear errors for inconsistent ones."""
        if channels is None:
            channels = {}
        if not isinstance(channels, Mapping):
            raise ValueError(f"channels: expected a dict {{layer: number of channels}}, got {type(channels).__name__}")  # fmt: skip
        checked = {}
        for layer, n in channels.items():
            if not isinstance(layer, str) or not layer:
                raise ValueError(f"channels: layer names must be non-empty strings, got {layer!r}")
            checked[layer] = check_int(n, f"channels[{layer!r}]")
        atoms = atom_layer = None
        if sae is not None:
            atoms = dictionary_of(sae)
            atom_layer = _layer(
                sae_layer, "sae_layer", "sae", checked, atoms.shape[1], "the dictionary's atoms"
            )
        elif sae_layer is not None:
            raise ValueError("sae_layer: given without an sae")
        vectors = layer_c = None
        names: list[str] = []
        if concepts is not None:
            vectors = check_values(concepts, "concepts", (None, None), "k concepts, C channels")
            layer_c = _layer(
                concept_layer, "concept_layer", "concepts", checked, vectors.shape[1], "the concepts"
            )
            names = check_names(concept_names, len(vectors), "concept_names", "concept ")[: len(vectors)]
        elif concept_layer is not None or concept_names is not None:
            raise ValueError("concept_layer / concept_names: given without concepts")
        classes = [] if class_names is None else check_names(class_names, 0, "class_names", "")
        targets = cls(checked, atoms, atom_layer, vectors, layer_c, names, classes)
        if not targets.kinds:
            raise ValueError(
                "nothing to visualize: give channels={layer: n_channels}, an sae, concepts or class_names"
            )
        return targets

    @property
    def kinds(self) -> list[str]:
        """The kinds of targets available, among :data:`TARGET_KINDS`."""
        have = {"channel": bool(self.channels), "atom": self.atoms is not None,
                "concept": self.concepts is not None, "class": bool(self.class_names)}  # fmt: skip
        return [k for k in TARGET_KINDS if have[k]]

    def layer_of(self, kind: str, layer: str | None = None) -> str | None:
        """The layer a target of ``kind`` reads (``layer`` for channels; None for a class)."""
        kind = self.check_kind(kind)
        if kind == "channel":
            return self.check_layer(layer)
        return {"atom": self.atom_layer, "concept": self.concept_layer, "class": None}[kind]

    def check_kind(self, kind: str) -> str:
        if kind not in self.kinds:
            raise ValueError(f"target: expected one of {self.kinds}, got {kind!r}")
        return kind

    def check_layer(self, layer: str | None) -> str:
        if layer not in self.channels:
            valid = list(self.channels)
            raise KeyError(f"layer: unknown layer {layer!r}; closest: {closest_names(str(layer), valid)} (valid: {valid})")  # fmt: skip
        return layer

    def count(self, kind: str, layer: str | None = None) -> int:
        """How many targets of ``kind`` there are (channels of ``layer``, atoms, concepts, classes)."""
        kind = self.check_kind(kind)
        if kind == "channel":
            return self.channels[self.check_layer(layer)]
        return {"atom": lambda: len(self.atoms), "concept": lambda: len(self.concepts),
                "class": lambda: len(self.class_names)}[kind]()  # fmt: skip

    def check_index(self, kind: str, index: Any, layer: str | None = None) -> int:
        """``index`` as an int in [0, count); a ValueError naming the range otherwise."""
        n = self.count(kind, layer)
        where = f" of layer {layer!r}" if kind == "channel" else ""
        if (
            isinstance(index, torch.Tensor)
            and index.numel() == 1
            and not index.is_floating_point()
            and index.dtype != torch.bool
        ):
            index = int(index.item())
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise ValueError(f"index: expected an integer {kind} index, got {index!r}")
        index = int(index)
        if not 0 <= index < n:
            raise ValueError(
                f"index: {kind} {index} is out of range: there are {n} {_PLURAL[kind]}{where} (0..{n - 1})"
            )
        return index

    def label(self, kind: str, index: int, layer: str | None = None) -> str:
        """What the target is, for people: "channel 5 of layer3", "atom 12", "concept 'red'", "class 2 (dots)"."""
        index = self.check_index(kind, index, layer)
        if kind == "channel":
            return f"channel {index} of {layer}"
        if kind == "atom":
            return f"atom {index} ({self.atom_layer})"
        if kind == "concept":
            return f"concept {index} \u201c{self.concept_names[index]}\u201d ({self.concept_layer})"
        return f"class {index} ({self.class_names[index]})"

    def objective(self, kind: str, index: int, layer: str | None = None):
        """The :mod:`workbench.featviz.objectives` objective of one target (checked first).

        Channel: ``channel(layer, c)``; atom: ``direction(atom_layer, D[i], cosine=True)``; concept:
        ``direction(concept_layer, W[k])``; class: ``logit(c)`` (MACO, Fel et al., NeurIPS 2023).
        """
        from workbench.featviz import objectives

        index = self.check_index(kind, index, layer)
        if kind == "channel":
            return objectives.channel(layer, index)
        if kind == "atom":
            return objectives.direction(self.atom_layer, self.atoms[index], cosine=True, name=f"atom {index}")
        if kind == "concept":
            return objectives.direction(self.concept_layer, self.concepts[index], name=f"concept {index}")
        return objectives.logit(index)


def _layer(layer: Any, name: str, owner: str, channels: Mapping[str, int], dim: int, what: str) -> str:
    """The layer of ``owner``'s directions: a non-empty string whose channel count (when known) is ``dim``."""
    if not isinstance(layer, str) or not layer:
        raise ValueError(
            f"{name}: {owner} needs the layer its directions live in (a module name), got {layer!r}"
        )
    if layer in channels and channels[layer] != dim:
        raise ValueError(
            f"{name}: layer {layer!r} has {channels[layer]} channels, but {what} have dimension {dim}"
        )
    return layer
