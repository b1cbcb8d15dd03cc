"""MeGe / ReCo (Fel et al., WACV 2022) on cases whose answer is known, and the fold models behind them."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from workbench.metrics.algorithmic_stability import MeGeReCo, mege_reco, spearman_distance
from workbench.metrics.map_similarity import map_spearman as spearman_correlation
from workbench.models import Model
from workbench.training import FoldModels, assign_folds, train_fold_models

pytestmark = pytest.mark.usefixtures("one_thread")  # small models (see conftest)


def _setting(k: int = 4, n: int = 400, classes: int = 3, acc: float = 0.8, seed: int = 0):
    """Labels, fold ids and (k, N) predictions right with probability ``acc``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    right = torch.rand(k, n, generator=g) < acc
    pred = torch.where(right, y, (y + 1 + torch.randint(0, classes - 1, (k, n), generator=g)) % classes)
    fold = torch.arange(n) % k
    return y, fold, pred, g


# -- Spearman ----------------------------------------------------------------------------------------


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (30, 5, 6), generator=g).float()  # many ties
    b = torch.randn(30, 5, 6, generator=g).relu()  # ties at 0, as a ReLU'd CAM has
    b[:5] = a[:5] * 2 + 1  # monotone: rho = 1 with ties
    b[5:8] = -a[5:8]  # rho = -1
    rho = spearman_correlation(a, b)
    ref = np.array([spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(30)])
    np.testing.assert_allclose(rho.numpy(), ref, atol=1e-6)  # float32 result
    np.testing.assert_allclose(rho[:5].numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(spearman_distance(a, b).numpy(), np.sqrt(1 - np.abs(ref)), atol=1e-7)
    np.testing.assert_allclose(spearman_distance(a[5:8], b[5:8]).numpy(), 0.0, atol=1e-7)  # |rho|


def test_spearman_of_a_constant_map_is_zero_not_nan():
    a = torch.rand(3, 4, 4)
    b = a.clone()
    b[1] = 0.0
    b[2] = 7.0
    rho = spearman_correlation(a, b)
    assert torch.isfinite(rho).all()
    assert rho[0] == pytest.approx(1.0) and rho[1] == 0.0 and rho[2] == 0.0
    assert spearman_distance(b, b)[1] == 1.0  # two blank maps share no ranking: the worst distance


def test_spearman_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        spearman_correlation(torch.rand(2, 3, 3), torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="NaN"):
        spearman_correlation(torch.full((2, 3, 3), float("nan")), torch.rand(2, 3, 3))


# -- MeGe / ReCo on hand-built maps ----------------------------------------------------------------


def test_identical_explanations_give_mege_one():
    y, fold, pred, g = _setting()
    base = torch.rand(1, 400, 8, 8, generator=g)
    r = mege_reco(None, None, y, fold, base.expand(4, -1, -1, -1), predictions=pred)
    assert isinstance(r, MeGeReCo)
    assert r.mege == 1.0
    assert torch.all(r.distances == 0)
    assert r.reco == 0.0 and r.threshold is None  # distance 0 everywhere separates nothing


def test_independent_random_maps_give_the_expected_mege():
    # rho of two independent continuous maps of P pixels ~ N(0, 1/(P-1)): E|rho| = sqrt(2 / (pi (P-1))),
    # and the distance concentrates at sqrt(1 - E|rho|) (the Jensen gap is ~1e-4 at P = 256).
    y, fold, pred, g = _setting(n=800)
    maps = torch.rand(4, 800, 16, 16, generator=g)
    r = mege_reco(None, None, y, fold, maps, predictions=pred)
    e_abs_rho = math.sqrt(2 / (math.pi * 255))
    expected = 1 / (1 + math.sqrt(1 - e_abs_rho))
    assert r.mege == pytest.approx(expected, abs=3e-3)
    assert r.reco < 0.15  # labels carry no information on the distance


def test_label_independent_distances_give_reco_near_zero():
    # Same-structure maps for every pair, whatever the predictions: the distance says nothing about them
    y, fold, pred, g = _setting(n=1200, acc=0.7, seed=3)
    base = torch.rand(1200, 8, 8, generator=g)
    maps = base + 0.5 * torch.rand(4, 1200, 8, 8, generator=g)
    r = mege_reco(None, None, y, fold, maps, predictions=pred)
    n_same, n_diff = int(r.same.sum()), int((~r.same).sum())
    assert n_same > 500 and n_diff > 500
    # Youden's J of two samples of one distribution is a two-sample KS statistic: ~ 1.36 sqrt(2/n) at 95%
    assert r.reco < 1.36 * math.sqrt(1 / n_same + 1 / n_diff)
    assert 0.5 < r.mege < 1.0


def test_agreeing_models_explain_alike_gives_reco_one():
    # A model that predicts right gives the image's own map; a wrong one an unrelated map.
    y, fold, pred, g = _setting(n=300, acc=0.7, seed=5)
    base = torch.rand(300, 8, 8, generator=g)
    maps = torch.where((pred == y)[:, :, None, None], base, torch.rand(4, 300, 8, 8, generator=g))
    r = mege_reco(None, None, y, fold, maps, predictions=pred)
    assert r.mege == 1.0
    assert r.reco == 1.0
    assert r.threshold == 0.0
    assert torch.all(r.distances_same == 0) and torch.all(r.distances_different > 0)


def test_pairs_follow_the_paper_and_xplique():
    """Reference: a direct loop (Xplique's ``_pairwise_distances``, with scipy) and a brute-force ReCo."""
    k, n = 3, 60
    y, fold, pred, g = _setting(k=k, n=n, acc=0.6, seed=7)
    maps = torch.rand(k, n, 5, 5, generator=g)
    maps[:, ::2] += maps[0, ::2] * 2  # some correlation, so distances spread
    r = mege_reco(None, None, y, fold, maps, predictions=pred)

    s_eq, s_ne, excluded = [], [], 0
    for i in range(k):
        for j in range(i + 1, k):
            for m in range(n):
                if int(fold[m]) not in (i, j):  # only pairs where one model never saw the image
                    continue
                d = math.sqrt(1 - abs(spearmanr(maps[i, m].ravel(), maps[j, m].ravel()).statistic))
                ci, cj = int(pred[i, m]) == int(y[m]), int(pred[j, m]) == int(y[m])
                if ci and cj:
                    s_eq.append(d)
                elif ci or cj:
                    s_ne.append(d)
                else:
                    excluded += 1
    assert r.n_excluded == excluded
    np.testing.assert_allclose(np.sort(r.distances_same.numpy()), np.sort(s_eq), atol=1e-6)
    np.testing.assert_allclose(np.sort(r.distances_different.numpy()), np.sort(s_ne), atol=1e-6)
    assert r.mege == pytest.approx(1 / (1 + np.mean(s_eq)), abs=1e-6)
    s_eq, s_ne = np.array(s_eq), np.array(s_ne)
    brute = max(0.0, *[np.mean(s_eq <= t) + np.mean(s_ne > t) - 1 for t in np.concatenate([s_eq, s_ne])])
    assert r.reco == pytest.approx(brute, abs=1e-6)
    # Every pair compares the model that never saw the image with another one
    assert torch.all(r.model_unseen == fold[r.image]) and torch.all(r.model_other != r.model_unseen)


def test_rule_prediction_and_constant_maps():
    y, fold, pred, g = _setting(n=80, acc=0.6, seed=2)
    maps = torch.rand(4, 80, 6, 6, generator=g)
    maps[1, :10] = 0.0  # blank maps of model 1 on ten images
    r = mege_reco(None, None, y, fold, maps, predictions=pred, rule="prediction")
    assert r.n_excluded == 0 and len(r.distances) == 80 * 3
    same_pred = pred[r.model_unseen, r.image] == pred[r.model_other, r.image]
    assert torch.equal(r.same, same_pred)
    blank = ((r.model_unseen == 1) | (r.model_other == 1)) & (r.image < 10)
    assert r.n_constant == int(blank.sum()) > 0
    assert torch.all(r.distances[blank] == 1.0)
    dropped = mege_reco(None, None, y, fold, maps, predictions=pred, rule="prediction", constant="drop")
    assert dropped.n_excluded == r.n_constant and dropped.n_constant == 0
    assert dropped.mege > r.mege


class _Linear(nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def _gradient_map(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # For a linear model the gradient of class y is its weight column: the map needs no autograd
    return model.w[:, y].T.reshape(x.shape).abs().amax(1).detach()


def test_callable_matches_precomputed_and_leaves_inputs_alone():
    g = torch.Generator().manual_seed(0)
    k, n, d = 3, 48, 3 * 6 * 6
    models = [_Linear(torch.randn(d, 4, generator=g)) for _ in range(k)]
    x = torch.rand(n, 3, 6, 6, generator=g)
    y = torch.randint(0, 4, (n,), generator=g)
    fold = assign_folds(y, k, seed=0)
    x0, y0, f0 = x.clone(), y.clone(), fold.clone()
    r = mege_reco(models, x, y, fold, _gradient_map)
    assert torch.equal(x, x0) and torch.equal(y, y0) and torch.equal(fold, f0)
    with torch.no_grad():
        maps = torch.stack([_gradient_map(m, x, y) for m in models])
        pred = torch.stack([m(x).argmax(1) for m in models])
    ref = mege_reco(None, None, y, fold, maps, predictions=pred)
    assert r.mege == ref.mege and r.reco == ref.reco
    assert torch.equal(r.distances, ref.distances) and torch.equal(r.same, ref.same)
    # Batching the ranks over images changes nothing
    small = mege_reco(models, x, y, fold, maps, batch_size=5)
    assert torch.allclose(small.distances, r.distances) and small.mege == pytest.approx(r.mege)


def test_empty_sets():
    y, fold, pred, g = _setting(n=40, acc=1.0)
    maps = torch.rand(4, 40, 4, 4, generator=g)
    with pytest.warns(RuntimeWarning, match="never disagree"):
        r = mege_reco(None, None, y, fold, maps, predictions=pred)
    assert r.reco == 0.0 and 0.5 < r.mege < 1
    wrong = (y + 1) % 3
    with pytest.raises(ValueError, match="S="):
        mege_reco(None, None, wrong, fold, maps, predictions=pred)


def test_bad_input():
    y, fold, pred, g = _setting(n=20)
    maps = torch.rand(4, 20, 4, 4, generator=g)
    with pytest.raises(ValueError, match=r"fold_ids: expected values in \[0, 3\]"):
        mege_reco(None, None, y, fold + 1, maps, predictions=pred)
    with pytest.raises(ValueError, match="k >= 2"):
        mege_reco(None, None, y, fold * 0, maps[:1], predictions=pred[:1])
    with pytest.raises(ValueError, match=r"predictions: expected class indices of shape \(4, 20\)"):
        mege_reco(None, None, y, fold, maps, predictions=pred[:3])
    with pytest.raises(ValueError, match=r"explain: expected precomputed maps of shape \(4, 20"):
        mege_reco(None, torch.rand(20, 3, 4, 4), y, fold, maps[:, :10], predictions=pred)
    with pytest.raises(ValueError, match="NaN"):
        mege_reco(None, None, y, fold, maps * float("nan"), predictions=pred)
    with pytest.raises(ValueError, match=r"y: expected shape \(20,\)"):
        mege_reco(None, None, y[:5], fold, maps, predictions=pred)
    with pytest.raises(ValueError, match="one-hot"):
        mege_reco(None, None, nn.functional.one_hot(y), fold, maps, predictions=pred)
    with pytest.raises(ValueError, match="rule"):
        mege_reco(None, None, y, fold, maps, predictions=pred, rule="same")
    with pytest.raises(ValueError, match="models: None"):
        mege_reco(None, None, y, fold, maps)
    with pytest.raises(ValueError, match="explain: expected a callable"):
        mege_reco([nn.Identity(), nn.Identity()], torch.rand(20, 3, 4, 4), y, fold % 2, "saliency")


# -- fold models -------------------------------------------------------------------------------------


def test_assign_folds_is_stratified_and_seeded():
    y = torch.arange(103) % 5
    f = assign_folds(y, 4, seed=3)
    assert torch.equal(f, assign_folds(y, 4, seed=3)) and not torch.equal(f, assign_folds(y, 4, seed=4))
    sizes = torch.bincount(f, minlength=4)
    assert int(sizes.max() - sizes.min()) <= 1
    for c in range(5):
        per_fold = torch.bincount(f[y == c], minlength=4)
        assert int(per_fold.max() - per_fold.min()) <= 1


class _Recorder(nn.Module):
    """A tiny CNN that remembers every training batch it saw (to check what each fold model saw)."""

    def __init__(self, classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.head(self.conv(x).relu().mean((2, 3)))


def test_each_fold_model_never_sees_its_split_and_seed_fixes_everything():
    g = torch.Generator().manual_seed(0)
    n, k = 60, 3
    images = torch.rand(n, 3, 8, 8, generator=g)
    labels = torch.arange(n) % 3

    def factory() -> Model:
        return Model(_Recorder(3), (0.5,) * 3, (0.5,) * 3, (3, 8, 8), ["a", "b", "c"])

    rng_before = torch.get_rng_state()
    folds = train_fold_models(
        factory, images, labels, k=k, epochs=2, seed=1, batch_size=16, hflip=False, progress=False
    )
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert isinstance(folds, FoldModels) and folds.k == k and len(folds.histories) == k
    flat = images.flatten(1)
    for i, model in enumerate(folds):
        # Pixels are normalized inside the Model: undo it to match the images
        seen = torch.cat(model.net.seen).flatten(1) * 0.5 + 0.5
        # which images were ever seen (exact differences: cdist's matmul shortcut is too coarse)
        match = (seen[:, None] - flat[None]).abs().amax(-1).min(0).values < 1e-5
        assert not match[folds.fold_ids == i].any(), f"model {i} saw images of its own fold"
        assert match[folds.fold_ids != i].all(), f"model {i} did not see all the other folds"
        assert not model.training
    again = train_fold_models(
        factory, images, labels, k=k, epochs=2, seed=1, batch_size=16, hflip=False, progress=False
    )
    other = train_fold_models(
        factory, images, labels, k=k, epochs=2, seed=2, batch_size=16, hflip=False, progress=False
    )
    assert torch.equal(again.fold_ids, folds.fold_ids)
    for a, b, c in zip(folds, again, other, strict=True):
        assert torch.equal(a.net.head.weight, b.net.head.weight)
        assert not torch.equal(a.net.head.weight, c.net.head.weight)
    accs = folds.held_out_accuracy(images, labels)
    assert len(accs) == k and all(0 <= a <= 1 for a in accs)


def test_train_fold_models_on_a_zoo_net():
    from workbench.data import planted_shapes

    data = planted_shapes(160, size=32, seed=0)
    start = time.perf_counter()
    kwargs = dict(k=2, epochs=1, seed=0, class_names=data.class_names, batch_size=32, progress=False)
    folds = train_fold_models("zoo:resnet_shapes", data.images, data.labels, **kwargs)
    assert time.perf_counter() - start < 20
    again = train_fold_models("resnet_shapes", data.images, data.labels, **kwargs)
    assert folds.k == 2 and folds[0].input_size == (3, 32, 32) and folds[0].labels == list(data.class_names)
    for a, b in zip(folds, again, strict=True):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name
    logits = folds[1](data.images[:4])
    assert logits.shape == (4, len(data.class_names))


def test_train_fold_models_bad_input():
    images, labels = torch.rand(10, 3, 8, 8), torch.arange(10) % 2
    with pytest.raises(ValueError, match="k: expected an integer >= 2"):
        train_fold_models("resnet_shapes", images, labels, k=1)
    with pytest.raises(KeyError, match="unknown zoo model"):
        train_fold_models("resnet_shapez", images, labels)
    with pytest.raises(ValueError, match="unknown recipe keys"):
        train_fold_models("resnet_shapes", images, labels, momentum=0.9)
    with pytest.raises(ValueError, match="factory must return a workbench Model"):
        train_fold_models(lambda: nn.Linear(3, 2), images, labels, epochs=1, progress=False)
