"""PlantedShapes: a synthetic image dataset whose right explanation is known.

Each image holds one main object (shape, colour, texture, size, position) on a low-contrast textured
background. The label is a rule over the object's concepts, so we know which pixels (``object_masks``)
and which concepts (``concepts``) a faithful explanation should point at. An optional shortcut cue (a
corner patch or a background tint) encodes a class with a chosen probability, to provoke shortcut
learning and then expose it.

Generation has two stages, on purpose: every random number is drawn first, for all images at once,
from independent numpy PCG64 streams spawned from ``seed``; rendering is then plain arithmetic in
chunks. So the result does not depend on ``batch_size``, and switching on a shortcut or distractors
leaves what the other streams drew (concepts, poses, backgrounds) unchanged.
"""

from __future__ import annotations

import colorsys
import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workbench._core.progress import progress as _progress
from workbench.data.planted_drawing import (
    BACKGROUNDS,
    COLORS,
    SHAPE_NAMES,
    TEXTURES,
    one_cpu_thread,
    render_chunk,
)

GENERATOR_VERSION = 1
CLASS_SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = ("small", "large")
SHORTCUTS = ("patch", "tint")

RuleFn = Callable[[np.ndarray, list[str]], np.ndarray]


@dataclass(frozen=True)
class Rule:
    """A labelling rule: ``labels(concepts (N, K) bool, concept_names) -> (N,)`` ints, and the class names.

    Pass one as ``planted_shapes(rule=...)``, or add it to :data:`RULES` to use it by name (and so
    make datasets that :func:`regenerate` can rebuild from their config).
    """

    labels: RuleFn
    class_names: Callable[[list[str]], list[str]]
    description: str


def _group_rule(group: str) -> Rule:
    def labels(concepts: np.ndarray, names: list[str]) -> np.ndarray:
        return concepts[:, [i for i, nm in enumerate(names) if nm.startswith(group + "=")]].argmax(1)

    def class_names(names: list[str]) -> list[str]:
        return [nm.split("=", 1)[1] for nm in names if nm.startswith(group + "=")]

    return Rule(labels, class_names, f"class = the main object's {group}")


def _shape_color_labels(concepts: np.ndarray, names: list[str]) -> np.ndarray:
    for needed in ("shape=circle", "color=red"):
        if needed not in names:
            raise ValueError(f"rule 'shape_color' needs the concept {needed!r}; the concepts are {names}")
    return concepts[:, names.index("shape=circle")] | concepts[:, names.index("color=red")]


RULES: dict[str, Rule] = {
    "shape": _group_rule("shape"),
    "color": _group_rule("color"),
    "texture": _group_rule("texture"),
    "shape_color": Rule(_shape_color_labels, lambda names: ["neither", "circle_or_red"],
                        "binary: 1 iff the object is a circle OR red (about 37% positives by default)"),
}  # fmt: skip


@dataclass(repr=False)
class PlantedShapes:
    """A generated dataset with its ground truth; a torch Dataset of ``(image, label)`` pairs.

    Attributes
    ----------
    images : torch.Tensor
        (N, 3, H, W) float32 in [0, 1].
    labels : torch.Tensor
        (N,) int64 indices into ``class_names``.
    object_masks : torch.Tensor
        (N, H, W) bool, the pixels of the main object, which the label depends on.
    concepts : torch.Tensor
        (N, K) bool, one-hot per group (shape, color, texture, size, background) of the main object.
    concept_names : list[str]
        K names such as ``"shape=circle"`` or ``"texture=stripes"``.
    class_names : list[str]
        The class names.
    shortcut : torch.Tensor
        (N,) bool, whether the shortcut cue is present in the image.
    shortcut_masks : torch.Tensor
        (N, H, W) bool, the cue's pixels (all False without a shortcut); disjoint from the object.
    shortcut_labels : torch.Tensor
        (N,) int64, the class the cue encodes (-1 without a shortcut).
    distractor_masks : torch.Tensor
        (N, H, W) bool, the pixels of the distractor objects (not part of the label).
    config : dict
        Every generation parameter (JSON-able) plus ``generator`` and ``version``; for a named rule,
        :func:`regenerate` rebuilds the data from it.
    """

    images: torch.Tensor
    labels: torch.Tensor
    object_masks: torch.Tensor
    concepts: torch.Tensor
    concept_names: list[str]
    class_names: list[str]
    shortcut: torch.Tensor
    shortcut_masks: torch.Tensor
    shortcut_labels: torch.Tensor
    distractor_masks: torch.Tensor
    config: dict[str, Any]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __repr__(self) -> str:  # the default repr would print every tensor
        n, _, h, w = self.images.shape
        cfg = self.config
        return (
            f"PlantedShapes(n={n}, size={h}x{w}, rule={cfg.get('rule')!r}, shortcut={cfg.get('shortcut')!r})"
        )

    def subset(self, idx: Any) -> PlantedShapes:
        """A new PlantedShapes with the images ``idx`` (integers, a slice or a boolean mask).

        ``config`` is copied unchanged: it still describes how the parent set was generated.
        """
        if not isinstance(idx, slice | torch.Tensor):
            idx = torch.as_tensor(np.asarray(idx))
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return PlantedShapes(
            **{k: v[idx] if torch.is_tensor(v) else copy.deepcopy(v) for k, v in values.items()}
        )


