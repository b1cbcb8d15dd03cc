"""BlindspotComparer: which atoms a compared set of images under- or over-uses, and what they look like.

The comparer receives the per-atom energy difference ``delta`` (or the whole
:class:`~workbench.sae.Blindspots` result of :func:`workbench.sae.blindspots`) and the examples of the
two sets: the reference set ``a`` (e.g. real images) and the compared set ``b`` (e.g. generations). It
shows a scatter of the atoms, ``delta`` against how often each atom fires (log scale), where a click
picks an atom; the picked atom's strongest examples from both sets side by side, with the atom's
heatmap over each (an opacity slider); and the ranked tables of the most suppressed (``delta < 0``)
and most exaggerated (``delta > 0``) atoms, whose rows are clickable too.

To pick examples and draw heatmaps it needs each set's codes: pass ``codes_a`` / ``codes_b`` (rows
(N * rows_per_image, n_atoms), or (N, n_atoms, h, w)), or the ``sae`` and the activations ``acts_a`` /
``acts_b`` (anything :class:`~workbench.data.activation_rows.ActivationRows` accepts), which are encoded
once, in batches. The comparer computes no delta itself.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param
import torch

from workbench._core.validation import check_images, check_int
from workbench.data.activation_rows import ActivationRows
from workbench.sae.base import encode_rows
from workbench.widgets.atom_browser import CSS as _ATOM_CSS
from workbench.widgets.checks import check_atom
from workbench.widgets.html import ActionHTML, asset, ensure_extension, fmt, widget_kwargs
from workbench.widgets.images import heat_tile, token_map
from workbench.widgets.viewer import LayoutViewer

_CSS = _ATOM_CSS + asset("blindspot_comparer.css")
_W, _H = 520, 300
_PL, _PR, _PT, _PB = 44, 12, 10, 34
_SUPPRESSED, _EXAGGERATED, _OTHER = "#c62828", "#1565c0", "#bdc1c6"


class _Set:
    """One set of examples: images, the per-image maximum code of each atom, and lazy per-image codes."""

    def __init__(self, name: str, images: Any, sae: Any, acts: Any, codes: Any, rpi: int | None, batch: int):
        check_images(images, name=f"examples_{name}", channels=None)
        self.images, self.n = images.detach().float().cpu(), len(images)
        self.sae, self.batch = sae, batch
        if codes is not None:
            if isinstance(codes, torch.Tensor) and codes.ndim == 4:  # (N, n_atoms, h, w): a map of codes
                self.src = ActivationRows(codes.detach().float().cpu(), None, self.n, f"codes_{name}")
            else:
                self.src = ActivationRows(torch.as_tensor(codes).float(), rpi, self.n, f"codes_{name}")
            self.encoded = True
        elif acts is not None:
            if sae is None:
                raise ValueError(f"acts_{name}: encoding activations needs the sae (sae=...)")
            self.src = ActivationRows(acts, rpi, self.n, f"acts_{name}")
            if self.src.d != sae.dictionary.shape[1]:
                raise ValueError(f"acts_{name}: dimension {self.src.d}, but the sae's atoms have {sae.dictionary.shape[1]}")  # fmt: skip
            self.encoded = False
        else:
            raise ValueError(
                f"examples_{name}: pass codes_{name}, or the sae with acts_{name}, to pick examples"
            )
        self.rpi, self.grid, self.skip = self.src.rows_per_image, self.src.grid, self.src.skip
        maxes, active, rows = [], None, 0
        for lo, hi in self.src.image_batches(batch):
            z = self.codes(lo, hi)
            maxes.append(z.view(hi - lo, self.rpi, -1).max(1).values)
            a = (z.abs() > 0).sum(0).double()
            active = a if active is None else active + a
            rows += len(z)
        self.image_max = torch.cat(maxes)
        self.active_rows, self.n_rows = active, rows

    def codes(self, lo: int, hi: int) -> torch.Tensor:
        rows = self.src.get(lo, hi)
        return rows if self.encoded else encode_rows(self.sae, rows, self.batch)


class BlindspotComparer(LayoutViewer):
    """Atoms that a compared set ``b`` suppresses or exaggerates relative to a reference set ``a``.

    Parameters
    ----------
    delta
        (n_atoms,) per-atom log energy ratio ``log(E_b / E_a)``, or a :class:`~workbench.sae.Blindspots`
        (its delta, energies and ranked atoms are used).
    examples_a, examples_b
        Images (N_a, 3, H, W) and (N_b, 3, H, W) in [0, 1] of the reference and the compared set.
    sae
        The dictionary, to encode ``acts_a`` / ``acts_b``.
    acts_a, acts_b
        Activations of the examples (an ActivationStore, a map (N, C, H, W), tokens or rows).
    codes_a, codes_b
        Codes of the examples instead (rows (N * rows_per_image, n_atoms) or maps (N, n_atoms, h, w)).
    frequency
        (n_atoms,) the x axis; default: the fraction of rows (tokens) where each atom fires over both sets.
    rows_per_image
        Rows per image of 2-D ``acts`` / ``codes``.
    names
        Names of the two sets.
    top
        Rows of each ranked table (ignored for a Blindspots result, whose lists are used as they are).
    n_examples
        Examples per set for the selected atom.
    batch_size
        Rows per encoding batch.
    title
        Heading.

    Attributes
    ----------
    selected : int or None
        The selected atom (a click on a point or a table row; :meth:`on_select` callbacks receive it).
    opacity : float
        Opacity of the heatmaps.
    """

    selected = param.Integer(default=None, allow_None=True, doc="The selected atom.")
    opacity = param.Number(default=0.6, bounds=(0.0, 1.0), doc="Opacity of the heatmaps.")

    def __init__(
        self,
        delta: Any,
        examples_a: torch.Tensor,
        examples_b: torch.Tensor,
        sae: torch.nn.Module | None = None,
        acts_a: Any = None,
        acts_b: Any = None,
        codes_a: Any = None,
        codes_b: Any = None,
        frequency: Any = None,
        rows_per_image: int | None = None,
        names: tuple[str, str] = ("reference", "compared"),
        top: int = 10,
        n_examples: int = 4,
        batch_size: int = 4096,
        title: str = "Blindspots",
        **params: Any,
    ):
        ensure_extension()
        for value, name in ((top, "top"), (n_examples, "n_examples"), (batch_size, "batch_size")):
            check_int(value, name)
        result = delta if all(hasattr(delta, a) for a in ("delta", "suppressed", "exaggerated")) else None
        d = result.delta if result is not None else delta
        d = torch.as_tensor(d.detach() if isinstance(d, torch.Tensor) else d).double().cpu()
        if d.ndim != 1 or not len(d):
            raise ValueError(
                f"delta: expected (n_atoms,) values or a Blindspots result, got shape {tuple(d.shape)}"
            )
        if not torch.isfinite(d).all():
            raise ValueError("delta: non-finite values (use an eps in the energy ratio)")
        self.delta, self.n_atoms = d.numpy(), len(d)
        if sae is not None and sae.dictionary.shape[0] != self.n_atoms:
            raise ValueError(f"sae: {sae.dictionary.shape[0]} atoms, but delta has {self.n_atoms} values")
        if len(names) != 2:
            raise ValueError(f"names: expected two names, got {names!r}")
        self.names, self.title, self.n_examples = (str(names[0]), str(names[1])), str(title), n_examples
        self.sets = (
            _Set("a", examples_a, sae, acts_a, codes_a, rows_per_image, batch_size),
            _Set("b", examples_b, sae, acts_b, codes_b, rows_per_image, batch_size),
        )
        for s in self.sets:
            if s.image_max.shape[1] != self.n_atoms:
                raise ValueError(f"codes: {s.image_max.shape[1]} atoms, but delta has {self.n_atoms} values")
        self.energy_a = None if result is None else result.energy_a.detach().double().cpu().numpy()
        self.energy_b = None if result is None else result.energy_b.detach().double().cpu().numpy()
        if result is not None:
            self.suppressed = [int(i) for i in result.suppressed]
            self.exaggerated = [int(i) for i in result.exaggerated]
        else:
            order = np.argsort(self.delta, kind="stable")
            self.suppressed = [int(i) for i in order if self.delta[i] < 0][:top]
            self.exaggerated = [int(i) for i in order[::-1] if self.delta[i] > 0][:top]
        if frequency is None:
            a, b = self.sets
            freq = ((a.active_rows + b.active_rows) / (a.n_rows + b.n_rows)).numpy()
        else:
            freq = np.asarray(
                frequency.detach().cpu() if isinstance(frequency, torch.Tensor) else frequency, float
            )
            if freq.shape != (self.n_atoms,) or not np.isfinite(freq).all() or (freq < 0).any():
                raise ValueError(
                    f"frequency: expected ({self.n_atoms},) finite values >= 0, got shape {freq.shape}"
                )
        self.frequency = freq
        super().__init__(**params)
        self._check_atom(self.selected)
        self._build()

    # ------------------------------------------------------------------ state
    def _check_atom(self, atom: Any) -> int | None:
        return check_atom(atom, self.n_atoms)

    def select(self, atom: int | None) -> None:
        """Select ``atom`` (None: none); :meth:`on_select` callbacks receive it."""
        self.selected = self._check_atom(atom)

    def on_select(self, callback: Callable[[int | None], Any]) -> param.parameterized.Watcher:
        """Call ``callback(atom or None)`` when the selection changes; returns the ``param`` watcher."""
        return self.param.watch(lambda e: callback(e.new), ["selected"])

    def examples(self, atom: int, which: str) -> list[tuple[int, float]]:
        """The images of set ``which`` ("a" or "b") where ``atom`` fires most: ``[(image, max code)]``."""
        if which not in ("a", "b"):
            raise ValueError(f"which: expected 'a' or 'b', got {which!r}")
        v = self.sets[which == "b"].image_max[:, self._check_atom(atom)]
        top = v.topk(min(self.n_examples, len(v)))
        return [(int(i), float(x)) for i, x in zip(top.indices, top.values, strict=True) if x > 0]

    def heatmap(self, atom: int, which: str, image: int) -> np.ndarray | None:
        """The atom's codes over one image of set ``which`` as its (h, w) grid (None: not spatial)."""
        s = self.sets[which == "b"]
        if s.grid is None:
            return None
        return token_map(s.codes(image, image + 1)[:, self._check_atom(atom)], s.grid, s.skip)

    # ------------------------------------------------------------------ rendering
    def _scatter(self) -> str:
        f, d = self.frequency, self.delta
        pos = f[f > 0]
        fmin = float(pos.min()) / 2 if pos.size else 1e-4
        lx = np.log10(np.maximum(f, fmin))
        x0, x1 = math.floor(lx.min()), max(math.ceil(lx.max()), math.floor(lx.min()) + 1)
        ext = max(float(np.abs(d).max()), 1e-6) * 1.08
        iw, ih = _W - _PL - _PR, _H - _PT - _PB

        def px(v: float) -> float:
            return _PL + (v - x0) / (x1 - x0) * iw

        def py(v: float) -> float:
            return _PT + (ext - v) / (2 * ext) * ih

        out = [
            f'<svg class="wb-scatter" width="{_W}" height="{_H}" role="img" aria-label="delta against frequency">'
        ]
        for e in range(x0, x1 + 1):
            out.append(f'<line class="wb-rule" x1="{px(e):.1f}" y1="{_PT}" x2="{px(e):.1f}" y2="{_PT + ih}"/>'
                       f'<text x="{px(e):.1f}" y="{_PT + ih + 13}" text-anchor="middle">1e{e}</text>')  # fmt: skip
        for v in (-ext / 1.08, 0.0, ext / 1.08):
            out.append(f'<text x="{_PL - 4}" y="{py(v) + 3:.1f}" text-anchor="end">{fmt(v)}</text>')
        out.append(f'<line class="wb-zero" x1="{_PL}" y1="{py(0):.1f}" x2="{_PL + iw}" y2="{py(0):.1f}"/>')
        out.append(f'<text x="{_PL + iw / 2}" y="{_H - 4}" text-anchor="middle">firing frequency (log)</text>'
                   f'<text x="12" y="{_PT + ih / 2}" text-anchor="middle" transform="rotate(-90 12 {_PT + ih / 2})">'
                   "\u0394 energy (log ratio)</text>")  # fmt: skip
        sup, exa = set(self.suppressed), set(self.exaggerated)
        order = sorted(range(self.n_atoms), key=lambda i: (i in sup or i in exa, i == self.selected))
        for i in order:
            color = _SUPPRESSED if i in sup else _EXAGGERATED if i in exa else _OTHER
            sel = " wb-sel" if i == self.selected else ""
            r = 6 if sel else 4.5 if color != _OTHER else 3.5
            out.append(
                f'<circle class="wb-pt{sel}" cx="{px(lx[i]):.1f}" cy="{py(d[i]):.1f}" r="{r}" fill="{color}"'
                f' data-action="atom" data-value="{i}" data-atom="{i}"><title>#{i}: \u0394 {fmt(float(d[i]))},'
                f" frequency {fmt(float(f[i]))}</title></circle>"
            )
        out.append("</svg>")
        legend = (f'<div class="wb-muted"><span style="color:{_SUPPRESSED}">\u25cf</span> suppressed in'
                  f' {html.escape(self.names[1])} \u00b7 <span style="color:{_EXAGGERATED}">\u25cf</span> exaggerated'
                  " \u00b7 click a point</div>")  # fmt: skip
        return "".join(out) + legend

    def _table(self, atoms: list[int], kind: str) -> str:
        head = "<th>atom</th><th>\u0394</th><th>frequency</th>"
        if self.energy_a is not None:
            head += f"<th>E {html.escape(self.names[0])}</th><th>E {html.escape(self.names[1])}</th>"
        rows = []
        for i in atoms:
            cells = f'<td class="wb-name">#{i}</td><td>{fmt(float(self.delta[i]))}</td><td>{fmt(float(self.frequency[i]))}</td>'  # fmt: skip
            if self.energy_a is not None:
                cells += f"<td>{fmt(float(self.energy_a[i]))}</td><td>{fmt(float(self.energy_b[i]))}</td>"
            on = " wb-on" if i == self.selected else ""
            rows.append(f'<tr class="wb-rank{on}" data-action="atom" data-value="{i}" data-atom="{i}" tabindex="0">{cells}</tr>')  # fmt: skip
        color = _SUPPRESSED if kind == "suppressed" else _EXAGGERATED
        body = "".join(rows) or '<tr><td class="wb-name wb-muted">none</td></tr>'
        return (f'<div class="wb-table-{kind}"><div class="wb-section" style="color:{color}">'
                f'{kind.capitalize()} in {html.escape(self.names[1])}</div><table><tr>{head}</tr>{body}</table></div>')  # fmt: skip

    def _pairs(self) -> str:
        atom = self.selected
        if atom is None:
            return '<div class="wb-muted">Click an atom (a point or a table row) to see its examples.</div>'
        vmax = max(float(s.image_max[:, atom].max()) for s in self.sets)
        cols = []
        for which, s, name in (("a", self.sets[0], self.names[0]), ("b", self.sets[1], self.names[1])):
            tiles = []
            for image, value in self.examples(atom, which):
                amap = self.heatmap(atom, which, image)
                tiles.append(
                    f'<div class="wb-ex" data-set="{which}" data-image="{image}"><img src="'
                    f'{heat_tile(s.images[image], amap, self.opacity, vmax, 96)}" alt="atom {atom} on {which} image'
                    f' {image}" width="96"><div class="wb-cap">img {image} \u00b7 {fmt(value)}</div></div>'
                )
            body = "".join(tiles) or '<span class="wb-muted">never fires in this set</span>'
            share = 100 * float((s.image_max[:, atom] > 0).float().mean())
            cols.append(f'<div class="wb-set wb-set-{which}"><div class="wb-set-title">{html.escape(name)}'
                        f' <span class="wb-muted">fires in {share:.0f}% of images</span></div>'
                        f'<div class="wb-examples">{body}</div></div>')  # fmt: skip
        return (f'<div class="wb-section">Atom #{atom} \u00b7 \u0394 {fmt(float(self.delta[atom]))}</div>'
                f'<div class="wb-pairs">{"".join(cols)}</div>')  # fmt: skip

    def _html(self) -> str:
        return (
            f'<div class="wb-sae wb-blindspots" data-selected="{"" if self.selected is None else self.selected}">'
            f'<div><span class="wb-title">{html.escape(self.title)}</span><span class="wb-muted">{self.n_atoms} atoms'
            f" \u00b7 {self.sets[0].n} {html.escape(self.names[0])} vs {self.sets[1].n} {html.escape(self.names[1])}"
            f' images</span></div><div class="wb-cols"><div>{self._scatter()}</div><div class="wb-bs-tables">'
            f"{self._table(self.suppressed, 'suppressed')}{self._table(self.exaggerated, 'exaggerated')}</div></div>"
            f"{self._pairs()}</div>"
        )

    def _render(self, *_events: Any) -> None:
        self._pane.object = self._html()

    def _on_action(self, action: str, value: str) -> None:
        if action == "atom" and value.isdigit() and int(value) < self.n_atoms:
            self.select(int(value))

    def _build(self) -> None:
        self._pane = ActionHTML(object="", stylesheets=[_CSS], margin=(5, 5), sizing_mode="stretch_width",
                                css_classes=["wb-blindspots-pane"])  # fmt: skip
        self._pane.on_action(self._on_action)
        slider = pn.widgets.FloatSlider.from_param(self.param.opacity, width=200, margin=(0, 10),
                                                   **widget_kwargs(pn.widgets.FloatSlider, label="heatmap opacity"))  # fmt: skip
        self._layout = pn.Column(slider, self._pane, sizing_mode="stretch_width")
        self._render()
        self.param.watch(self._render, ["selected", "opacity"])

    def __repr__(self) -> str:
        return (f"BlindspotComparer(n_atoms={self.n_atoms}, suppressed={self.suppressed[:5]},"
                f" exaggerated={self.exaggerated[:5]}, selected={self.selected})")  # fmt: skip
