"""The Model wrapper: pixel-space [0,1] input, normalization inside, split points and hooks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench._core.validation import check_images, closest_names
from workbench.models.hooks import forward_hooks
from workbench.models.split import SplitGraph


class Normalize(nn.Module):
    """(x - mean) / std per channel, with mean and std as buffers so they follow the device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class _Stage(nn.Module):
    """Normalize, then the g part of a split: pixel space in, activation out."""

    def __init__(self, normalize: Normalize, g: nn.Module):
        super().__init__()
        self.normalize, self.g = normalize, g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(self.normalize(x))


class _StopForward(Exception):
    """Raised from a hook once every requested activation is captured, to skip the rest."""


class Model(nn.Module):
    """A vision classifier that takes pixel-space images and normalizes them itself.

    Every method in the workbench talks to models through this wrapper, so that a zero baseline
    means black and a perturbation means the same thing for every model.

    Parameters
    ----------
    net
        The network, which expects normalized input.
    mean, std
        Per-channel normalization applied inside :meth:`forward`.
    input_size
        (C, H, W) the network was trained at.
    labels
        Class names; defaults to "class_0", "class_1", ...
    spec
        How the model was loaded ("zoo:resnet_shapes", "timm:resnet18", ...), recorded in results.
    card
        Free-form metadata (the zoo's model card).
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        input_size: Sequence[int] = (3, 224, 224),
        labels: Sequence[str] | None = None,
        spec: str = "module",
        card: dict | None = None,
    ):
        super().__init__()
        self.net = net
        self.normalize = Normalize(mean, std)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.input_size = tuple(int(s) for s in input_size)
        self.spec = spec
        self.card = dict(card or {})
        self._labels = list(labels) if labels is not None else None
        self._split_graph: SplitGraph | None = None

    # -- basics ---------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        if self._labels is not None:
            return len(self._labels)
        n = getattr(self.net, "num_classes", None)
        if isinstance(n, int):
            return n
        raise AttributeError("num_classes is unknown for this network: pass labels= when wrapping it")

    @property
    def labels(self) -> list[str]:
        if self._labels is None:
            self._labels = [f"class_{i}" for i in range(self.num_classes)]
        return list(self._labels)

    @property
    def device(self) -> torch.device:
        return self.normalize.mean.device

    def forward(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Logits for pixel-space images (N, C, H, W) in [0, 1].

        ``check=False`` skips input validation (one device sync for the range check); methods that
        call the model thousands of times on inputs they built themselves use it. NumPy arrays are
        accepted (converted to float32 tensors). Under ``torch.export`` and ``torch.compile`` the
        data-dependent range check is skipped (the shape checks stay), so a wrapped model exports.
        """
        if check:
            x = check_images(x, channels=self.input_size[0])
        return self.net(self.normalize(x))

    def __repr__(self) -> str:
        return f"Model(spec={self.spec!r}, input_size={self.input_size}, classes={len(self.labels)})"

    # -- layers, split, activations --------------------------------------------------------------
    def _graph(self) -> SplitGraph:
        if self._split_graph is None:
            try:
                self._split_graph = SplitGraph.trace(self.net)
            except Exception as err:  # noqa: BLE001 - any tracing failure means the same thing here
                raise ValueError(
                    f"{self.spec}: this network cannot be traced with torch.fx ({type(err).__name__}: {err});"
                    " split points are unavailable, but activations() still works on any module name"
                ) from err
        return self._split_graph

    def layers(self) -> list[str]:
        """Valid split points, in forward order: the modules whose output alone feeds the rest."""
        return self._graph().layers()

    def module_names(self) -> list[str]:
        """Every named submodule (any of them can be hooked by :meth:`activations`)."""
        return [name for name, _ in self.net.named_modules() if name]

    def _check_layer(self, layer: str, valid: Sequence[str], what: str) -> None:
        if layer not in valid:
            close = closest_names(layer, valid)
            raise KeyError(
                f"unknown {what} {layer!r} for {self.spec}; closest valid names: {close}"
                f" (see model.layers() for all {len(valid)})"
            )

    def split(self, layer: str) -> tuple[nn.Module, nn.Module]:
        """Split into g (pixel-space images -> activation at ``layer``) and h (activation -> logits).

        h(g(x)) equals forward(x); h accepts modified activations (for ViTs: all tokens, CLS
        included). g includes the normalization. Both share this model's parameters.
        """
        graph = self._graph()
        if layer not in graph.cut_index:
            self._check_layer(layer, self.layers(), "split layer")
        g, h = graph.split(layer)
        return _Stage(self.normalize, g), h

    def activations(
        self, x: torch.Tensor, layers: str | Sequence[str], detach: bool = True, check: bool = True
    ) -> dict[str, torch.Tensor]:
        """Outputs of ``layers`` for pixel-space images, from one forward pass through hooks.

        CNN layers give (N, C, H, W); ViT blocks give tokens (N, T, C). The forward pass stops as
        soon as the last requested layer has run, so early layers cost only what precedes them.
        """
        names = list(dict.fromkeys([layers] if isinstance(layers, str) else layers))
        valid = self.module_names()
        for name in names:
            self._check_layer(name, valid, "layer")
        store: dict[str, torch.Tensor] = {}

        def keep(name: str, out: torch.Tensor) -> None:
            store[name] = out.detach() if detach else out
            if len(store) == len(names):  # every requested layer ran: skip the rest of the network
                raise _StopForward

        with forward_hooks(self.net, names, keep):
            try:
                self.forward(x, check=check)
            except _StopForward:
                pass
        return {name: store[name] for name in names}