# ---------------------------------------------------------------- sampling (all randomness is here)


def _quota(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    """Values 0..K-1 in exact proportion to ``weights`` (largest remainder), in random order.

    Exact quotas rather than i.i.d. draws keep classes balanced and make a zero weight exactly zero.
    """
    exact = n * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    order = np.lexsort((rng.random(len(weights)), -(exact - counts)))
    counts[order[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(weights)), counts))


def _sample_object(rng: np.random.Generator, m: tuple[int, ...], size: int, diam: np.ndarray) -> dict:
    """Pose, colour jitter and texture parameters for objects of footprint diameter ``diam * size``."""
    r = diam * size / 2
    return {
        "r": r,
        "cx": rng.uniform(r + 1, size - r - 1),
        "cy": rng.uniform(r + 1, size - r - 1),
        "theta": rng.uniform(0, 2 * np.pi, m),
        "jitter": rng.uniform(-0.04, 0.04, (*m, 3)),
        "tex_angle": rng.uniform(0, np.pi, m),
        "tex_period": np.maximum(4.0, size * rng.uniform(0.08, 0.11, m)),
        "tex_phase": rng.uniform(0, 1, (*m, 2)),
    }


def _sample_background(rng: np.random.Generator, n: int, size: int, kind: np.ndarray) -> dict:
    return {
        "kind": kind,
        "base": rng.uniform(0.3, 0.6, (n, 1)) + rng.uniform(-0.05, 0.05, (n, 3)),  # greyish, faintly tinted
        "contrast": rng.uniform(0.05, 0.12, n),
        "noise": rng.uniform(-1, 1, (n, 1, 4, 4)),
        "angle": rng.uniform(0, 2 * np.pi, n),
        "period": size * rng.uniform(0.15, 0.3, n),
        "phase": rng.uniform(0, 1, n),
    }


def _disc_clear_of_box(cx, cy, radius, box) -> np.ndarray:
    """True where the disc (cx, cy, radius) stays off the axis-aligned box (x0, y0, x1, y1)."""
    dx = np.maximum(np.maximum(box[0] - cx, 0), cx - box[2])
    dy = np.maximum(np.maximum(box[1] - cy, 0), cy - box[3])
    return dx * dx + dy * dy > radius * radius


def _sample_patch(rng: np.random.Generator, n: int, size: int, main: dict) -> np.ndarray:
    """Boxes (4, N) for the patch cue: a random corner among those clear of the object."""
    p = max(3, round(size / 8))
    corners = np.array(
        [[0, 0, p, p], [size - p, 0, size, p], [0, size - p, p, size], [size - p, size - p, size, size]]
    )
    free = np.stack([_disc_clear_of_box(main["cx"], main["cy"], main["r"] + 1, c) for c in corners], 1)
    assert free.any(1).all(), "a footprint of at most 0.8 of the side always leaves a corner free"
    return corners[np.where(free, rng.random((n, 4)), -1.0).argmax(1)].T.astype(np.float64)


