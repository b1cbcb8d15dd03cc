"""Localization metrics against masks: closed forms, and scikit-learn's ROC-AUC as the reference."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score

from workbench.metrics import energy_in_mask, mask_auc, pointing_game


def square_mask(n=3, size=16):
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, 4:8, 6:10] = True  # 16 of 256 pixels
    return masks


def test_energy_in_mask_closed_forms():
    masks = square_mask()
    torch.testing.assert_close(energy_in_mask(masks.float(), masks), torch.ones(3))  # the mask itself
    torch.testing.assert_close(
        energy_in_mask(torch.ones(3, 16, 16), masks), torch.full((3,), 16 / 256)
    )  # area
    signed = masks.float() * 2 - 1  # +1 inside, -1 outside: negative mass does not count
    torch.testing.assert_close(energy_in_mask(signed, masks), torch.ones(3))
    # no positive mass at all: 0, not NaN
    torch.testing.assert_close(energy_in_mask(-torch.ones(3, 16, 16), masks), torch.zeros(3))
    # channels are averaged; 0/1 float masks are accepted
    maps = torch.rand(3, 2, 16, 16)
    torch.testing.assert_close(energy_in_mask(maps, masks.float()), energy_in_mask(maps.mean(1), masks))


def test_mask_auc_matches_scikit_learn_with_ties():
    """Mann-Whitney AUC with mid-ranks equals sklearn's trapezoid ROC-AUC exactly, ties included
    (values quantised to 5 levels so that most pixels tie)."""
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(4, 12, 12, generator=g) < 0.3
    maps = (torch.rand(4, 12, 12, generator=g) * 5).floor() + masks * 0.7
    ours = mask_auc(maps, masks)
    ref = [roc_auc_score(m.flatten().numpy(), v.flatten().numpy()) for m, v in zip(masks, maps)]
    torch.testing.assert_close(ours, torch.tensor(ref, dtype=torch.float32), atol=1e-6, rtol=0)
    sq = square_mask()
    torch.testing.assert_close(mask_auc(sq.float(), sq), torch.ones(3))
    torch.testing.assert_close(mask_auc(-sq.float(), sq), torch.zeros(3))
    torch.testing.assert_close(mask_auc(torch.zeros(3, 16, 16), sq), torch.full((3,), 0.5))  # all tied
    with pytest.raises(ValueError, match="empty or full"):
        mask_auc(torch.rand(2, 16, 16), torch.zeros(2, 16, 16, dtype=torch.bool))


def test_pointing_game():
    masks = square_mask(n=2)
    maps = torch.zeros(2, 16, 16)
    maps[0, 5, 7] = 1.0  # inside
    maps[1, 5, 12] = 1.0  # two pixels right of the mask (columns 6..9)
    assert pointing_game(maps, masks).tolist() == [True, False]
    assert pointing_game(maps, masks, tolerance=2).tolist() == [True, False]
    assert pointing_game(maps, masks, tolerance=3).tolist() == [True, True]
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(maps, masks, tolerance=-1)


def test_bad_input_and_no_mutation():
    masks = square_mask()
    maps = torch.rand(3, 16, 16)
    m0, k0 = maps.clone(), masks.clone()
    for metric in (energy_in_mask, mask_auc, pointing_game):
        metric(maps, masks)
        assert torch.equal(maps, m0) and torch.equal(masks, k0)
        with pytest.raises(ValueError, match="masks"):
            metric(maps, masks[:, :8])
        with pytest.raises(ValueError, match="masks"):
            metric(maps, masks.float() * 2)
        bad = maps.clone()
        bad[0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            metric(bad, masks)


def test_masks_of_other_images_are_refused_with_both_shapes():
    """The README once passed a dataset's 64 masks against 4 maps: never broadcast, name both shapes."""
    maps, masks = torch.rand(4, 16, 16), torch.rand(64, 16, 16) > 0.5
    for metric in (energy_in_mask, mask_auc, pointing_game):
        with pytest.raises(
            ValueError, match=r"got 64 masks, shape \(64, 16, 16\), for 4 maps, shape \(4, 16, 16\)"
        ):
            metric(maps, masks)
        # the fix the message suggests works
        metric(maps, masks[:4])


def test_localization_accepts_numpy_maps_and_masks():
    masks = square_mask()
    maps = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    for metric in (energy_in_mask, mask_auc):
        torch.testing.assert_close(metric(maps.numpy(), masks.numpy()), metric(maps, masks))
    assert torch.equal(pointing_game(maps.double().numpy(), masks.numpy()), pointing_game(maps, masks))
