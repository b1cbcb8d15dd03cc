"""The sections of the ``workbench explain`` report as static HTML: tables and inline PNG images.

Every image is a ``data:`` URI and nothing links outside the page, so the exported report opens offline
and no request leaves the file. Colour maps come from matplotlib (the ``notebooks`` extra, which the
report needs anyway), imported when a map is drawn.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from workbench.explain.results import HIGHER_IS_BETTER, METRICS, ExplainResults

__all__ = ["class_section", "metrics_board", "overview", "sanity_section"]

_STYLE = """<style>
.wb-x table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 13px; }
.wb-x th, .wb-x td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; vertical-align: middle; }
.wb-x th { background: #f3f3f3; } .wb-x td.l, .wb-x th.l { text-align: left; }
.wb-x .best { font-weight: bold; background: #e6f4e6; } .wb-x .bad { color: #a00; } .wb-x .good { color: #070; }
.wb-x figure { display: inline-block; margin: 2px 4px; text-align: center; font-size: 11px; }
.wb-x figure img { display: block; image-rendering: pixelated; border: 1px solid #ddd; }
.wb-x .note { color: #555; font-size: 12px; max-width: 70em; }
</style>"""


def _png(array: np.ndarray) -> str:
    """A data URI for an (H, W, 3) uint8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(array: np.ndarray, caption: str = "", side: int = 96, title: str = "") -> str:
    tip = f' title="{html.escape(title)}"' if title else ""
    return (f'<figure><img src="{_png(array)}" width="{side}" height="{side}"{tip}>'
            f"<figcaption>{caption}</figcaption></figure>")  # fmt: skip


def _chw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(1, 2, 0))


def _heat(image: np.ndarray, heat: np.ndarray, cmap: str = "inferno", alpha: float = 0.85) -> np.ndarray:
    """``heat`` (H, W) scaled to [0, 1] by its 99.5th percentile of |values|, blended over ``image`` with an
    opacity that grows with the value (where the map is 0 the image shows through)."""
    from matplotlib import colormaps

    h = np.nan_to_num(np.abs(heat.astype(np.float64)))
    top = np.percentile(h, 99.5)
    h = np.clip(h / top, 0, 1) if top > 0 else h
    colour = colormaps[cmap](h)[..., :3] * 255
    a = (alpha * np.sqrt(h))[..., None]
    return (a * colour + (1 - a) * image.astype(np.float64)).round().astype(np.uint8)


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' if not c.startswith("<td") else c
                         for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )  # fmt: skip
    return f"<table><tr>{th}</tr>{body}</table>"


def _wrap(body: str) -> str:
    return f'{_STYLE}<div class="wb-x">{body}</div>'


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def overview(res: ExplainResults) -> str:
    """Per class: images, accuracy (labels known) or the prediction summary, the top concept's share."""
    labels, pred, targets = res.labels, res.predictions, res.targets
    conf = _softmax(res.logits).max(1)
    has_labels = bool((labels >= 0).all())
    rows = []
    for c in sorted(set(targets.tolist()) | set(res.explained_classes)):
        idx = np.flatnonzero(targets == c)
        row = [html.escape(res.class_names[c]), str(len(idx))]
        if has_labels:
            row.append(f"{(pred[idx] == c).mean():.3f}" if len(idx) else "-")
        else:
            row.append(f"{int((pred == c).sum())}")
        row.append(f"{conf[idx].mean():.3f}" if len(idx) else "-")
        if c in res.explained_classes and res.class_result(c)["n_images"]:
            cr = res.class_result(c)
            k = int(cr["order"][0])
            row.append(f"concept {k}: {cr['share'][k]:.2f}")
        else:
            row.append("-")
        rows.append(row)
    head = ["class", "images", "accuracy" if has_labels else "predicted as this class", "mean confidence",
            "top concept (share of logit)"]  # fmt: skip
    total = (f"accuracy over the {res.n} images: <b>{(pred == labels).mean():.3f}</b>" if has_labels else
             f"{res.n} images without labels: each is explained for its predicted class")  # fmt: skip
    skipped = res.meta.get("skipped_images") or []
    note = (
        f'<p class="note">{len(skipped)} unreadable image(s) skipped: {html.escape(", ".join(skipped))}</p>'
        if skipped
        else ""
    )
    return _wrap(f"<p>{total}</p>{note}" + _table(head, rows))


def _board(res: ExplainResults, indices=None) -> str:
    """Methods x metrics (means over the images), the best of each column in bold."""
    table = res.metrics_table(indices)
    best = {k: (max if HIGHER_IS_BETTER[k] else min)(table[m][k] for m in res.methods) for k in METRICS}
    rows = [[html.escape(m)] + [
        (f'<td class="best">{table[m][k]:.3g}</td>' if table[m][k] == best[k] else f"{table[m][k]:.3g}")
        for k in METRICS] for m in res.methods]  # fmt: skip
    return _table(
        ["method", "deletion AUC (lower is better)", "insertion AUC (higher)", "MuFidelity (higher)"], rows
    )


def metrics_board(res: ExplainResults) -> str:
    """The methods x metrics table over every image, and the mean deletion / insertion curves."""
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 2.6), dpi=80)
    for ax, key in zip(axes, ("deletion", "insertion")):
        curves = res.array(f"images/{key}_curve")  # (N, M, steps + 1)
        x = np.linspace(0, 1, curves.shape[-1])
        for j, m in enumerate(res.methods):
            ax.plot(x, np.nanmean(curves[:, j], 0), label=m)
        ax.set_title(f"{key} (class probability)", fontsize=10)
        ax.set_xlabel("fraction of pixels", fontsize=9)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return _wrap(_board(res) + f'<img src="{uri}" alt="mean deletion and insertion curves">')