def _sample_distractors(rng, n: int, size: int, k: int, shape_ids: list[int], main: dict, box) -> dict:
    """Up to k small non-class objects per image, clear of the object, of each other and of the cue."""
    d = _sample_object(rng, (n, k), size, rng.uniform(0.12, 0.2, (n, k)))
    r, tries = d["r"], 32
    cand_x, cand_y = (rng.uniform(r[..., None] + 1, size - r[..., None] - 1, (n, k, tries)) for _ in "xy")
    d.update(
        shape=np.asarray(shape_ids)[rng.integers(0, len(shape_ids), (n, k))], present=np.zeros((n, k), bool)
    )
    d.update(color=rng.integers(0, len(COLORS), (n, k)), texture=rng.integers(0, len(TEXTURES), (n, k)))
    for j in range(k):  # the first candidate position that fits; none fits -> the distractor is dropped
        x, y, rj = cand_x[:, j], cand_y[:, j], r[:, j, None]
        ok = np.hypot(x - main["cx"][:, None], y - main["cy"][:, None]) > main["r"][:, None] + rj + 2
        for i in range(j):
            far = np.hypot(x - d["cx"][:, i, None], y - d["cy"][:, i, None]) > r[:, i, None] + rj + 2
            ok &= far | ~d["present"][:, i, None]
        if box is not None:
            ok &= _disc_clear_of_box(x, y, rj + 1, [b[:, None] for b in box])
        first = ok.argmax(1)
        d["present"][:, j] = ok.any(1)
        d["cx"][:, j], d["cy"][:, j] = x[np.arange(n), first], y[np.arange(n), first]
    return d


def _cue_colors(num_classes: int) -> np.ndarray:
    return np.array([colorsys.hsv_to_rgb(c / num_classes, 0.9, 0.95) for c in range(num_classes)])


# ---------------------------------------------------------------- public entry points


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float | np.number) and not isinstance(x, bool) and bool(np.isfinite(x))


