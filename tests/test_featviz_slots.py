"""Feature-visualization slots of the ConceptGallery and the AtomBrowser, computed through an optimizer callable.

The optimizer is a recording stand-in that follows ``workbench.featviz.visualize``'s contract (a list of K
objectives in, a FeatureViz of K images out), so the calls are known: one per page that lacks images, with
every such item of the page in one batch, and none when a page is shown again (cached). The objectives it
receives are the method layer's own (``direction(layer, v)``; ``cosine=True`` for atoms), checked by
evaluating them on a captured forward pass against the constructors called directly.
"""

from __future__ import annotations

import pytest
import torch

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.featviz import FeatureViz, objectives  # noqa: E402
from workbench.sae import TopKSAE  # noqa: E402
from workbench.widgets import AtomBrowser, ConceptGallery  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


class BatchOptimizer:
    """Records each call's objectives; returns one constant image per objective (its value: 0.1 x call)."""

    def __init__(self):
        self.calls: list[list] = []

    def __call__(self, objective_list, **kw):
        self.calls.append(list(objective_list))
        k = len(objective_list)
        image = torch.full((k, 3, 8, 8), 0.1 * len(self.calls))
        return FeatureViz(image=image, transparency=torch.zeros(k, 1, 8, 8), history=torch.zeros(1, k),
                          objectives=[o.name for o in objective_list], param="maco", final=torch.zeros(k))  # fmt: skip

    def names(self) -> list[list[str]]:
        return [[o.name for o in call] for call in self.calls]


def capture(layer: str, c: int, seed: int = 0) -> objectives.Capture:
    g = torch.Generator().manual_seed(seed)
    return objectives.Capture(
        {layer: torch.randn(2, c, 3, 3, generator=g)}, None, torch.nn.Identity(), (12, 12)
    )


def gallery(**kw) -> ConceptGallery:
    """5 concepts by importance 4, 3, 2, 1, 0 (so pages of 2 hold [4, 3], [2, 1], [0])."""
    g = torch.Generator().manual_seed(0)
    kw.setdefault("page_size", 2)
    return ConceptGallery(crops=torch.rand(6, 3, 8, 8, generator=g), crop_codes=torch.rand(6, 5, generator=g),
                          importances=torch.arange(5.0), **kw)  # fmt: skip


def test_gallery_computes_each_page_once_in_one_batch():
    opt = BatchOptimizer()
    W = torch.rand(5, 7, generator=torch.Generator().manual_seed(1))
    g = gallery(featviz_optimizer=opt, concept_vectors=W, concept_layer="layer3",
                featviz={3: torch.full((3, 8, 8), 0.9)})  # fmt: skip
    # Page 1 shows concepts 4 and 3; 3's image is given, so the first call asks for concept 4 alone.
    assert opt.names() == [["concept 4 (concept 4)"]]
    assert g._cards.object.count('data-featviz="filled"') == 2
    cap = capture("layer3", 7)
    assert torch.allclose(opt.calls[0][0](cap), objectives.direction("layer3", W[4])(cap))
    g.opacity = 0.2  # a redraw of the same page: cached, no call
    g.select(3)
    assert len(opt.calls) == 1
    g.next_page()  # concepts 2 and 1 together, in the page's order
    assert opt.names()[1] == ["concept 2 (concept 2)", "concept 1 (concept 1)"]
    assert torch.allclose(opt.calls[1][1](cap), objectives.direction("layer3", W[1])(cap))
    g.previous_page()
    g.next_page()
    assert len(opt.calls) == 2
    assert set(g.featviz) == {1, 2, 3, 4} and torch.equal(g.featviz[3], torch.full((3, 8, 8), 0.9))
    assert float(g.featviz[2].mean()) == pytest.approx(0.2)  # from the second call


def test_gallery_optimizer_needs_the_concept_directions():
    opt = BatchOptimizer()
    with pytest.raises(ValueError, match="featviz_optimizer: needs concept_vectors"):
        gallery(featviz_optimizer=opt)
    with pytest.raises(ValueError, match="concept_vectors: expected shape \\(5, \\?\\)"):
        gallery(featviz_optimizer=opt, concept_vectors=torch.rand(4, 7), concept_layer="layer3")
    with pytest.raises(ValueError, match="featviz_optimizer: expected a callable"):
        gallery(featviz_optimizer="visualize", concept_vectors=torch.rand(5, 7), concept_layer="layer3")

    def short(objective_list):
        return BatchOptimizer()(objective_list[:1])

    with pytest.raises(ValueError, match="asked for 2 visualizations, the optimizer returned 1 images"):
        gallery(featviz_optimizer=short, concept_vectors=torch.rand(5, 7), concept_layer="layer3")


