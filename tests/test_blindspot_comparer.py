"""BlindspotComparer, Python side: ranking, frequency, examples, heatmaps, selection, validation.

The browser side (clicks on points and rows through `panel serve`) is in
tests/browser/test_sae_widgets_browser.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.sae import TopKSAE, blindspots  # noqa: E402
from workbench.widgets import BlindspotComparer  # noqa: E402

N, C, H, W, A = 10, 6, 3, 3, 8


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(1)
    acts_a, acts_b = torch.rand(N, C, H, W, generator=g), torch.rand(N + 2, C, H, W, generator=g) * 1.5
    acts_b[:, 0] += 2.0  # channel 0 stronger in b
    images_a, images_b = torch.rand(N, 3, 12, 12, generator=g), torch.rand(N + 2, 3, 12, 12, generator=g)
    sae = TopKSAE(C, A, k=2, seed=0).eval()
    return sae, acts_a, acts_b, images_a, images_b


def _rows(a):
    return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])


def test_blindspots_result_frequency_examples(setup):
    sae, acts_a, acts_b, images_a, images_b = setup
    result = blindspots(sae, _rows(acts_a), _rows(acts_b), top=3)
    cmp = BlindspotComparer(result, images_a, images_b, sae=sae, acts_a=acts_a, acts_b=acts_b, n_examples=2)
    assert cmp.suppressed == result.suppressed.tolist() and cmp.exaggerated == result.exaggerated.tolist()
    with torch.no_grad():
        za, zb = sae.encode(_rows(acts_a)), sae.encode(_rows(acts_b))
    freq = ((za > 0).sum(0) + (zb > 0).sum(0)).double() / (len(za) + len(zb))
    assert np.allclose(cmp.frequency, freq.numpy())
    atom = int(result.exaggerated[0])
    best_b = zb.view(N + 2, H * W, A)[:, :, atom].max(1).values
    ex = cmp.examples(atom, "b")
    assert [i for i, _ in ex] == best_b.argsort(descending=True)[: len(ex)].tolist()
    assert ex[0][1] == pytest.approx(float(best_b.max()))
    hm = cmp.heatmap(atom, "b", ex[0][0])
    assert np.allclose(hm, zb.view(N + 2, H * W, A)[ex[0][0], :, atom].view(H, W).numpy())
    html = cmp._pane.object
    assert html.count("<circle") == A and "E reference" in html
    assert html.count('class="wb-rank') == len(cmp.suppressed) + len(cmp.exaggerated)


def test_plain_delta_codes_and_selection(setup):
    sae, acts_a, acts_b, images_a, images_b = setup
    delta = torch.tensor([-2.0, -0.5, 0.0, 0.1, 1.5, 3.0, -1.0, 0.2])
    codes_a = torch.rand(N, A, H, W)  # (N, n_atoms, h, w) codes given directly
    codes_b = _rows(torch.rand(N + 2, A, H, W))  # rows, rows_per_image inferred from the images
    cmp = BlindspotComparer(delta, images_a, images_b, codes_a=codes_a, codes_b=codes_b, top=2,
                            frequency=torch.linspace(0, 0.5, A))  # fmt: skip
    assert cmp.suppressed == [0, 6] and cmp.exaggerated == [5, 4]
    assert np.allclose(cmp.frequency, np.linspace(0, 0.5, A))
    assert np.allclose(cmp.heatmap(3, "a", 1), codes_a[1, 3].numpy())
    seen = []
    cmp.on_select(seen.append)
    cmp._on_action("atom", "5")  # a click on a point or a row
    assert cmp.selected == 5 and seen == [5]
    html = cmp._pane.object
    assert 'data-selected="5"' in html and 'circle class="wb-pt wb-sel"' in html
    assert html.count('data-set="a"') == 4 and html.count('data-set="b"') == 4
    before = html
    cmp.opacity = 0.1
    assert cmp._pane.object != before, "opacity redraws the heatmaps"
    cmp.select(None)
    assert seen == [5, None] and "Click an atom" in cmp._pane.object
    with pytest.raises(IndexError):
        cmp.select(A)
    with pytest.raises(ValueError, match="'a' or 'b'"):
        cmp.examples(0, "c")


def test_validation(setup):
    sae, acts_a, acts_b, images_a, images_b = setup
    delta = torch.zeros(A)
    with pytest.raises(ValueError, match="n_atoms"):
        BlindspotComparer(torch.zeros(2, 2), images_a, images_b, sae=sae, acts_a=acts_a, acts_b=acts_b)
    with pytest.raises(ValueError, match="non-finite"):
        BlindspotComparer(
            torch.tensor([float("inf")] * A), images_a, images_b, sae=sae, acts_a=acts_a, acts_b=acts_b
        )
    with pytest.raises(ValueError, match="atoms, but delta"):
        BlindspotComparer(torch.zeros(3), images_a, images_b, sae=sae, acts_a=acts_a, acts_b=acts_b)
    with pytest.raises(ValueError, match="codes_a, or the sae"):
        BlindspotComparer(delta, images_a, images_b)
    with pytest.raises(ValueError, match="needs the sae"):
        BlindspotComparer(delta, images_a, images_b, acts_a=acts_a, acts_b=acts_b)
    with pytest.raises(ValueError, match="images were given"):
        BlindspotComparer(delta, images_a[:3], images_b, sae=sae, acts_a=acts_a, acts_b=acts_b)
    with pytest.raises(ValueError, match="frequency"):
        BlindspotComparer(delta, images_a, images_b, sae=sae, acts_a=acts_a, acts_b=acts_b, frequency=[1.0])
    with pytest.raises(ValueError, match="n_examples"):
        BlindspotComparer(delta, images_a, images_b, sae=sae, acts_a=acts_a, acts_b=acts_b, n_examples=0)
