"""The recipe that trains the embedded zoo on PlantedShapes, reproducibly.

``workbench zoo train NAME`` runs :func:`train_zoo`; the model card records everything needed to
rerun it (data configuration, seed, epochs, command) and the measured accuracies.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import torch

from workbench._core.serialization import atomic_write_bytes
from workbench.data.planted import planted_shapes
from workbench.models.model import Model
from workbench.models.zoo import WEIGHTS_DIR, ZOO, ZOO_MEAN, ZOO_STD, build_zoo_net
from workbench.training.classifier import evaluate_accuracy, train_classifier

IMAGE_SIZE = 64
DEFAULT_RECIPE = {
    "n_train": 8000,
    "n_test": 2000,
    "epochs": 8,
    "batch_size": 128,
    "lr": 3e-3,
    "seed": 0,
    "occlusion": 0.0,
}
TRAIN_SEED_OFFSET, TEST_SEED_OFFSET = 1000, 2000  # disjoint data seeds for train and test sets


def train_zoo(
    name: str,
    out_dir: str | Path | None = None,
    progress: bool = True,
    **recipe,
) -> dict:
    """Train zoo model ``name`` from scratch and write its weights and card to ``out_dir``.

    Parameters
    ----------
    name
        A key of :data:`workbench.models.ZOO`.
    out_dir
        Where to write ``NAME.safetensors`` and ``NAME.json`` (default: the package's zoo folder).
    **recipe
        Overrides of :data:`DEFAULT_RECIPE` (n_train, n_test, epochs, batch_size, lr, seed).

    Returns
    -------
    dict
        The model card.
    """
    from safetensors.torch import save

    entry = ZOO.get(name)
    unknown = set(recipe) - set(DEFAULT_RECIPE)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; expected some of {sorted(DEFAULT_RECIPE)}")
    cfg = {**DEFAULT_RECIPE, **entry.recipe, **recipe}
    seed = cfg["seed"]
    train = planted_shapes(cfg["n_train"], size=IMAGE_SIZE, seed=seed + TRAIN_SEED_OFFSET, **entry.data)
    test = planted_shapes(cfg["n_test"], size=IMAGE_SIZE, seed=seed + TEST_SEED_OFFSET, **entry.data)

    torch.manual_seed(seed)  # weight initialisation
    net = build_zoo_net(name, num_classes=len(train.class_names))
    model = Model(net, ZOO_MEAN, ZOO_STD, (3, IMAGE_SIZE, IMAGE_SIZE), train.class_names, spec=f"zoo:{name}")
    start = time.perf_counter()
    history = train_classifier(
        model,
        train.images,
        train.labels,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        seed=seed,
        occlusion=cfg["occlusion"],
        progress=progress,
    )
    train_seconds = time.perf_counter() - start
    accuracy = {"test": evaluate_accuracy(model, test.images, test.labels)}
    if entry.data.get("shortcut"):
        # The shortcut model is also scored with the cue removed and with the cue flipped
        clean_cfg = {k: v for k, v in entry.data.items() if not k.startswith("shortcut")}
        clean = planted_shapes(cfg["n_test"], size=IMAGE_SIZE, seed=seed + TEST_SEED_OFFSET, **clean_cfg)
        flipped = planted_shapes(
            cfg["n_test"],
            size=IMAGE_SIZE,
            seed=seed + TEST_SEED_OFFSET,
            **{**entry.data, "shortcut_correlation": 0.0},
        )
        accuracy["test_no_shortcut"] = evaluate_accuracy(model, clean.images, clean.labels)
        accuracy["test_shortcut_flipped"] = evaluate_accuracy(model, flipped.images, flipped.labels)

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    blob = save(state)
    card = {
        "name": name,
        "description": entry.description,
        "arch": entry.arch,
        "arch_kwargs": entry.arch_kwargs,
        "stem": entry.stem,
        "params": sum(p.numel() for p in net.parameters()),
        "labels": train.class_names,
        "input_size": [3, IMAGE_SIZE, IMAGE_SIZE],
        "mean": list(ZOO_MEAN),
        "std": list(ZOO_STD),
        "data": {
            "generator": "workbench.data.planted_shapes",
            **_jsonable(train.config),
            "train_seed": seed + TRAIN_SEED_OFFSET,
            "test_seed": seed + TEST_SEED_OFFSET,
            "n_train": cfg["n_train"],
            "n_test": cfg["n_test"],
        },
        "recipe": cfg,
        "accuracy": accuracy,
        "final_train_accuracy": history.accuracy[-1],
        "train_seconds": round(train_seconds, 1),
        "training_command": f"workbench zoo train {name}"
        + "".join(f" --{k.replace('_', '-')} {v}" for k, v in recipe.items()),
        "torch_version": torch.__version__,
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    out = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    atomic_write_bytes(out / f"{name}.safetensors", blob)
    atomic_write_bytes(out / f"{name}.json", json.dumps(card, indent=1).encode())
    return card


def _jsonable(config: dict) -> dict:
    return json.loads(json.dumps(config, default=str))
