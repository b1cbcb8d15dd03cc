"""The shared plumbing: validation messages, batching bounds, serialization round trips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from workbench._core import batched_apply, check_images, check_targets, iter_batches, load_result, save_result


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