def sanity_section(res: ExplainResults) -> str:
    """One line per method: does it depend on the weights? And the similarity per cascading stage."""
    sanity = res.sanity()
    lines, rows = [], []
    for m, s in sanity.items():
        verdict = ('<span class="good">depends on the weights</span>' if s["depends_on_weights"] else
                   '<span class="bad">does NOT depend on the weights</span>')  # fmt: skip
        lines.append(f"<li><b>{html.escape(m)}</b>: {verdict} (Spearman rank correlation of |maps| with the"
                     f" trained model's after randomizing every layer: {s['final']:.2f}; threshold"
                     f" {s['threshold']})</li>")  # fmt: skip
        rows.append([html.escape(m)] + [f"{v:.2f}" for v in s["per_stage"]])
    layers = next(iter(sanity.values()))["layers"]
    head = ["method"] + [f"+ {html.escape(layer)}" for layer in layers]
    return _wrap(f"<ul>{''.join(lines)}</ul>" + _table(head, rows))


def class_section(res: ExplainResults, class_id: int, max_images: int = 4) -> str:
    """One class of the atlas: its concepts (share, MACO image, crops with concept maps), its strategic
    clusters, its metrics board and up to ``max_images`` images with every method's maps and scores."""
    cr = res.class_result(class_id)
    name = html.escape(cr["name"])
    if cr["n_images"] == 0:
        return _wrap(f"<p>No image is explained as <b>{name}</b>.</p>")
    idx_all = np.flatnonzero(res.targets == class_id)
    pred = res.predictions[idx_all]
    has_labels = bool((res.labels >= 0).all())
    noun = "image" if len(idx_all) == 1 else "images"
    head = (f"<p>{len(idx_all)} {noun}; accuracy <b>{(pred == class_id).mean():.3f}</b>.</p>" if has_labels
            else f"<p>{len(idx_all)} {noun} predicted as <b>{name}</b>.</p>")  # fmt: skip
    share = cr["share"]
    n_fit = len(cr["members"])
    rest = 1 - np.nansum(share)
    body = [head, f'<p class="note">Concepts: CRAFT (NMF of the activations of {html.escape(res.meta["layer"])} on'
            f" crops of {n_fit} images; relative reconstruction error {cr['relative_error']:.3f}). <b>Share of the"
            " logit</b>: the mean gradient x input of the concept's coefficients (its contribution to the class"
            f" logit) divided by the mean logit ({cr['mean_logit']:.2f}); for a head linear after the layer"
            f" the contributions add up to the logit minus the bias and the reconstruction error. Shares sum to"
            f" {np.nansum(share):.2f}; the rest ({rest:.2f}) is the bias, the reconstruction error and the"
            " image's activation outside the concepts."
            " Crops are the concept's top crops, its concept map over them in colour.</p>"]  # fmt: skip
    rows = []
    for rank, k in enumerate(k for k in cr["order"] if not np.isnan(share[k])):
        maco = _img(_chw(cr["maco"][k]), "MACO", 80)
        crops = "".join(
            _img(_heat(_chw(cr["crop_images"][k, t]), cr["crop_maps"][k, t]), "", 56)
            for t in range(cr["crop_images"].shape[1]) if not np.isnan(cr["crop_maps"][k, t]).all()
        )  # fmt: skip
        rows.append([f"{rank + 1}", f"concept {k}", f"{share[k]:.3f}", maco, f'<td class="l">{crops}</td>'])
    body.append(
        _table(
            ["rank", "concept", "share of logit", "feature visualization", "top crops, concept map"],
            rows,
            left=2,
        )
    )
    sizes, dominant = cr["cluster_sizes"], cr["cluster_dominant"]
    crow = [[f"cluster {i}", str(int(sizes[i])), ", ".join(f"concept {int(d)}" for d in dominant[i] if d >= 0)]
            for i in range(len(sizes)) if sizes[i] > 0]  # fmt: skip
    body.append("<p><b>Strategic clusters</b> (images grouped by their concept-importance vectors):</p>")
    body.append(_table(["cluster", "images", "dominant concepts"], crow))
    body.append("<p><b>Metrics board</b> of the class (means over its images):</p>" + _board(res, idx_all))
    for i in idx_all[:max_images]:
        i = int(i)
        image = _chw(np.asarray(res.group["images/pixels"][i]))
        cells = [
            _img(
                image,
                f"{html.escape(res.image_names[i])}<br>pred {html.escape(res.class_names[int(res.predictions[i])])}",
                112,
            )
        ]
        scores = {k: res.scores(k)[i] for k in METRICS}
        for j, m in enumerate(res.methods):
            cap = f"{html.escape(m)}<br>del {scores['deletion'][j]:.2g} ins {scores['insertion'][j]:.2g} mu {scores['mufidelity'][j]:.2f}"
            cells.append(_img(_heat(image, np.asarray(res.group[f"images/maps/{m}"][i])), cap, 112))
        body.append(f"<div>{''.join(cells)}</div>")
    return _wrap("".join(body))