def test_from_craft_passes_the_crafts_concepts_and_layer():
    g = torch.Generator().manual_seed(0)
    W = torch.rand(3, 7, generator=g)

    class StandInCraft:  # what ConceptGallery.from_craft reads from a fitted workbench.concepts.Craft
        crops, crop_codes, class_id, concepts, layer = torch.rand(6, 3, 8, 8, generator=g), torch.rand(6, 3, generator=g), 2, W, "layer4"  # fmt: skip

        def importance(self, images, class_id, per_image=False):
            return torch.rand(len(images), 3, generator=g) if per_image else torch.tensor([0.3, 0.2, 0.1])

        def tree(self):  # not asked for: tree=None is given
            raise AssertionError("tree() was called")

    opt = BatchOptimizer()
    ConceptGallery.from_craft(StandInCraft(), torch.rand(4, 3, 16, 16, generator=g), image_maps=None,
                              crop_maps=None, tree=None, featviz_optimizer=opt, page_size=3)  # fmt: skip
    assert len(opt.calls) == 1 and len(opt.calls[0]) == 3 and opt.calls[0][0].layers == ("layer4",)
    cap = capture("layer4", 7)
    assert torch.allclose(opt.calls[0][2](cap), objectives.direction("layer4", W[2])(cap))


@pytest.fixture
def atoms():
    g = torch.Generator().manual_seed(0)
    acts, images = torch.rand(12, 8, 4, 4, generator=g), torch.rand(12, 3, 16, 16, generator=g)
    return TopKSAE(8, 10, k=2, seed=0).eval(), acts, images


def test_atom_browser_computes_each_page_once_with_cosine_directions(atoms):
    sae, acts, images = atoms
    opt = BatchOptimizer()
    b = AtomBrowser(sae, acts, images, layer="layer2", page_size=4, featviz_optimizer=opt)
    assert opt.names() == [["atom 0", "atom 1", "atom 2", "atom 3"]]  # page 1 (atom 0 selected) in one call
    cap = capture("layer2", 8)
    D = sae.dictionary.detach()
    assert torch.allclose(opt.calls[0][2](cap), objectives.direction("layer2", D[2], cosine=True)(cap))
    grid, detail = b._grid.object, b._detail.object
    assert grid.count('data-featviz="filled"') == 4 and 'alt="feature visualization of atom 3"' in grid
    assert "Feature visualization" in detail and 'alt="feature visualization of atom 0"' in detail
    b.select(2)  # same page: cached
    b.opacity = 0.3
    assert len(opt.calls) == 1
    b.next_page()
    assert opt.names()[1] == ["atom 4", "atom 5", "atom 6", "atom 7"]
    b.select(1)  # back to page 1: cached
    assert len(opt.calls) == 2 and set(b.featviz) == set(range(8))


def test_atom_browser_given_featviz_and_checks(atoms):
    sae, acts, images = atoms
    plain = AtomBrowser(sae, acts, images, page_size=4)
    assert "wb-fv-slot" not in plain._grid.object and 'width="64"' in plain._grid.object  # unchanged without
    b = AtomBrowser(sae, acts, images, page_size=4, featviz={1: torch.rand(3, 8, 8)})
    assert (
        b._grid.object.count('data-featviz="filled"') == 1
        and b._grid.object.count('data-featviz="empty"') == 3
    )
    b.featviz = {0: torch.rand(3, 8, 8)}
    assert "feature visualization of atom 0" in b._detail.object and set(b.featviz) == {0}
    with pytest.raises(ValueError, match="featviz_optimizer: needs the layer"):
        AtomBrowser(sae, acts, images, featviz_optimizer=BatchOptimizer())
    with pytest.raises(IndexError, match="atom 10 is out of range"):
        AtomBrowser(sae, acts, images, featviz={10: torch.rand(3, 8, 8)})
