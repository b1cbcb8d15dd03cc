"""PlantedShapes drawing: the shapes, textures and backgrounds, and the rendering of sampled scenes.

Rendering is plain deterministic arithmetic on what :mod:`workbench.data.planted` sampled (all the
randomness lives there), in chunks; every pixel comes out the same whatever the chunking.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "hexagon")
COLORS = {  # name -> RGB; each object gets a small random jitter around it
    "red": (0.86, 0.12, 0.12), "green": (0.12, 0.66, 0.2), "blue": (0.15, 0.3, 0.92),
    "yellow": (0.95, 0.85, 0.1), "purple": (0.6, 0.2, 0.8), "cyan": (0.1, 0.8, 0.85),
}  # fmt: skip
TEXTURES = ("solid", "stripes", "dots", "checker")
BACKGROUNDS = ("noise", "gradient", "stripes")
_TINT_ALPHA = 0.3  # strong enough to learn, weak enough that the object stays distinct
_DARK = 0.5  # texture marks are the object colour at half brightness


# ---------------------------------------------------------------- geometry
# Shapes live inside the unit disc of the object's own rotated frame (u, v), so a disc of radius r is
# a safe footprint for placement. Per pixel there is only linear and quadratic arithmetic (no
# transcendental functions), so every pixel comes out the same whatever the chunking.


def _polygon(u: torch.Tensor, v: torch.Tensor, k: int, inradius: float, phase: float = 0.0) -> torch.Tensor:
    inside = torch.ones_like(u, dtype=torch.bool)
    for j in range(k):
        a = phase + 2 * np.pi * j / k
        inside &= u * float(np.cos(a)) + v * float(np.sin(a)) <= inradius
    return inside


def _star(u: torch.Tensor, v: torch.Tensor, inner: float = 0.47) -> torch.Tensor:
    # Fold each point into the sector of its nearest tip (p: distance along that tip's direction,
    # q2: squared distance across it); inside iff on the centre's side of the edge from the tip (1, 0)
    # to the inner vertex (ix, iy), in squared form (no sqrt). Fatter than a regular pentagram (inner
    # radius 0.38), so that its area is closer to the other shapes'.
    p = u
    for k in range(5):
        a = np.pi / 2 + 2 * np.pi * k / 5
        d = u * float(np.cos(a)) + v * float(np.sin(a))
        p = d if k == 0 else torch.maximum(p, d)
    ix, iy = inner * float(np.cos(np.pi / 5)), inner * float(np.sin(np.pi / 5))
    return (p <= 1) & ((u * u + v * v - p * p) * (1 - ix) ** 2 <= (1 - p) ** 2 * iy**2)


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    au, av = u.abs(), v.abs()
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


_SHAPE_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "circle": lambda u, v: u * u + v * v <= 0.8**2,
    "square": lambda u, v: (u.abs() <= 0.68) & (v.abs() <= 0.68),
    "triangle": lambda u, v: _polygon(u, v, 3, 0.5, np.pi / 2),
    "star": _star,
    "cross": _cross,
    "diamond": lambda u, v: u.abs() / 0.55 + v.abs() <= 1.0,  # elongated: not a rotated square
    "ring": lambda u, v: ((u * u + v * v) >= 0.55**2) & ((u * u + v * v) <= 0.95**2),
    "hexagon": lambda u, v: _polygon(u, v, 6, float(np.cos(np.pi / 6))),
}
# Textures take coordinates in periods of the texture's own rotated frame; True marks a dark pixel.
_TEXTURE_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "stripes": lambda a, b: (a - a.floor()) < 0.5,
    "dots": lambda a, b: (a - a.round()) ** 2 + (b - b.round()) ** 2 <= 0.3**2,
    "checker": lambda a, b: (a.floor() + b.floor()).remainder(2) == 1,
}


# ---------------------------------------------------------------- rendering (deterministic arithmetic)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _groups(codes: np.ndarray):
    """(code, images) pairs; ``images`` is a slice (a view, no copy) where the code's images are adjacent."""
    for code in np.unique(codes):
        i = np.flatnonzero(codes == code)
        yield code, slice(i[0], i[-1] + 1) if i[-1] - i[0] + 1 == len(i) else torch.from_numpy(i)


