"""The zoo training code, exercised on tiny runs (the shipped models are never retrained in tests)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from workbench.data import planted_shapes
from workbench.models import Model
from workbench.models.zoo import build_zoo_net
from workbench.training import evaluate_accuracy, train_classifier, train_zoo
from workbench.training.occlusion_augment import random_occlusion


def _tiny_model(seed: int = 0) -> Model:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)
    )
    return Model(net, (0.5,) * 3, (0.5,) * 3, (3, 32, 32), labels=list("abcde"))


def test_train_classifier_learns_and_is_reproducible():
    data = planted_shapes(256, size=32, seed=0)
    runs = []
    for _ in range(2):
        model = _tiny_model()
        hist = train_classifier(
            model, data.images, data.labels, epochs=6, batch_size=64, lr=1e-2, seed=3, progress=False
        )
        runs.append((model, hist))
    (m1, h1), (m2, h2) = runs
    assert h1.loss[-1] < h1.loss[0]  # it learns something
    assert h1.loss == h2.loss  # same seed, same trajectory
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    assert not m1.training, "train_classifier hands the model back in eval mode"
    assert 0.0 <= evaluate_accuracy(m1, data.images, data.labels) <= 1.0


def test_train_classifier_refuses_bad_input():
    model = _tiny_model()
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        train_classifier(model, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 9]), progress=False)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(
            model, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]), epochs=0, progress=False
        )


def test_random_occlusion_masks_a_fraction_of_the_batch_reproducibly():
    """Chosen images keep some pixels and lose others to black, a blur or the mean colour; the rest
    are untouched; the same generator state gives the same batch."""
    x = planted_shapes(64, size=32, seed=1).images
    assert torch.equal(random_occlusion(x, 0.0, torch.Generator().manual_seed(0)), x)
    outs = [random_occlusion(x, 0.5, torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    changed = (outs[0] != x).flatten(1).any(1)
    assert 0.25 < changed.float().mean() < 0.75  # about half of the batch
    assert outs[0].min() >= 0 and outs[0].max() <= 1 and outs[0].shape == x.shape
    fills = set()
    for s in range(40):  # every fill appears over a few batches
        gen = torch.Generator().manual_seed(s)
        out = random_occlusion(x, 1.0, gen)
        changed_px = (out != x).any(1)
        fills.add("black" if bool((out.sum(1)[changed_px] == 0).float().mean() > 0.5) else "other")
    assert fills == {"black", "other"}


def test_train_classifier_occlusion_changes_training_and_is_checked():
    data = planted_shapes(128, size=32, seed=0)
    kw = dict(epochs=1, batch_size=64, lr=1e-2, seed=3, progress=False)
    plain = train_classifier(_tiny_model(), data.images, data.labels, **kw)
    occluded = train_classifier(_tiny_model(), data.images, data.labels, occlusion=0.5, **kw)
    assert plain.loss != occluded.loss
    with pytest.raises(ValueError, match="occlusion"):
        train_classifier(_tiny_model(), data.images, data.labels, occlusion=1.5, **kw)


@pytest.mark.slow
def test_train_zoo_writes_weights_and_card(tmp_path):
    card = train_zoo(
        "resnet_shapes", out_dir=tmp_path, n_train=64, n_test=32, epochs=1, batch_size=32, progress=False
    )
    on_disk = json.loads((tmp_path / "resnet_shapes.json").read_text())
    assert on_disk == card
    assert card["training_command"].startswith("workbench zoo train resnet_shapes")
    assert card["data"]["rule"] == "shape" and card["labels"] == [
        "circle",
        "square",
        "triangle",
        "star",
        "cross",
    ]
    net = build_zoo_net("resnet_shapes", num_classes=5)
    net.load_state_dict(load_file(str(tmp_path / "resnet_shapes.safetensors")))
    assert not list(tmp_path.glob(".*tmp*"))


def test_unknown_recipe_key():
    with pytest.raises(ValueError, match="unknown recipe keys"):
        train_zoo("resnet_shapes", epochz=3)