def _check_args(n, size, seed, rule, shortcut, corr, n_distractors, shapes, object_size, batch_size) -> None:
    size_ok = isinstance(object_size, Sequence) and len(object_size) == 2 and all(map(_is_num, object_size))
    checks = [
        (_is_int(n) and n >= 1, f"n: expected a positive integer, got {n!r}"),
        (_is_int(size) and 32 <= size <= 224, f"size: expected an integer in [32, 224] pixels, got {size!r}"),
        (_is_int(seed) and seed >= 0, f"seed: expected a non-negative integer, got {seed!r}"),
        (isinstance(rule, Rule) or callable(rule) or (isinstance(rule, str) and rule in RULES),
         f"rule: unknown rule {rule!r}; expected a callable or one of {sorted(RULES)}"),
        (shortcut is None or shortcut in SHORTCUTS, f"shortcut: expected None or one of {list(SHORTCUTS)}, got {shortcut!r}"),
        (_is_num(corr) and 0 <= corr <= 1, f"shortcut_correlation: expected a probability in [0, 1], got {corr!r}"),
        (_is_int(n_distractors) and 0 <= n_distractors <= 8, f"n_distractors: expected an integer in [0, 8], got {n_distractors!r}"),
        (len(shapes) >= 2 and len(set(shapes)) == len(shapes) and set(shapes) <= set(SHAPE_NAMES),
         f"shapes: expected at least 2 distinct names from {list(SHAPE_NAMES)}, got {shapes}"),
        (not n_distractors or len(set(shapes)) < len(SHAPE_NAMES),
         "n_distractors: distractors take the shapes outside `shapes`, but `shapes` uses them all"),
        (size_ok and 0.1 <= object_size[0] <= object_size[1] <= 0.8,
         f"object_size: expected (low, high) with 0.1 <= low <= high <= 0.8 (fractions of the side), got {object_size!r}"),
        (batch_size is None or (_is_int(batch_size) and batch_size >= 1),
         f"batch_size: expected a positive integer or None, got {batch_size!r}"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _weights(groups: dict[str, tuple[str, ...]], concept_weights: Mapping[str, float]) -> dict:
    """Relative sampling weights per concept group; unnamed values weigh 1."""
    names = [f"{g}={v}" for g, vals in groups.items() for v in vals]
    for key, w in concept_weights.items():
        if key not in names:
            raise ValueError(f"concept_weights: unknown concept {key!r}; valid names are {names}")
        if not (_is_num(w) and w >= 0):
            raise ValueError(f"concept_weights[{key!r}]: expected a finite weight >= 0, got {w!r}")
    out = {
        g: np.array([float(concept_weights.get(f"{g}={v}", 1)) for v in vals]) for g, vals in groups.items()
    }
    for g, w in out.items():
        if w.sum() <= 0:
            raise ValueError(f"concept_weights: every value of the group {g!r} weighs 0; keep at least one")
    return out


def _apply_rule(rule: str | Rule | RuleFn, concepts: np.ndarray, concept_names: list[str]) -> tuple:
    """Labels (N,) int64, class names and a JSON-able rule name, for a named, Rule or callable rule."""
    if isinstance(rule, str):
        name, rule = rule, RULES[rule]
    elif isinstance(rule, Rule):
        name = f"custom:{rule.description or getattr(rule.labels, '__qualname__', '?')}"
    else:
        name = f"custom:{getattr(rule, '__module__', '?')}.{getattr(rule, '__qualname__', '?')}"
        rule = Rule(rule, lambda _: [], "")
    labels = np.asarray(rule.labels(concepts.copy(), list(concept_names)))
    if labels.shape != (len(concepts),) or not (
        labels.dtype == bool or np.issubdtype(labels.dtype, np.integer)
    ):
        raise ValueError(
            f"rule: must return {len(concepts)} integer labels, got {labels.shape} {labels.dtype}"
        )
    labels = labels.astype(np.int64)
    names = [str(c) for c in rule.class_names(list(concept_names))] or [
        str(c) for c in range(labels.max() + 1)
    ]
    if labels.min() < 0 or labels.max() >= len(names):
        lo, hi = labels.min(), labels.max()
        raise ValueError(
            f"rule: labels must lie in [0, {len(names)}) to index the class names {names}, got [{lo}, {hi}]"
        )
    return labels, names, name


def planted_shapes(
    n: int,
    size: int = 64,
    seed: int = 0,
    rule: str | Rule | RuleFn = "shape",
    shortcut: str | None = None,
    shortcut_correlation: float = 1.0,
    concept_weights: Mapping[str, float] | None = None,
    n_distractors: int = 0,
    shapes: Sequence[str] = CLASS_SHAPES,
    object_size: tuple[float, float] = (0.45, 0.75),
    batch_size: int | None = None,
    progress: bool = False,
) -> PlantedShapes:
    """Generate a PlantedShapes dataset: images with known object masks, concepts and shortcut cues.

    Parameters
    ----------
    n
        Number of images (>= 1).
    size
        Image side in pixels, in [32, 224].
    seed
        Seeds every random choice: the same arguments give bit-identical results.
    rule
        A name in :data:`RULES` (``"shape"``, ``"color"``, ``"texture"``, ``"shape_color"``), a :class:`Rule`
        (labels and class names), or a callable ``(concepts (N, K) bool ndarray, concept_names) -> labels
        (N,)`` of non-negative integers, whose classes are then named ``"0"``, ``"1"``, ...
    shortcut
        None; ``"patch"``, a solid square of about 1/8 of the side in a corner clear of the object whose
        hue encodes a class; or ``"tint"``, the background blended toward a class hue.
    shortcut_correlation
        Probability that the cue encodes the true class; otherwise it encodes a uniformly drawn *other*
        class, so 0 makes every cue disagree with its label.
    concept_weights
        Relative sampling weights of concept values within their group (1 by default), e.g.
        ``{"texture=stripes": 0.0}`` or ``{"color=red": 5.0}``. Values are allotted in exact
        proportion, so a zero weight never occurs and untouched groups (the classes, for rule
        ``"shape"``) stay balanced.
    n_distractors
        Up to this many small objects per image with shapes outside ``shapes``, clear of the main object
        and of the cue (fewer where there is no room); see ``distractor_masks``.
    shapes
        The main object's possible shapes (the classes for rule ``"shape"``), from :data:`SHAPE_NAMES`.
    object_size
        Range of the main object's footprint diameter, as fractions of the image side; each shape is
        inscribed in that disc, so its visible extent is somewhat smaller.
    batch_size
        Images rendered at once (bounds memory); it does not change the result.
    progress
        Show a progress bar over the rendering chunks.

    Returns
    -------
    PlantedShapes
    """
    shapes = [shapes] if isinstance(shapes, str) else list(shapes)
    _check_args(
        n, size, seed, rule, shortcut, shortcut_correlation, n_distractors, shapes, object_size, batch_size
    )
    groups = {
        "shape": tuple(shapes),
        "color": tuple(COLORS),
        "texture": TEXTURES,
        "size": SIZES,
        "background": BACKGROUNDS,
    }
    weights = _weights(groups, dict(concept_weights or {}))
    streams = np.random.SeedSequence(int(seed)).spawn(5)
    r_concepts, r_pose, r_background, r_cue, r_distract = (
        np.random.Generator(np.random.PCG64(s)) for s in streams
    )

    idx = {g: _quota(r_concepts, n, weights[g]) for g in groups}
    concept_names = [f"{g}={v}" for g, vals in groups.items() for v in vals]
    concepts = np.concatenate([np.eye(len(vals), dtype=bool)[idx[g]] for g, vals in groups.items()], 1)
    labels, names, rule_name = _apply_rule(rule, concepts, concept_names)

    lo, hi = float(object_size[0]), float(object_size[1])
    diam = lo + (idx["size"] + r_pose.random(n)) * (hi - lo) / 2  # the size concept picks a half of the range
    main = _sample_object(r_pose, (n,), size, diam)
    main.update(
        shape=np.array([SHAPE_NAMES.index(s) for s in shapes])[idx["shape"]],
        color=idx["color"],
        texture=idx["texture"],
    )
    bg = _sample_background(r_background, n, size, idx["background"])
    cue, box, cue_labels = None, None, np.full(n, -1, np.int64)
    if shortcut is not None:
        if len(names) < 2:
            raise ValueError(f"shortcut: needs at least 2 classes to encode, the rule gives {names}")
        agree = r_cue.random(n) < shortcut_correlation
        cue_labels = np.where(agree, labels, (labels + r_cue.integers(1, len(names), n)) % len(names))
        box = _sample_patch(r_cue, n, size, main) if shortcut == "patch" else None
        cue = {"kind": shortcut, "rgb": _cue_colors(len(names))[cue_labels], "box": box}
    dis = None
    if n_distractors:
        others = [SHAPE_NAMES.index(s) for s in SHAPE_NAMES if s not in shapes]
        dis = _sample_distractors(r_distract, n, size, n_distractors, others, main, box)

    bs = batch_size or max(1, 2**18 // (size * size))  # ~1 MB per float plane: cache-friendly chunks
    images = torch.empty(n, 3, size, size)
    omask, dmask, cmask = (torch.empty(n, size, size, dtype=torch.bool) for _ in range(3))
    # Render similar images together (same shape, texture, background): their groups are then slices,
    # not copies. Each pixel depends on its own image's parameters only, so the order changes nothing.
    order = np.lexsort((idx["background"], idx["texture"], main["shape"]))
    with one_cpu_thread():
        for start in _progress(range(0, n, bs), enabled=progress, desc="planted_shapes", total=-(-n // bs)):
            rows = order[start : start + bs]
            for out, part in zip((images, omask, dmask, cmask), render_chunk(rows, size, main, bg, dis, cue)):
                out.index_copy_(0, torch.from_numpy(rows), part)

    config = dict(
        generator="workbench.data.planted.planted_shapes", version=GENERATOR_VERSION, n=int(n), size=int(size),
        seed=int(seed), rule=rule_name, shortcut=shortcut, shortcut_correlation=float(shortcut_correlation),
        concept_weights={k: float(w) for k, w in concept_weights.items()} if concept_weights else None,
        n_distractors=int(n_distractors), shapes=shapes, object_size=[lo, hi],
    )  # fmt: skip
    return PlantedShapes(
        images=images,
        labels=torch.from_numpy(labels),
        object_masks=omask,
        concepts=torch.from_numpy(concepts),
        concept_names=concept_names,
        class_names=list(names),
        shortcut=torch.full((n,), shortcut is not None),
        shortcut_masks=cmask,
        shortcut_labels=torch.from_numpy(cue_labels),
        distractor_masks=dmask,
        config=config,
    )


def regenerate(config: Mapping[str, Any], **overrides: Any) -> PlantedShapes:
    """Rebuild a dataset from a ``PlantedShapes.config`` (e.g. stored in a model card).

    ``overrides`` replace entries, e.g. ``regenerate(cfg, seed=1, shortcut_correlation=0.0)`` for a
    test set whose cue disagrees with every label. Callable rules cannot be rebuilt from their name.
    """
    params = {k: v for k, v in config.items() if k not in ("generator", "version")} | overrides
    if str(params.get("rule", "")).startswith("callable:"):
        raise ValueError(
            f"regenerate: config rule {params['rule']!r} is a callable; pass rule=<the callable>"
        )
    return planted_shapes(**params)
