"""Concept ground truth: CRAFT on zoo models whose concepts are known.

``zoo:resnet_shape_color`` says class 1 iff the object is a circle OR red, so CRAFT on class 1 should find
a "circle" and a "red" concept and rank, in each image, the one present above the one absent. Every draw
here is fresh (the model was trained on seed 1000 and tested on seed 2000). ``zoo:resnet_textures`` is
compared with Xplique's CRAFT fixture (tests/data/xplique_craft_resnet_textures.npz), which ranks first a
concept whose top crops are background.

Parameters were found by a scan (layer x patch x concepts, six seeds); the figures quoted in the
comments are those measured at the seeds below.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from workbench.concepts.craft import Craft
from workbench.concepts.crops import crop_at
from workbench.data import planted_shapes
from workbench.models import load_model
from workbench.sae.metrics import matching

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = Path(__file__).parent / "data" / "xplique_craft_resnet_textures.npz"
SEED = 7  # fresh draws: not the training (1000) or test (2000) seeds
OTHER_COLOURS = ("green", "yellow", "purple", "cyan")


@pytest.fixture(scope="module")
def shape_color():
    return load_model("zoo:resnet_shape_color")


@pytest.fixture(scope="module")
def disjunctive(shape_color):
    """CRAFT on the class-1 images of 400 fresh draws (132 images: 65 circles, 52 red, 15 red circles).

    layer3, patch 24, 6 concepts. Scan: at layer4 (just before the linear head) the circle and red
    concepts are found too, but the red concept out-ranks the circle concept in circle images (the
    present-above-absent rate was 0.44 to 0.60 for 4 to 8 concepts, patches 32 to 64): layer4 is one
    "class-1 evidence" direction, strongest for red, that NMF splits without aligning it to the shapes.
    At layer3 with patch 24 and 6 or 8 concepts the rate was 1.000 on six seeds (5 concepts: 0.43 to
    0.58, the red and circle parts merge).
    """
    ds = planted_shapes(400, size=64, seed=SEED, rule="shape_color")
    keep = ds.labels == 1
    names = ds.concept_names
    circle = ds.concepts[keep, names.index("shape=circle")]
    red = ds.concepts[keep, names.index("color=red")]
    x = ds.images[keep]
    craft = Craft(shape_color, "layer3", n_concepts=6, patch_size=24).fit(x, 1)
    image = craft.crop_positions[:, 0]
    only = {"circle": circle & ~red, "red": red & ~circle}
    # purity: the share of a concept's top-20 crops that come from images with the concept and not the other
    purity = {
        name: torch.stack([has[image[craft.top_crops(k, 20)]].float().mean() for k in range(6)])
        for name, has in only.items()
    }
    return SimpleNamespace(craft=craft, x=x, only=only, purity=purity)


def test_craft_finds_the_planted_concepts(disjunctive):
    purity = disjunctive.purity
    # measured: circle [0, 1, 0.70, 0.95, 0, 1], red [0.65, 0, 0.25, 0, 0.95, 0]
    assert float(purity["circle"].max()) >= 0.8 and float(purity["red"].max()) >= 0.8
    assert int(purity["circle"].argmax()) != int(purity["red"].argmax())


@pytest.mark.slow
def test_present_concept_ranks_above_absent(disjunctive):
    """Per image, Sobol importance ranks the planted concept present above the one absent.

    32 images with exactly one of the two (the first 16 circles that are not red and 16 red non-circles;
    measured 1.000 on them, and 1.000 on all 117 such images). Each planted concept is represented by
    the most important of the concepts whose top crops are >= 80 % pure for it.
    """
    only, purity = disjunctive.only, disjunctive.purity
    idx = torch.cat([torch.nonzero(only["circle"]).flatten()[:16], torch.nonzero(only["red"]).flatten()[:16]])
    imp = disjunctive.craft.importance(disjunctive.x[idx], per_image=True)  # (32, 6)
    mean = imp.mean(0)

    def representative(name):
        pure = torch.nonzero(purity[name] >= 0.8).flatten()
        return int(pure[mean[pure].argmax()])

    kc, kr = representative("circle"), representative("red")
    is_circle = only["circle"][idx]
    right = torch.where(is_circle, imp[:, kc] > imp[:, kr], imp[:, kr] > imp[:, kc])
    assert float(right.float().mean()) >= 0.9


def test_refining_a_shared_concept_separates_the_classes(shape_color):
    """A concept shared by two classes, decomposed at an earlier layer, splits into one per class.

    Red squares (class 1) and blue squares (class 0): at layer4 with 8 concepts, CRAFT keeps a shape
    concept shared by both (top-20 crops 45 % class 1, ambiguity 0.99 at this seed; 25 % and 0.74 to
    0.78 at seeds 6 to 8). Refined at layer2 from its top 60 crops into 2 sub-concepts, one takes the
    red squares and the other the blue ones: top-20 class purity 1.00 for both, on all four seeds
    (top 40: 0.75 to 0.85). The concept owns no crop by argmax (it is never the largest code), hence
    ``top``. The issue's example (blue shared by blue circles and blue squares) does not separate: a
    "blue" concept exists at layer3, but refining it at layer2 or layer1 moved the top-20 class purity
    only from 0.50 to 0.57-0.62, and the purity of the partition not at all (0.55): locally, crops of a
    blue circle and of a blue square look alike to the early layers, whereas colour is what they see.
    """
    weights = {f"color={c}": 0.0 for c in OTHER_COLOURS} | {"shape=circle": 0.0}
    ds = planted_shapes(
        200, size=64, seed=5, rule="shape_color", shapes=("circle", "square"), concept_weights=weights
    )
    y = ds.labels
    craft = Craft(shape_color, "layer4", n_concepts=8, patch_size=32).fit(ds.images, 1)
    ambiguity = craft.ambiguity(labels=y)
    on_object = crop_at(ds.object_masks[:, None].float(), craft.crop_positions, 32).mean((1, 2, 3))
    objects = [k for k in range(8) if float(on_object[craft.top_crops(k, 20)].mean()) >= 0.4]
    k = max(objects, key=lambda j: float(ambiguity[j]))

    def class1_share(c, j):
        return float(y[c.crop_positions[c.top_crops(j, 20), 0]].float().mean())

    assert float(ambiguity[k]) >= 0.7 and 0.2 <= class1_share(craft, k) <= 0.8  # shared by both classes
    child = craft.refine(k, layer="layer2", n_concepts=2, top=60)
    shares = sorted(class1_share(child, j) for j in range(2))
    assert shares[0] <= 0.05 and shares[1] >= 0.95  # one sub-concept per class
    assert float(child.ambiguity(labels=y).max()) <= 0.3
    node = craft.tree(importance=False).children[k]
    assert [c.layer for c in node.children] == ["layer2", "layer2"]


def test_textures_maps_against_xplique_background_concept():
    """Where each concept of resnet_textures lies, beside its importance, against Xplique's finding.

    Xplique ranks first its concept 2, whose top-10 crops hold 4.7 % object pixels ("background").
    Ours (patch 32, 5 concepts) has the same concept (cosine 0.998) and ranks it first too, at
    importance 0.402 beside 0.395 for concept 0 (a near tie: concept 3, not converged in Xplique, moves
    importance around). Measured per concept (ours, matched to Xplique's numbering):

    ========  ==========  =================  ===================  ====================
    concept   importance  top-10 crops obj.  code-map mass in obj  gradient-map in obj
    ========  ==========  =================  ===================  ====================
    0         0.395       0.445              0.651                0.455
    1         0.003       0.424              0.008                0.068
    2         0.402       0.052              0.492                0.350
    3         0.011       0.303              0.467                0.624
    4         0.057       0.093              0.001                0.053
    ========  ==========  =================  ===================  ====================

    So we agree on the ranking and on the crops, but concept 2 is not a background concept: in whole
    images half its code mass lies in the object, which covers 13.6 % of the pixels (3.6 times its share),
    and removing it inside the object lowers the logit as much as removing it outside. Its top crops
    look like background because of the crop size: 32 px crops of 64 px images hold 21 % object on
    average, and the concept (striped texture at the crop's 2x upsampled scale) fires on striped
    crops of either kind. The model itself has no background confound: a striped background moves the
    stripes logit of non-striped objects by less than 0.5 (against about 10 between object textures).
    """
    data = np.load(FIXTURE)
    x, masks = torch.from_numpy(data["images"]), torch.from_numpy(data["object_masks"])
    model = load_model("zoo:resnet_textures")
    craft = Craft(model, "layer4", n_concepts=5, patch_size=32).fit(x, 1)
    rows, cols, _ = matching(torch.from_numpy(data["w"]), craft.concepts)
    k = int(cols[list(rows).index(2)])  # ours matched to Xplique's concept 2
    importance = craft.importance()
    assert int(torch.argsort(importance, descending=True)[:2].eq(k).sum()) == 1  # first or second
    assert float(importance[k]) >= 0.3
    on_object = crop_at(masks[:, None].float(), craft.crop_positions, 32).mean((1, 2, 3))
    assert float(on_object[craft.top_crops(k, 10)].mean()) < 0.1  # background by its crops
    maps = craft.concept_maps(x)
    inside = (maps * masks[:, None]).sum((0, 2, 3)) / maps.sum((0, 2, 3))
    assert float(inside[k]) >= 0.4 and float(inside[k]) >= 3 * float(masks.float().mean())

    ds = planted_shapes(200, size=64, seed=SEED, rule="texture")
    names = ds.concept_names
    with torch.inference_mode():
        stripes_logit = model(ds.images)[:, 1]
    striped_bg = ds.concepts[:, names.index("background=stripes")]
    for texture in ("solid", "dots", "checker"):
        has = ds.concepts[:, names.index(f"texture={texture}")]
        gap = stripes_logit[has & striped_bg].mean() - stripes_logit[has & ~striped_bg].mean()
        assert abs(float(gap)) < 0.5
