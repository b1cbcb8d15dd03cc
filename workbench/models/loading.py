"""One entry point, :func:`load_model`, for every source of models."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from workbench._core.devices import resolve_device
from workbench.models.model import Model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_model(
    spec: str | nn.Module,
    *,
    pretrained: bool = False,
    device: str | None = "cpu",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    **kwargs,
) -> Model:
    """Load a model and wrap it so that it takes pixel-space [0, 1] images.

    Parameters
    ----------
    spec
        ``"zoo:NAME"`` (embedded PlantedShapes models, offline), ``"timm:NAME"`` (random init unless
        ``pretrained=True``, which downloads hub weights), ``"torchvision:NAME"``, an existing
        :class:`Model` (returned as is), or any ``nn.Module`` (give its ``mean``/``std``).
    pretrained
        Load hub weights for timm/torchvision models. Never implied: without it nothing touches
        the network.
    device
        "cpu", "cuda", "auto", ...; the model is moved there and put in eval mode.
    mean, std, input_size, labels
        Override (or, for a plain module, provide) the preprocessing and class names.
    **kwargs
        Passed to ``timm.create_model`` or the torchvision constructor (e.g. ``num_classes``).

    Returns
    -------
    Model
    """
    if isinstance(spec, Model):
        return spec
    if isinstance(spec, nn.Module):
        model = Model(
            spec,
            mean=mean if mean is not None else (0.0, 0.0, 0.0),
            std=std if std is not None else (1.0, 1.0, 1.0),
            input_size=input_size or (3, 224, 224),
            labels=labels,
            spec=f"module:{type(spec).__name__}",
        )
    elif isinstance(spec, str) and ":" in spec:
        source, _, name = spec.partition(":")
        if source == "zoo":
            from workbench.models.zoo import load_zoo

            model = load_zoo(name)
        elif source == "timm":
            model = _load_timm(name, pretrained, **kwargs)
        elif source == "torchvision":
            model = _load_torchvision(name, pretrained, **kwargs)
        else:
            raise ValueError(
                f"unknown model source {source!r} in {spec!r}; expected zoo:, timm: or torchvision:"
            )
        _override(model, mean, std, input_size, labels)
    else:
        raise ValueError(
            f"expected 'zoo:NAME', 'timm:NAME', 'torchvision:NAME' or an nn.Module, got {spec!r}"
            " (see workbench.models.list_zoo() for the embedded models)"
        )
    return model.to(resolve_device(device)).eval()


def _override(model: Model, mean, std, input_size, labels) -> None:
    if mean is not None or std is not None:
        from workbench.models.model import Normalize

        model.mean = tuple(mean if mean is not None else model.mean)
        model.std = tuple(std if std is not None else model.std)
        model.normalize = Normalize(model.mean, model.std)
    if input_size is not None:
        model.input_size = tuple(input_size)
    if labels is not None:
        model._labels = list(labels)


def _load_timm(name: str, pretrained: bool, **kwargs) -> Model:
    import timm

    if not timm.list_models(name) and name.split(".")[0] not in timm.list_models():
        from workbench._core.validation import closest_names

        raise KeyError(f"unknown timm model {name!r}; closest: {closest_names(name, timm.list_models())}")
    try:
        net = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, ConnectionError, RuntimeError) as err:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not download pretrained weights for timm:{name} ({type(err).__name__}: {err}). "
            "This machine may be offline: use pretrained=False, a zoo: model, or pre-populate the "
            "Hugging Face cache (HF_HOME) and set HF_HUB_OFFLINE=1."
        ) from err
    cfg = net.pretrained_cfg or {}
    input_size = tuple(cfg.get("input_size", (3, 224, 224)))
    if "img_size" in kwargs:  # the model was built for another resolution than its default config
        side = kwargs["img_size"]
        input_size = (input_size[0], side, side) if isinstance(side, int) else (input_size[0], *side)
    return Model(
        net,
        mean=cfg.get("mean", IMAGENET_MEAN),
        std=cfg.get("std", IMAGENET_STD),
        input_size=input_size,
        spec=f"timm:{name}",
    )


def _load_torchvision(name: str, pretrained: bool, **kwargs) -> Model:
    from torchvision import models as tvm

    try:
        builder = tvm.get_model_builder(name)
    except ValueError as err:
        from workbench._core.validation import closest_names

        raise KeyError(
            f"unknown torchvision model {name!r}; closest: {closest_names(name, tvm.list_models())}"
        ) from err
    labels = None
    try:
        weights = tvm.get_model_weights(name).DEFAULT if pretrained else None
        net = builder(weights=weights, **kwargs)
        if weights is not None:
            labels = weights.meta.get("categories")
    except (OSError, ConnectionError, RuntimeError) as err:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not download pretrained weights for torchvision:{name} ({err}); this machine may be offline"
        ) from err
    return Model(
        net,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=(3, 224, 224),
        labels=labels,
        spec=f"torchvision:{name}",
    )
