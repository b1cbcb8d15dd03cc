"""SAE classes: the registry, load_sae round trips, archetypal dictionaries on any encoder, RA-SAE's
initialisation at the data's scale, and the declared dead-atom methods."""

from __future__ import annotations

import pytest
import torch

from workbench.sae import (
    MPSAE,
    RASAE,
    SAES,
    ArchetypalSAE,
    BatchTopKSAE,
    JumpReLUSAE,
    ReLUSAE,
    SpaDE,
    SparseAutoencoder,
    TopKSAE,
    fit,
    kmeans,
    load_sae,
    project_simplex,
    r2,
    save_sae,
    sparse_mixtures,
    train,
    unit_rows,
    with_archetypes,
)
from workbench.sae.base import overrides

pytestmark = pytest.mark.usefixtures("one_thread")  # small models (see conftest)

D, N_ATOMS = 12, 24
X = torch.randn(256, D, generator=torch.Generator().manual_seed(0))
C = X[:40]


def every_class() -> dict[str, SparseAutoencoder]:
    """One instance of every registered class (non-default arguments, so a rebuild must read them)."""
    saes = {
        "ReLUSAE": ReLUSAE(D, N_ATOMS, l1_coeff=0.02, seed=3),
        "TopKSAE": TopKSAE(D, N_ATOMS, k=3, seed=3, k_aux=5),
        "BatchTopKSAE": BatchTopKSAE(D, N_ATOMS, k=3, momentum=0.5, seed=3),
        "JumpReLUSAE": JumpReLUSAE(D, N_ATOMS, sparsity_coeff=0.1, init_threshold=0.05, seed=3),
        "MPSAE": MPSAE(D, N_ATOMS, k=3, selection="positive", seed=3),
        "SpaDE": SpaDE(D, N_ATOMS, prototypes=X[:N_ATOMS], scale=0.3, seed=3),
        "RASAE": RASAE(D, N_ATOMS, C, k=3, delta=0.5, seed=3),
        "ArchetypalSAE": ArchetypalSAE(D, N_ATOMS, C, k=3, use_multiplier=False, seed=3),
    }
    assert set(saes) == set(SAES.names())  # a new class must be added here
    return saes


def test_registry_lists_every_class_with_its_paper():
    for entry in SAES.entries():
        assert issubclass(entry.obj, SparseAutoencoder) and entry.paper, entry.name
        assert entry.obj.__name__ == entry.name  # load_sae finds a class by its name
    with pytest.raises(KeyError, match="TopKSAE"):
        SAES.get("TopKSEA")


def test_load_sae_rebuilds_every_class_without_being_told_it(tmp_path):
    """Round trip: trained weights (a few steps, so nothing is at its initial value), then save_sae and
    the trainer's checkpoint both give back the same class, weights and codes (exactly: same floats)."""
    for name, sae in every_class().items():
        h = train(sae, X, steps=4, batch_size=64, lr=1e-2, checkpoint_dir=tmp_path / name, progress=False)
        assert len(h) == 1, name
        for path in (save_sae(sae, tmp_path / f"{name}.pt"), tmp_path / name):
            back = load_sae(path)
            assert type(back) is type(sae), name
            assert back.state_dict().keys() == sae.state_dict().keys(), name
            for k, v in sae.state_dict().items():
                assert torch.equal(back.state_dict()[k], v), (name, k)
            assert torch.equal(back.encode(X), sae.eval().encode(X)), name


def test_archetypal_dictionary_on_any_encoder_round_trips(tmp_path):
    """RA-JumpReLU and RA-BatchTopK without classes of their own: the dictionary is the archetypal one
    (atoms / exp(m) within delta of the hull of C after constrain), and load_sae rebuilds them."""
    for base in (JumpReLUSAE(D, N_ATOMS, seed=1), BatchTopKSAE(D, N_ATOMS, k=3, seed=1)):
        sae = with_archetypes(base, C, delta=0.25, seed=2)
        assert "W_dec" not in dict(sae.named_parameters())
        fit(sae, X, steps=20, lr=1e-2, batch_size=64)
        arch = sae.archetypes
        torch.testing.assert_close(sae.dictionary, arch.m.exp() * (arch.W @ arch.C + arch.Lambda))
        assert torch.allclose(project_simplex(arch.W), arch.W, atol=1e-6)  # rows on the simplex
        assert float(arch.Lambda.detach().norm(dim=1).max()) <= 0.25 + 1e-6
        back = load_sae(save_sae(sae, tmp_path / "ra.pt"))
        assert type(back) is type(base) and torch.equal(back.dictionary, sae.dictionary)
    with pytest.raises(ValueError, match="linear encoder"):
        with_archetypes(MPSAE(D, N_ATOMS, k=2), C)
    with pytest.raises(ValueError, match="candidates"):
        with_archetypes(TopKSAE(D, N_ATOMS, k=2), C[:, :5])


def test_rasae_starts_at_the_data_scale():
    """Before the fix, atoms on candidates (data norm 10) and codes of the data's norm gave a first
    reconstruction about k |x|^2 long: measured here R2 -386 (centred data) and -73,687 (data shifted by
    3 per dimension). The least-squares encoder scale on the candidates and the bias at their mean
    guarantee R2 >= 0 on the candidates; on the data, which the candidates summarise, the bound is
    R2 > -0.05 (measured 0.51 and 0.06), and 50 steps improve it."""
    X0, _, _ = sparse_mixtures(2000, 32, 48, 3, seed=0)
    X0 = X0 * 10 / X0.norm(dim=1).mean()
    for shift in (0.0, 3.0):
        Xs = X0 + shift
        cands = kmeans(Xs, 128, iters=20, seed=0)
        starts = []
        for sae in (RASAE(32, 64, cands, k=8, seed=1), with_archetypes(JumpReLUSAE(32, 64), cands)):
            with torch.no_grad():
                starts.append(r2(Xs, sae(Xs)[1]))
            assert starts[-1] > -0.05, (shift, type(sae).__name__, starts[-1])
        sae = fit(RASAE(32, 64, cands, k=8, seed=1), Xs, steps=50, lr=3e-3)
        with torch.no_grad():
            assert r2(Xs, sae(Xs)[1]) > starts[0]
    # the atoms themselves stay on the candidates (the paper's init): W is one-hot
    ra = RASAE(32, 64, cands, k=8, seed=1)
    assert torch.equal(ra.W.sum(1), torch.ones(64)) and torch.equal(ra.W.max(1).values, torch.ones(64))


def test_dead_atom_methods_are_declared_on_the_base_class():
    """aux_loss and revive exist on every SAE (no-ops on the base) with one argument order, data first;
    the trainer uses the ones a class overrides."""
    sae = ReLUSAE(D, N_ATOMS)
    dead = torch.zeros(N_ATOMS, dtype=torch.bool)
    codes, x_hat = sae(X)
    assert sae.aux_loss(X, codes, x_hat, dead) is None and sae.revive(X, dead) == 0
    assert not overrides(sae, "aux_loss") and not overrides(sae, "revive")
    assert overrides(TopKSAE(D, N_ATOMS, k=2), "aux_loss") and overrides(MPSAE(D, N_ATOMS, k=2), "revive")
    mp = MPSAE(D, N_ATOMS, k=1)
    dead[:2] = True
    assert mp.revive(X, dead) == 2  # data first, then the mask
    assert torch.allclose(mp.dictionary.norm(dim=1), torch.ones(N_ATOMS))
    torch.testing.assert_close(
        unit_rows(torch.tensor([[3.0, 4.0], [0.0, 0.0]])), torch.tensor([[0.6, 0.8], [0, 0]])
    )
