"""k models, model i trained without split i of the data: the setting of MeGe and ReCo.

Fel, Vigouroux, Cadène & Serre, "How Good is your Explanation? Algorithmic Stability Measures to
Assess the Quality of Explanations for Deep Neural Networks", WACV 2022. The metric itself is
:func:`workbench.metrics.algorithmic_stability.mege_reco`; it only needs the models and the fold of every image,
which :func:`train_fold_models` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from workbench._core.devices import resolve_device
from workbench._core.progress import progress as _progress
from workbench._core.validation import check_images, check_targets
from workbench.models.model import Model
from workbench.models.zoo import ZOO, ZOO_MEAN, ZOO_STD, build_zoo_net
from workbench.training.classifier import TrainHistory, evaluate_accuracy, train_classifier
from workbench.training.zoo import DEFAULT_RECIPE

__all__ = ["FoldModels", "assign_folds", "train_fold_models"]

# Keys of the zoo recipe that train_classifier takes (n_train / n_test only size the zoo's own data)
_CLASSIFIER_KEYS = {"batch_size", "lr", "weight_decay", "hflip", "occlusion"}


@dataclass
class FoldModels:
    """k models trained on k complementary subsets, and the fold of every training image.

    Attributes
    ----------
    models : list[Model]
        ``models[i]`` was trained on every image whose fold is not ``i``, in eval mode.
    fold_ids : torch.Tensor
        (N,) long, the fold of each image passed to :func:`train_fold_models`, in [0, k).
    histories : list[TrainHistory]
        The training loss and accuracy per epoch of each model.
    seed : int
        The seed that fixed the folds, the initialisations and the training order.
    """

    models: list[Model]
    fold_ids: torch.Tensor
    histories: list[TrainHistory]
    seed: int

    @property
    def k(self) -> int:
        """Number of folds (and models)."""
        return len(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, i: int) -> Model:
        return self.models[i]

    def __iter__(self) -> Iterator[Model]:
        return iter(self.models)

    def held_out_accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
        """Accuracy of model i on fold i (the images it never saw), for each i.

        ``images`` and ``labels`` are the ones the models were trained from (same order as ``fold_ids``).
        """
        if len(images) != len(self.fold_ids):
            raise ValueError(
                f"images: expected the {len(self.fold_ids)} images the folds were drawn from, got {len(images)}"
            )
        labels = torch.as_tensor(labels)
        return [
            evaluate_accuracy(m, images[self.fold_ids == i], labels[self.fold_ids == i])
            for i, m in enumerate(self.models)
        ]


def assign_folds(labels: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """A fold id in [0, k) for every image: stratified by class, fold sizes within one of each other.

    Within each class the images are shuffled with ``seed`` and dealt round-robin, classes one after the
    other, so every fold holds about 1/k of every class (a fold without some class would train a model
    that never saw it) and the sizes of the folds differ by at most one.
    """
    labels = torch.as_tensor(labels).long().cpu()
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(labels), generator=gen)
    order = perm[torch.argsort(labels[perm], stable=True)]  # grouped by class, shuffled within
    fold_ids = torch.empty(len(labels), dtype=torch.long)
    fold_ids[order] = torch.arange(len(labels)) % k
    return fold_ids


def _zoo_factory(name: str, image_size: tuple[int, int, int], class_names: list[str]) -> Callable[[], Model]:
    name = name.removeprefix("zoo:")
    ZOO.get(name)  # unknown names fail here with the closest valid ones

    def build() -> Model:
        net = build_zoo_net(name, num_classes=len(class_names))
        return Model(net, ZOO_MEAN, ZOO_STD, image_size, class_names, spec=f"zoo:{name} (fold model)")

    return build


def train_fold_models(
    zoo_name_or_factory: str | Callable[[], Model],
    images: torch.Tensor,
    labels: torch.Tensor,
    k: int = 4,
    epochs: int | None = None,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    **recipe,
) -> FoldModels:
    """Train k models, model i on every image except those of fold i (Fel et al., WACV 2022).

    "How Good is your Explanation? Algorithmic Stability Measures to Assess the Quality of
    Explanations for Deep Neural Networks" (Fel, Vigouroux, Cadène & Serre): MeGe and ReCo compare,
    on an image of fold i, the explanation of model i (which never saw it) with those of the others.
    Folds are stratified by class (:func:`assign_folds`). Every model is built and trained by the zoo's
    recipe (:func:`~workbench.training.train_classifier`, AdamW with a cosine schedule), model i with
    seed ``seed + i`` for its initialisation, shuffling and augmentation: the models differ by their
    data and their randomness, as k independent runs of one learning algorithm do. The same seed gives
    the same folds and the same weights (on the same device); the caller's global RNG is left as it was.

    Parameters
    ----------
    zoo_name_or_factory
        A key of :data:`workbench.models.ZOO` (with or without ``"zoo:"``): its architecture and its
        recipe (epochs, batch size, learning rate, occlusion) at the size of ``images``. Or a callable
        returning a fresh, untrained :class:`~workbench.models.Model` (called once per fold, under the
        fold's seed).
    images
        (N, C, H, W) training images in [0, 1].
    labels
        (N,) class indices.
    k
        Number of folds and models, >= 2 (the paper uses 4 to 6; 4 in Xplique's examples).
    epochs
        Training epochs per model (default: the zoo recipe's, or ``train_classifier``'s for a factory).
    seed
        Seeds the folds and every model.
    class_names
        Class names of zoo models (default "0", "1", ... up to the largest label).
    device
        Where the models are trained and left ("auto" picks CUDA, then MPS, then CPU).
    progress
        Show a progress bar over the folds.
    **recipe
        Overrides passed to :func:`~workbench.training.train_classifier`: batch_size, lr,
        weight_decay, hflip, occlusion.

    Returns
    -------
    FoldModels
        The k models (eval mode), the fold of every image and the training histories.
    """
    images = check_images(images, "images", channels=None)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k: expected an integer >= 2 (MeGe/ReCo compare models pairwise), got {k!r}")
    if len(images) < k:
        raise ValueError(f"images: expected at least k = {k} images (one per fold), got {len(images)}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs: expected an integer >= 1, got {epochs!r}")
    labels = check_targets(labels, len(images))
    unknown = set(recipe) - _CLASSIFIER_KEYS
    if unknown:
        raise ValueError(
            f"unknown recipe keys {sorted(unknown)}; expected some of {sorted(_CLASSIFIER_KEYS)}"
        )

    if isinstance(zoo_name_or_factory, str):
        name = zoo_name_or_factory.removeprefix("zoo:")
        entry = ZOO.get(name)
        zoo_recipe = {**DEFAULT_RECIPE, **entry.recipe}
        cfg = {key: zoo_recipe[key] for key in _CLASSIFIER_KEYS if key in zoo_recipe}
        cfg["epochs"] = zoo_recipe["epochs"]
        n_classes = int(labels.max()) + 1
        names = list(class_names) if class_names is not None else [str(c) for c in range(n_classes)]
        if len(names) < n_classes:
            raise ValueError(
                f"class_names: expected at least {n_classes} names for labels up to {n_classes - 1}, got {len(names)}"
            )
        factory = _zoo_factory(name, tuple(images.shape[1:]), names)
    elif callable(zoo_name_or_factory):
        cfg, factory = {}, zoo_name_or_factory
    else:
        raise ValueError(
            f"zoo_name_or_factory: expected a zoo name or a callable returning a Model, got"
            f" {type(zoo_name_or_factory).__name__}"
        )
    cfg.update(recipe)
    if epochs is not None:
        cfg["epochs"] = epochs

    device = resolve_device(device)
    fold_ids = assign_folds(labels, k, seed)
    models, histories = [], []
    # Training reseeds torch's global RNG (initialisation, dropout): fork it so the caller's stream is
    # untouched by this call.
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        for i in _progress(range(k), enabled=progress, desc="folds"):
            fold_seed = seed + i
            torch.manual_seed(fold_seed)  # weight initialisation
            model = factory()
            if not isinstance(model, Model):
                raise ValueError(
                    f"zoo_name_or_factory: the factory must return a workbench Model, got {type(model).__name__}"
                )
            if model.num_classes <= int(labels.max()):
                raise ValueError(
                    f"labels: values up to {int(labels.max())} but the model has {model.num_classes} classes"
                )
            model = model.to(device)
            train = fold_ids != i
            history = train_classifier(
                model, images[train], labels[train], seed=fold_seed, progress=False, **cfg
            )
            models.append(model)
            histories.append(history)
    return FoldModels(models=models, fold_ids=fold_ids, histories=histories, seed=seed)
