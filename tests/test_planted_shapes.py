"""PlantedShapes: ground truth that the attribution, concept and shortcut checks rely on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from workbench.data.planted import (
    CLASS_SHAPES,
    RULES,
    SHAPE_NAMES,
    PlantedShapes,
    Rule,
    planted_shapes,
    regenerate,
)

TENSOR_FIELDS = [
    f.name
    for f in dataclasses.fields(PlantedShapes)
    if f.name not in ("concept_names", "class_names", "config")
]


def assert_same(a: PlantedShapes, b: PlantedShapes) -> None:
    for name in TENSOR_FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.concept_names == b.concept_names and a.class_names == b.class_names


def group(ds: PlantedShapes, name: str) -> torch.Tensor:
    """The columns of one concept group, e.g. "shape"."""
    return ds.concepts[:, [i for i, c in enumerate(ds.concept_names) if c.startswith(name + "=")]]


@pytest.fixture(scope="module")
def ds() -> PlantedShapes:
    return planted_shapes(60, size=64, seed=7)


def test_fields_shapes_dtypes_and_ranges(ds):
    n, k = 60, len(ds.concept_names)
    assert ds.images.shape == (n, 3, 64, 64) and ds.images.dtype == torch.float32
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    assert ds.labels.shape == (n,) and ds.labels.dtype == torch.int64
    for masks in (ds.object_masks, ds.shortcut_masks, ds.distractor_masks):
        assert masks.shape == (n, 64, 64) and masks.dtype == torch.bool
    assert ds.concepts.shape == (n, k) and ds.concepts.dtype == torch.bool
    assert ds.class_names == list(CLASS_SHAPES)
    assert {c.split("=")[0] for c in ds.concept_names} == {"shape", "color", "texture", "size", "background"}
    for g in ("shape", "color", "texture", "size", "background"):  # one-hot within each group
        assert (group(ds, g).sum(1) == 1).all(), g
    assert not ds.shortcut.any() and not ds.shortcut_masks.any() and (ds.shortcut_labels == -1).all()
    assert not ds.distractor_masks.any()
    assert ds.config["n"] == 60 and ds.config["seed"] == 7 and ds.config["rule"] == "shape"
    assert "PlantedShapes(n=60" in repr(ds)


def test_dataset_protocol_and_subset(ds):
    assert len(ds) == 60
    x, y = ds[3]
    assert torch.equal(x, ds.images[3]) and int(y) == int(ds.labels[3])
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 3, 64, 64) and torch.equal(yb, ds.labels[:8])
    for idx in ([5, 2, 9], slice(10, 13), torch.tensor([5, 2, 9]), np.array([5, 2, 9])):
        sub = ds.subset(idx)
        ref = [5, 2, 9] if not isinstance(idx, slice) else [10, 11, 12]
        assert len(sub) == 3 and torch.equal(sub.object_masks, ds.object_masks[ref])
        assert sub.concept_names == ds.concept_names and sub.config == ds.config
    mask = ds.labels == 0
    assert torch.equal(ds.subset(mask).labels, ds.labels[mask])
    with pytest.raises(IndexError):
        ds.subset([60])


def test_deterministic_and_independent_of_chunking():
    kw = dict(n=30, size=48, seed=11, n_distractors=2, shortcut="patch", shortcut_correlation=0.5)
    a = planted_shapes(**kw)
    assert_same(a, planted_shapes(**kw))
    assert_same(a, planted_shapes(**kw, batch_size=4))
    assert_same(a, planted_shapes(**kw, batch_size=1000))
    assert not torch.equal(a.images, planted_shapes(**{**kw, "seed": 12}).images)


def test_shortcut_and_distractors_leave_the_rest_unchanged():
    plain = planted_shapes(40, size=64, seed=3)
    cued = planted_shapes(40, size=64, seed=3, shortcut="patch", n_distractors=2)
    assert torch.equal(plain.labels, cued.labels) and torch.equal(plain.object_masks, cued.object_masks)
    untouched = ~(cued.shortcut_masks | cued.distractor_masks)[:, None].expand_as(plain.images)
    assert torch.equal(plain.images[untouched], cued.images[untouched])


def test_object_masks_nonempty_reasonably_large_and_coloured(ds):
    area = ds.object_masks.flatten(1).float().mean(1)
    assert float(area.min()) > 0.04 and float(area.max()) < 0.5
    rows, cols = ds.object_masks.any(2), ds.object_masks.any(1)
    for m in (rows, cols):  # extent of the object along each axis, as a fraction of the side
        idx = torch.arange(64).expand_as(m)
        extent = (torch.where(m, idx, -1).amax(1) - torch.where(m, idx, 99).amin(1) + 1) / 64
        assert float(extent.min()) > 0.2 and float(extent.max()) < 0.8
    # The object differs from the background around it: its pixels are not background-grey.
    obj = ds.images.permute(0, 2, 3, 1)[ds.object_masks]
    assert float((obj.amax(1) - obj.amin(1)).mean()) > 0.25  # saturated colours


def test_different_shapes_have_different_masks():
    # The same seed gives the same poses, so only the shape differs between these sets.
    only = {
        s: planted_shapes(12, 64, seed=5, concept_weights={f"shape={o}": 0.0 for o in CLASS_SHAPES if o != s})
        for s in CLASS_SHAPES
    }
    for s, d in only.items():
        assert (d.labels == CLASS_SHAPES.index(s)).all()
    for i, a in enumerate(CLASS_SHAPES):
        for b in CLASS_SHAPES[i + 1 :]:
            ma, mb = only[a].object_masks, only[b].object_masks
            iou = (ma & mb).flatten(1).sum(1) / (ma | mb).flatten(1).sum(1)
            # A disc and a square of similar area overlap most (IoU about 0.82); other pairs about 0.6.
            assert float(iou.max()) < (0.88 if {a, b} == {"circle", "square"} else 0.7), (a, b)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_labels_follow_named_rules(rule):
    d = planted_shapes(50, size=32, seed=1, rule=rule)
    names = d.concept_names
    if rule in ("shape", "color", "texture"):
        cols = [names.index(f"{rule}={c}") for c in d.class_names]
        assert d.concepts[torch.arange(50)[:, None], torch.tensor(cols)].int().argmax(1).equal(d.labels)
        assert d.concepts[torch.arange(50), torch.tensor(cols)[d.labels]].all()
    else:
        expected = d.concepts[:, names.index("shape=circle")] | d.concepts[:, names.index("color=red")]
        assert torch.equal(d.labels, expected.long()) and d.class_names == ["neither", "circle_or_red"]
    assert d.labels.max() < len(d.class_names)


def test_callable_rule_and_rule_objects():
    def dotted(concepts, names):
        return concepts[:, names.index("texture=dots")]

    d = planted_shapes(20, size=32, rule=dotted)
    assert torch.equal(d.labels, d.concepts[:, d.concept_names.index("texture=dots")].long())
    assert d.class_names == ["0", "1"] and d.config["rule"].startswith("custom:")
    d = planted_shapes(20, size=32, rule=Rule(dotted, lambda names: ["plain", "dotted"], "dots or not"))
    assert d.class_names == ["plain", "dotted"]
    with pytest.raises(ValueError, match="integer labels"):
        planted_shapes(5, size=32, rule=lambda c, n: np.zeros(4, int))
    with pytest.raises(ValueError, match="to index the class names"):
        planted_shapes(20, size=32, rule=Rule(dotted, lambda names: ["only one"], ""))
    with pytest.raises(ValueError, match="to index the class names"):
        planted_shapes(5, size=32, rule=lambda c, n: -np.ones(len(c), int))


def test_classes_are_balanced_under_concept_weights():
    d = planted_shapes(100, size=32, seed=2, concept_weights={"color=red": 5.0, "texture=stripes": 0.0})
    assert torch.bincount(d.labels, minlength=5).tolist() == [20] * 5
    assert int(d.concepts[:, d.concept_names.index("color=red")].sum()) == 50  # 5 / (5 + 5 * 1)
    assert not d.concepts[:, d.concept_names.index("texture=stripes")].any()


def test_zero_weight_suppresses_a_concept_entirely():
    for name in ("texture=stripes", "shape=star", "background=stripes", "size=large"):
        d = planted_shapes(200, size=32, seed=4, concept_weights={name: 0.0})
        assert not d.concepts[:, d.concept_names.index(name)].any(), name
    d = planted_shapes(60, size=32, concept_weights={"shape=star": 0.0})
    assert 3 not in d.labels.tolist() and d.class_names[3] == "star"


@pytest.mark.parametrize("kind", ["patch", "tint"])
def test_shortcut_correlation_is_as_requested(kind):
    d = planted_shapes(2000, size=32, seed=0, shortcut=kind, shortcut_correlation=0.9)
    agree = (d.shortcut_labels == d.labels).float().mean()
    assert abs(float(agree) - 0.9) < 0.03
    assert d.shortcut.all() and (d.shortcut_labels >= 0).all() and (d.shortcut_labels < 5).all()
    flipped = planted_shapes(300, size=32, seed=1, shortcut=kind, shortcut_correlation=0.0)
    assert (flipped.shortcut_labels != flipped.labels).all()
    # Disagreeing cues are spread over the other classes, not always the same one.
    assert len(set(flipped.shortcut_labels[flipped.labels == 0].tolist())) == 4
    full = planted_shapes(300, size=32, seed=1, shortcut=kind, shortcut_correlation=1.0)
    assert torch.equal(full.shortcut_labels, full.labels)


def test_patch_cue_is_a_label_coded_corner_square_off_the_object():
    d = planted_shapes(200, size=64, seed=9, shortcut="patch", n_distractors=3)
    p = round(64 / 8)
    assert (d.shortcut_masks.flatten(1).sum(1) == p * p).all()
    assert not (d.shortcut_masks & d.object_masks).any()
    assert not (d.shortcut_masks & d.distractor_masks).any()
    corners = d.shortcut_masks[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners.sum(1) == 1).all()  # exactly one corner pixel of the image is covered
    colours = d.images.permute(0, 2, 3, 1)[d.shortcut_masks].reshape(200, p * p, 3)
    assert (colours == colours[:, :1]).all()  # solid
    per_class = {c: colours[d.shortcut_labels == c, 0] for c in range(5)}
    for c, col in per_class.items():
        assert torch.allclose(col, col[:1]), c  # the colour depends on the cue class only
    firsts = torch.stack([col[0] for col in per_class.values()])
    assert torch.cdist(firsts, firsts).add(torch.eye(5)).min() > 0.2  # and tells classes apart


def test_tint_cue_covers_the_background_only():
    d = planted_shapes(100, size=48, seed=2, shortcut="tint", n_distractors=1)
    assert torch.equal(d.shortcut_masks, ~(d.object_masks | d.distractor_masks))
    assert not (d.shortcut_masks & d.object_masks).any()
    # Mean background colour is pulled toward the hue of the cue class: images with the same cue
    # class have closer background colours than images with different ones.
    m = d.shortcut_masks[:, None].float()
    bg = (d.images * m).sum((2, 3)) / m.sum((2, 3))
    same = d.shortcut_labels[:, None] == d.shortcut_labels[None]
    dist = torch.cdist(bg, bg)
    assert float(dist[same & ~torch.eye(100, dtype=torch.bool)].mean()) < 0.7 * float(dist[~same].mean())


def test_distractors_are_disjoint_from_the_object():
    d = planted_shapes(100, size=64, seed=6, n_distractors=3)
    assert not (d.distractor_masks & d.object_masks).any()
    assert float(d.distractor_masks.flatten(1).any(1).float().mean()) > 0.9
    assert float(d.distractor_masks.flatten(1).float().mean(1).max()) < 0.2  # small objects
    assert (d.labels == planted_shapes(100, size=64, seed=6).labels).all()


def test_small_objects_are_drawn_in_windows():
    d = planted_shapes(20, size=96, seed=3, object_size=(0.1, 0.2), n_distractors=2, shortcut="patch")
    area = d.object_masks.flatten(1).float().mean(1)
    assert float(area.min()) > 0.002 and float(area.max()) < 0.04
    assert torch.equal(
        d.object_masks, planted_shapes(20, size=96, seed=3, object_size=(0.1, 0.2)).object_masks
    )
    # Every object pixel has the object's colour (possibly darkened by its texture), not background.
    obj = d.images.permute(0, 2, 3, 1)[d.object_masks]
    assert float((obj.amax(1) - obj.amin(1)).mean()) > 0.25


@pytest.mark.parametrize("size", [32, 224])
def test_extreme_sizes_work(size):
    d = planted_shapes(3, size=size, seed=0, n_distractors=2, shortcut="patch")
    assert d.images.shape == (3, 3, size, size)
    assert d.object_masks.flatten(1).any(1).all() and not (d.shortcut_masks & d.object_masks).any()


def test_save_load_round_trip(tmp_path, ds):
    from workbench._core.serialization import load_result, save_result

    sub = planted_shapes(6, size=32, seed=1, shortcut="tint", concept_weights={"color=red": 2.0})
    save_result(sub, tmp_path / "planted")
    back = load_result(tmp_path / "planted")
    assert isinstance(back, PlantedShapes)
    assert_same(sub, back)
    assert back.config == sub.config


def test_regenerate_from_config():
    d = planted_shapes(8, size=32, seed=3, shortcut="patch", concept_weights={"texture=dots": 0.0})
    assert_same(d, regenerate(d.config))
    flipped = regenerate(d.config, shortcut_correlation=0.0)
    assert torch.equal(flipped.labels, d.labels) and (flipped.shortcut_labels != d.labels).all()
    with pytest.raises(ValueError, match="custom"):
        regenerate(planted_shapes(4, size=32, rule=lambda c, n: c[:, 0]).config)


def test_other_shapes_can_be_classes():
    d = planted_shapes(30, size=32, shapes=["diamond", "ring", "hexagon"], n_distractors=1)
    assert d.class_names == ["diamond", "ring", "hexagon"] and set(d.labels.tolist()) == {0, 1, 2}
    assert "shape=ring" in d.concept_names and "shape=circle" not in d.concept_names
    assert set(SHAPE_NAMES) >= set(CLASS_SHAPES)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n=0), "n: expected a positive integer"),
        (dict(n=2.5), "n: expected a positive integer"),
        (dict(size=31), r"size: expected an integer in \[32, 224\]"),
        (dict(size=225), r"size: expected an integer in \[32, 224\]"),
        (dict(seed=-1), "seed"),
        (dict(rule="shapes"), "unknown rule 'shapes'.*'color'.*'shape'.*'shape_color'"),
        (dict(shortcut="corner"), "shortcut: expected None or one of"),
        (
            dict(shortcut="patch", shortcut_correlation=1.5),
            r"shortcut_correlation: expected a probability in \[0, 1\]",
        ),
        (dict(shortcut_correlation=-0.1), "shortcut_correlation"),
        (dict(concept_weights={"colour=red": 2.0}), "unknown concept 'colour=red'.*'color=red'"),
        (dict(concept_weights={"color=red": -1.0}), "finite weight >= 0"),
        (
            dict(concept_weights={f"texture={t}": 0.0 for t in ("solid", "stripes", "dots", "checker")}),
            "weighs 0",
        ),
        (dict(n_distractors=-1), "n_distractors"),
        (dict(shapes=["circle", "blob"]), "shapes: expected at least 2 distinct names"),
        (dict(shapes=["circle"]), "shapes"),
        (dict(shapes=list(SHAPE_NAMES), n_distractors=1), "n_distractors"),
        (dict(object_size=(0.5, 0.95)), "object_size"),
        (dict(object_size=(0.6, 0.4)), "object_size"),
        (dict(batch_size=0), "batch_size"),
        (dict(rule="shape_color", shapes=["square", "star"]), "needs the concept 'shape=circle'"),
        (dict(rule=lambda c, n: np.zeros(len(c), int), shortcut="tint"), "at least 2 classes"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        planted_shapes(**{"n": 4, "size": 32, **kwargs})
