"""AtomBrowser, Python side: statistics against direct computation, paging, search, selection, validation.

The browser side (clicks through `panel serve`) is in tests/browser/test_sae_widgets_browser.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.sae import RASAE, AtomStats, TopKSAE, atom_stats, cofiring  # noqa: E402
from workbench.widgets import AtomBrowser  # noqa: E402

N, C, H, W, A = 12, 8, 4, 4, 10


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(N, C, H, W, generator=g)
    images = torch.rand(N, 3, 16, 16, generator=g)
    labels = torch.arange(N) % 3
    sae = TopKSAE(C, A, k=2, seed=0).eval()
    return sae, acts, images, labels


def _codes(sae, acts):
    rows = acts.permute(0, 2, 3, 1).reshape(-1, C)
    with torch.no_grad():
        return sae.encode(rows)


def test_statistics_match_direct_computation(setup):
    sae, acts, images, labels = setup
    b = AtomBrowser(sae, acts, images, labels=labels, batch_size=40)  # several batches of whole images
    z = _codes(sae, acts)
    s = b.stats
    assert torch.allclose(s.frequency, (z > 0).float().mean(0))
    assert torch.allclose(s.mean, z.mean(0), atol=1e-6)
    assert torch.allclose(s.max, z.max(0).values)
    zi = z.view(N, H * W, A)
    assert torch.allclose(s.image_max, zi.max(1).values)
    for c in range(3):
        assert torch.allclose(s.class_mean[c], zi[labels == c].reshape(-1, A).mean(0), atol=1e-6)
    assert torch.allclose(s.cofiring, cofiring(z, "conditional"), atol=1e-6)
    for i in range(A):  # histogram of the non-zero codes in equal bins of (0, max]
        on = z[:, i][z[:, i] > 0]
        ref = np.histogram(on.numpy(), bins=s.hist.shape[1], range=(0, float(s.max[i])))[0] if len(on) else 0
        assert np.array_equal(s.hist[i].numpy(), ref) if len(on) else s.hist[i].sum() == 0
    assert s.importance is None and s.run_cosines is None and s.nearest_row is None
    # queries
    top = b.top_images(4, 3)
    assert [i for i, _ in top] == zi[:, :, 4].max(1).values.argsort(descending=True)[:3].tolist()
    D = torch.nn.functional.normalize(sae.dictionary.detach(), dim=1)
    cos = D @ D[4]
    cos[4] = -2
    assert [j for j, _ in b.nearest_atoms(4, 3)] == cos.argsort(descending=True)[:3].tolist()
    hm = b.heatmap(4, 2)
    assert hm.shape == (H, W) and np.allclose(hm, zi[2, :, 4].view(H, W).numpy())
    q = b.quantile_images(4, 2)
    assert len(q) == 2 and q[0][1] >= q[1][1]


def test_store_tokens_rows_and_importance(setup, tmp_path):
    sae, acts, images, labels = setup
    rows = acts.permute(0, 2, 3, 1).reshape(-1, C)
    a = AtomBrowser(sae, acts, images, labels=labels)
    b = AtomBrowser(sae, rows, images, labels=labels)  # rows: rows_per_image = R / N
    assert b.rows.rows_per_image == H * W and b.rows.grid == (H, W)
    assert torch.allclose(a.stats.image_max, b.stats.image_max)
    tokens = torch.cat([torch.zeros(N, 1, C), acts.flatten(2).transpose(1, 2)], 1)  # a class token + 4x4
    t = AtomBrowser(sae, tokens, images, labels=labels)
    assert t.rows.grid == (H, W) and t.rows.skip == 1 and t.heatmap(0, 0).shape == (H, W)
    dirs = torch.randn(3, C)
    d = AtomBrowser(sae, acts, images, labels=labels, class_directions=dirs)
    expected = a.stats.class_mean * (dirs @ sae.dictionary.detach().T)
    assert torch.allclose(d.stats.importance, expected, atol=1e-6)
    runs = [torch.randn(7, C), sae]
    r = AtomBrowser(sae, acts, labels=labels, runs=runs)
    assert r.stats.run_cosines.shape == (2, A) and torch.allclose(
        r.stats.run_cosines[1], torch.ones(A), atol=1e-5
    )
    assert "wb-ex" not in r._detail.object, "no images: statistics only"


def test_store_and_model_importance(zoo_cnn, shapes_small, tmp_path):
    from workbench.data import extract_activations

    x, y = shapes_small.images[:16], shapes_small.labels[:16]
    store = extract_activations(
        zoo_cnn, "layer3", x, tmp_path / "s", pooling="none", labels=y, progress=False
    )
    sae = TopKSAE(store.shape[1], 12, k=3, seed=0).eval()
    b = AtomBrowser(sae, store, x, model=zoo_cnn)  # layer and labels from the store, names from the model
    assert b.class_names == zoo_cnn.labels and b.rows.grid == (8, 8)
    g, h = zoo_cnn.split("layer3")
    a = g(x).detach().requires_grad_(True)
    h(a).gather(1, y[:, None]).sum().backward()
    rows = a.grad.permute(0, 2, 3, 1).flatten(1, 2).mean(1)  # (16, d)
    c = int(y[0])
    w_c = rows[y == c].mean(0)
    expected = b.stats.class_mean[c] * (sae.dictionary.detach() @ w_c)
    assert torch.allclose(b.stats.importance[c], expected, rtol=1e-3, atol=1e-7)


def test_ra_sae_candidates(setup):
    _, acts, images, labels = setup
    rows = acts.permute(0, 2, 3, 1).reshape(-1, C)
    sae = RASAE(C, A, rows[::7][:15].clone(), k=2, seed=0).eval()
    b = AtomBrowser(sae, acts, images, labels=labels)
    nearest = torch.cdist(sae.C, rows).argmin(1)
    assert torch.equal(b.stats.nearest_row, nearest)
    cands = b.candidates(3)
    assert cands[0][1] == pytest.approx(1.0) and cands[0][2] == int(nearest[cands[0][0]])
    assert "data-candidate" in b._detail.object


def test_the_widget_displays_statistics_it_receives(setup, monkeypatch):
    """The statistics come from workbench.sae.atom_stats; a browser given them computes nothing: the
    same numbers as one that asked for them, with the encoder called only for the shown images."""
    sae, acts, images, labels = setup
    stats = atom_stats(sae, acts, labels, images=images, class_directions=torch.randn(3, C))
    assert isinstance(stats, AtomStats) and stats.importance is not None
    calls = []
    original = sae.encode
    monkeypatch.setattr(sae, "encode", lambda x: calls.append(len(x)) or original(x))
    b = AtomBrowser(sae, acts, images, labels=labels, stats=stats, page_size=2)
    assert b.stats is stats
    assert sum(calls) <= 2 * H * W * (1 + b.top_k + b.n_quantiles)  # a few images' rows, not all N
    ref = AtomBrowser(
        sae, acts, images, labels=labels, class_directions=stats.importance.new_zeros(3, C)
    ).stats
    for name in ("frequency", "mean", "max", "image_max", "class_mean", "cofiring", "hist"):
        assert torch.equal(getattr(ref, name), getattr(stats, name)), name
    assert b.nearest_atoms(3) == stats.nearest_atoms(3) and b.cofiring_atoms(3) == stats.cofiring_atoms(3)
    with pytest.raises(ValueError, match="stats"):
        AtomBrowser(sae, acts[:6], images[:6], stats=stats)


def test_dead_atoms_can_be_hidden_or_sorted_last(setup):
    """Ground truth: atoms 1 and 4 get an encoder bias of -1e3, so they never fire on these activations
    (in [0, 1]); with the atoms that already fire on no row (0 and 9 at this seed, found directly from
    the codes) they are the dead ones. "last" moves exactly them to the end, "hide" leaves them out of
    the pages, and a hidden atom can still be selected by its id."""
    sae, acts, images, labels = setup
    with torch.no_grad():
        sae.b_enc[[1, 4]] = -1e3
    dead = sorted(set((_codes(sae, acts) > 0).sum(0).eq(0).nonzero().flatten().tolist()) | {1, 4})
    alive = [a for a in range(A) if a not in dead]
    b = AtomBrowser(sae, acts, images, labels=labels, page_size=4)
    assert b.stats.dead.nonzero().flatten().tolist() == dead and b.n_dead == len(dead)
    assert b.order.tolist() == list(range(A)) and 'data-dead="show"' in b._grid.object
    b.dead_atoms = "last"
    assert b.order.tolist() == alive + dead
    assert f"{len(dead)} dead, last" in b._grid.object
    b.page = 2
    b.dead_atoms = "hide"
    assert b.order.tolist() == alive and b.n_pages == -(-len(alive) // 4) and b.page == b.n_pages - 1
    assert 'data-atom="4"' not in b._grid.object and f"{len(dead)} dead, hidden" in b._grid.object
    b.search("#4")
    assert b.selected == 4 and 'data-atom="4"' in b._detail.object
    b.rank_by_class("class 1")
    assert not set(dead) & set(b.order.tolist()) and len(b.order) == len(alive)
    hidden = AtomBrowser(sae, acts, dead_atoms="hide")
    assert hidden.dead_atoms == "hide" and hidden.order.tolist() == alive


def test_paging_search_selection(setup):
    sae, acts, images, labels = setup
    b = AtomBrowser(sae, acts, images, labels=labels, class_names=["a", "b", "c"], page_size=4)
    seen = []
    b.on_select(seen.append)
    assert b.n_pages == 3 and b.page_atoms == [0, 1, 2, 3] and b.selected == 0
    b.next_page()
    b.next_page()
    b.next_page()
    assert b.page == 2 and b.page_atoms == [8, 9]
    b.previous_page()
    assert b.page == 1
    assert b.search("#9") == "atom" and b.selected == 9 and b.page == 2 and seen == [9]
    assert 'data-atom="9"' in b._detail.object and 'aria-pressed="true"' in b._grid.object
    assert b.search("B") == "class" and b.rank_class == "b" and b.page == 0
    order = b.stats.class_mean[1].argsort(descending=True, stable=True).tolist()
    assert b.order.tolist() == order and b.page_atoms == order[:4]
    b.select(order[5])
    assert b.page == 1
    b._on_action("atom", "2")  # a click on a card or a chip
    assert b.selected == 2 and seen[-1] == 2
    b._on_action("class", "b")  # clicking the ranked class again restores the id order
    assert b.rank_class is None
    with pytest.raises(ValueError, match="neither an atom id"):
        b.search("zebra")
    with pytest.raises(IndexError, match="out of range"):
        b.search("99")
    b._search.value = "zebra"
    assert "wb-search-error" in b._message.object


def test_validation(setup):
    sae, acts, images, labels = setup
    with pytest.raises(ValueError, match="dimension"):
        AtomBrowser(sae, torch.rand(N, C + 1, H, W), images)
    with pytest.raises(ValueError, match="12 images"):
        AtomBrowser(sae, acts, images[:5])
    with pytest.raises(ValueError, match="whole number"):
        AtomBrowser(sae, torch.rand(10, C), rows_per_image=3)
    with pytest.raises(ValueError, match="labels"):
        AtomBrowser(sae, acts, images, labels=labels[:3])
    with pytest.raises(ValueError, match="sparse dictionary"):
        AtomBrowser(torch.nn.Linear(2, 2), acts)
    with pytest.raises(ValueError, match="page_size"):
        AtomBrowser(sae, acts, page_size=0)
    with pytest.raises(ValueError, match="class_directions"):
        AtomBrowser(sae, acts, labels=labels, class_directions=torch.zeros(2, C))
    with pytest.raises(ValueError, match="runs"):
        AtomBrowser(sae, acts, runs=[torch.zeros(3, C + 1)])
    with pytest.raises(ValueError, match="no labels"):
        AtomBrowser(sae, acts).rank_by_class("a")
    with pytest.raises(IndexError):
        AtomBrowser(sae, acts).select(A)
