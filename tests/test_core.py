"""The shared plumbing: validation messages, batching bounds, serialization round trips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from workbench._core import batched_apply, check_images, check_targets, iter_batches, load_result, save_result
from workbench._core.validation import as_tensor, check_baseline, check_fraction, check_maps, tracing


def test_batched_apply_bounds_chunk_size_and_keeps_order():
    seen = []

    def fn(chunk):
        seen.append(len(chunk))
        return chunk * 2

    x = torch.arange(10.0)
    torch.testing.assert_close(batched_apply(fn, x, batch_size=3), x * 2)
    assert seen == [3, 3, 3, 1]
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_batches(5, 0))


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (torch.tensor([0, 5]), r"\[0, 4\]"),
        (torch.tensor([-1, 0]), r"\[0, 4\]"),
        (torch.tensor([0.0, 1.0]), "integer"),
        (torch.eye(5)[:2].long(), "one-hot"),
        (torch.tensor([0, 1, 2]), r"shape \(2,\)"),
    ],
)
def test_bad_targets(y, match):
    with pytest.raises(ValueError, match=match):
        check_targets(y, n=2, num_classes=5)


def test_targets_accept_int_and_lists():
    assert check_targets(3, n=2, num_classes=5).tolist() == [3, 3]
    assert check_targets([1, 2], n=2, num_classes=5).dtype == torch.long


def test_check_images_passes_good_input_through():
    x = torch.rand(2, 3, 8, 8)
    assert check_images(x) is x


@dataclass
class _Result:
    maps: torch.Tensor
    scores: np.ndarray
    method: str
    params: dict


def test_result_round_trip(tmp_path):
    r = _Result(torch.rand(2, 4, 4), np.arange(3.0), "sobol", {"grid_size": 8})
    save_result(r, tmp_path / "res")
    back = load_result(tmp_path / "res")
    torch.testing.assert_close(back.maps, r.maps)
    np.testing.assert_array_equal(back.scores, r.scores)
    assert back.method == "sobol" and back.params == {"grid_size": 8}
    assert not list(tmp_path.glob(".*tmp*")), "temporary files must be renamed away"


def test_check_fraction_states_its_bounds():
    assert check_fraction(0.0, "f") == 0.0 and check_fraction(np.float32(1.0), "f") == 1.0
    with pytest.raises(ValueError, match=r"f: expected a number in \(0, 1\), got 0"):
        check_fraction(0, "f", inclusive=(False, False))
    with pytest.raises(ValueError, match=r"expected a number in \(0, 1\], got 0.0"):
        check_fraction(0.0, "max_fraction", inclusive=(False, True))
    assert check_fraction(1, "max_fraction", inclusive=(False, True)) == 1.0
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        check_fraction(2.5, "g", high=2.0)
    for bad in (True, float("nan"), "0.5", None):
        with pytest.raises(ValueError, match="f: expected"):
            check_fraction(bad, "f")


def test_as_tensor_converts_numpy_at_the_boundary():
    a = np.random.default_rng(0).random((2, 3, 4, 4))  # float64
    t = as_tensor(a)
    assert t.dtype == torch.float32 and torch.equal(t, torch.from_numpy(a).float())
    assert as_tensor(np.array([1, 2])).dtype == torch.int64
    assert as_tensor(np.ones((2, 2), dtype=bool)).dtype == torch.bool
    ro = np.zeros((2, 2), dtype=np.float32)
    ro.flags.writeable = False  # torch cannot share read-only memory: a copy, without a warning
    assert torch.equal(as_tensor(ro), torch.zeros(2, 2))
    assert torch.equal(as_tensor(np.arange(3, dtype=">i4")), torch.arange(3, dtype=torch.int32))
    x = torch.ones(2)
    assert as_tensor(x) is x and as_tensor(3) == 3 and as_tensor([1]) == [1]
    with pytest.raises(ValueError, match="numeric"):
        as_tensor(np.array(["a"]))
    # at the public checks: images, targets, maps, baselines
    assert check_images(a).dtype == torch.float32
    assert torch.equal(check_targets(np.array([0, 2]), 2), torch.tensor([0, 2]))
    assert torch.equal(check_targets(np.int64(1), 2), torch.tensor([1, 1]))
    assert check_maps(a).shape == (2, 4, 4)
    assert check_baseline(np.full((3, 1, 1), 0.5), torch.rand(2, 3, 4, 4), pixel_range=True).shape == (
        2,
        3,
        4,
        4,
    )


def test_check_maps_names_shapes():
    with pytest.raises(
        ValueError, match=r"expected 3 maps of size \(4, 4\) to match the images, got shape \(2, 4, 4\)"
    ):
        check_maps(torch.rand(2, 4, 4), n=3, size=(4, 4))
    with pytest.raises(ValueError, match="real"):
        check_maps(torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        check_maps(torch.full((1, 2, 2), float("inf")))
    torch.testing.assert_close(
        check_maps(torch.ones(1, 3, 2, 2) * torch.arange(3.0).view(1, 3, 1, 1)), torch.ones(1, 2, 2)
    )


@pytest.mark.parametrize("shape", [(), (3, 1, 1), (1, 3, 1, 1), (3, 5, 4), (1, 3, 5, 4), (2, 3, 5, 4)])
def test_check_baseline_accepts_the_documented_shapes(shape):
    x = torch.rand(2, 3, 5, 4)
    base = torch.full(shape, 0.25)
    out = check_baseline(base, x, pixel_range=True)
    assert out.shape == x.shape and bool(out.eq(0.25).all())


@pytest.mark.parametrize("shape", [(5, 4), (1, 1, 5, 4), (2, 1, 5, 4), (3,), (2, 3, 1, 1)])
def test_check_baseline_refuses_other_shapes_instead_of_broadcasting(shape):
    """(5, 4) or (3,) would broadcast (the old occlusion check accepted them) but mean different things
    (a grey-level image? a colour?): one documented set of shapes for every method and metric."""
    with pytest.raises(ValueError, match=r"baseline: expected a float or a tensor of shape \(\)"):
        check_baseline(torch.zeros(shape), torch.rand(2, 3, 5, 4), pixel_range=False)


def test_tracing_is_false_in_eager_mode():
    assert tracing() is False