def _draw_objects(o: dict, size: int) -> tuple[torch.Tensor, ...]:
    """Masks (B, w, w), colours (B, 3, w, w) and window corners of one object per image in ``o``.

    Each object is drawn in a square window just large enough for the biggest footprint in ``o``,
    so small objects cost little; pixels outside a footprint would be background anyway.
    """
    win = int(np.ceil(2 * o["r"].max())) + 3
    win = size if win > size // 2 else win  # large windows: whole frames are cheaper than scattering
    x0, y0 = (np.clip(np.floor(o[c] - win / 2), 0, size - win).astype(np.int64) for c in ("cx", "cy"))
    ar = torch.arange(win, dtype=torch.float32) + 0.5  # pixel centres, offset by the window corner
    dx = (torch.from_numpy(x0).float()[:, None] + ar - _t(o["cx"])[:, None])[:, None, :]  # (B, 1, w)
    dy = (torch.from_numpy(y0).float()[:, None] + ar - _t(o["cy"])[:, None])[:, :, None]  # (B, w, 1)
    c, s, r = (_t(a)[:, None, None] for a in (np.cos(o["theta"]), np.sin(o["theta"]), o["r"]))
    u, v = (dx * c + dy * s) / r, (dy * c - dx * s) / r
    mask = torch.zeros(u.shape, dtype=torch.bool)
    for code, m in _groups(o["shape"]):  # each image computes its own shape only
        mask[m] = _SHAPE_FNS[SHAPE_NAMES[code]](u[m], v[m])
    shade = torch.ones(u.shape)
    for code, m in _groups(o["texture"]):
        if TEXTURES[code] != "solid":
            ang, phase = o["tex_angle"][m], o["tex_phase"][m].T
            ct, st, per, p0, p1 = (
                _t(a)[:, None, None] for a in (np.cos(ang), np.sin(ang), o["tex_period"][m], *phase)
            )
            a, b = (dx[m] * ct + dy[m] * st) / per + p0, (dy[m] * ct - dx[m] * st) / per + p1
            shade[m] = torch.where(_TEXTURE_FNS[TEXTURES[code]](a, b), _DARK, 1.0)
    rgb = np.clip(np.asarray(list(COLORS.values()))[o["color"]] + o["jitter"], 0, 1)
    return mask, _t(rgb)[:, :, None, None] * shade[:, None], x0, y0


def _paste(img: torch.Tensor, masks: torch.Tensor, o: dict, rows: np.ndarray | None = None) -> torch.Tensor:
    """Draw objects ``o`` into ``img`` (into images ``rows`` only, if given); record their pixels in ``masks``."""
    m, fill, x0, y0 = _draw_objects(o, img.shape[-1])
    if rows is None and m.shape[-1] == img.shape[-1]:  # every image, whole frames: no scattering
        masks |= m
        return torch.where(m[:, None], fill, img)
    b = torch.from_numpy(np.arange(len(img)) if rows is None else rows)[:, None, None]
    ar = torch.arange(m.shape[-1])
    ys, xs = torch.from_numpy(y0)[:, None, None] + ar[:, None], torch.from_numpy(x0)[:, None, None] + ar
    img[b, :, ys, xs] = torch.where(m[..., None], fill.permute(0, 2, 3, 1), img[b, :, ys, xs])  # (B, w, w, 3)
    masks[b, ys, xs] |= m
    return img


def _draw_background(bg: dict, xs: torch.Tensor) -> torch.Tensor:
    size, centred = len(xs), xs - len(xs) / 2
    pattern = torch.empty(len(bg["kind"]), size, size)
    for code, m in _groups(bg["kind"]):
        if BACKGROUNDS[code] == "noise":  # a smooth random field: a 4x4 grid, bilinearly upsampled
            pattern[m] = F.interpolate(_t(bg["noise"][m]), size=(size, size), mode="bilinear")[:, 0]
            continue
        c, s = (_t(f(bg["angle"][m]))[:, None, None] for f in (np.cos, np.sin))
        proj = centred[None, None, :] * c + centred[None, :, None] * s
        if BACKGROUNDS[code] == "gradient":
            pattern[m] = proj / (size * 0.7072)  # within [-1, 1] over the image
        else:  # faint stripes, as a triangle wave
            t = proj / _t(bg["period"][m])[:, None, None] + _t(bg["phase"][m])[:, None, None]
            pattern[m] = 4 * (t - t.floor() - 0.5).abs() - 1
    return _t(bg["base"])[:, :, None, None] + _t(bg["contrast"])[:, None, None, None] * pattern[:, None]


@contextlib.contextmanager
def one_cpu_thread():
    """Run torch on one CPU thread: rendering is many small elementwise ops, where thread hand-offs
    cost more than they gain (up to 10x slower on a busy 2-core machine); restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def render_chunk(rows: np.ndarray, size: int, main: dict, bg: dict, dis: dict | None, cue: dict | None):
    """Images and object / distractor / cue masks of the images ``rows``."""
    xs = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    img = _draw_background({k: v[rows] for k, v in bg.items()}, xs)
    n = img.shape[0]
    if cue is not None and cue["kind"] == "tint":  # tint first: objects are then drawn over it
        img = (1 - _TINT_ALPHA) * img + _TINT_ALPHA * _t(cue["rgb"][rows])[:, :, None, None]
    omask, dmask, cmask = (torch.zeros(n, size, size, dtype=torch.bool) for _ in range(3))
    for j in range(0 if dis is None else dis["present"].shape[1]):
        some = np.flatnonzero(dis["present"][rows, j])
        if len(some):
            img = _paste(img, dmask, {k: v[rows[some], j] for k, v in dis.items()}, some)
    img = _paste(img, omask, {k: v[rows] for k, v in main.items()})
    if cue is not None and cue["kind"] == "patch":
        x0, y0, x1, y1 = (_t(b[rows])[:, None, None] for b in cue["box"])
        cmask = ((xs >= x0) & (xs < x1)) & ((xs[:, None] >= y0) & (xs[:, None] < y1))  # (B, 1, W) & (B, H, 1)
        img = torch.where(cmask[:, None], _t(cue["rgb"][rows])[:, :, None, None], img)
    elif cue is not None:
        cmask = ~(omask | dmask)  # the tinted background
    return img.clamp_(0, 1), omask, dmask, cmask
