"""ActivationStore: round trips against hooked activations, shuffled reading, resuming after SIGKILL, ranks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from workbench.data.activation_store import ActivationStore, extract_activations

SMALL = 500  # chunk_bytes small enough that a few dozen tiny images span several write blocks


class TinyModel(nn.Module):
    """Stand-in for workbench.models.Model: two conv maps, a token layer and the raw pixels."""

    spec = "test:tiny"
    input_size = (3, 8, 8)
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, delay: float = 0.0, on_call=None):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6, 5)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.5
        self.delay, self.on_call, self.calls = delay, on_call, 0

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = torch.relu(self.conv1((x - 0.5) / 0.25))
        b = torch.relu(self.conv2(a))
        t = b.flatten(2).transpose(1, 2)  # (N, 16, 6)
        tokens = torch.cat([t.amax(1, keepdim=True), t], 1)  # a "cls" token first: (N, 17, 6)
        return {"pixels": x, "conv1": a, "conv2": b, "tokens": tokens, "logits": self.head(tokens[:, 0])}

    def forward(self, x):
        return self._run(x)["logits"]

    def layers(self):
        return ["pixels", "conv1", "conv2", "tokens"]

    def activations(self, x, layers):
        self.calls += 1
        if self.on_call is not None:
            self.on_call(len(x))
        if self.delay:
            time.sleep(self.delay)
        names = [layers] if isinstance(layers, str) else list(layers)
        out = self._run(x)
        return {n: out[n] for n in names}


class Shapes(torch.utils.data.Dataset):
    """PlantedShapes-like: (image, label) items, a config dict, and a count of __getitem__ calls."""

    config = {"size": 8, "seed": 1}

    def __init__(self, n: int = 37):
        self.x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        self.y = torch.arange(n) % 3
        self.gets = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.gets += 1
        return self.x[i], int(self.y[i])


def pooled(a: torch.Tensor, pooling: str) -> torch.Tensor:
    """Reference pooling, written independently of the module."""
    if pooling == "mean":
        return a.mean((2, 3)) if a.ndim == 4 else a.mean(1)
    if pooling == "cls":
        return a[:, 0]
    return a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]) if a.ndim == 4 else a.reshape(-1, a.shape[-1])


@pytest.mark.parametrize(
    ("layer", "pooling"),
    [("conv1", "mean"), ("conv2", "none"), ("tokens", "mean"), ("tokens", "cls"), ("tokens", "none")],
)
def test_round_trip_matches_hooked_activations(tmp_path, layer, pooling):
    model, data = TinyModel(), Shapes()
    store = extract_activations(
        model, layer, data, tmp_path / "s", pooling=pooling, batch_size=5, chunk_bytes=SMALL, progress=False
    )
    ref = pooled(model.activations(data.x, layer)[layer], pooling)
    assert store.complete and store.shape == tuple(ref.shape) and len(store) == len(ref)
    assert len(store.done) >= 2  # several write blocks, the last one partial
    torch.testing.assert_close(store[:], ref)
    torch.testing.assert_close(store.to_tensor(), ref)
    torch.testing.assert_close(store[[7, -1, 3, 7]], ref[[7, -1, 3, 7]])
    torch.testing.assert_close(store[4], ref[4])
    rpi = len(ref) // len(data)
    assert store.rows_per_image == rpi
    assert torch.equal(store.labels, data.y.repeat_interleave(rpi))
    meta = store.meta
    assert (meta["model_spec"], meta["layer"], meta["pooling"], meta["n_images"]) == (
        "test:tiny",
        layer,
        pooling,
        37,
    )
    assert meta["dataset_config"] == Shapes.config and meta["dataset_name"] == "Shapes"
    assert meta["preprocessing"]["input_size"] == [3, 8, 8] and "created" in meta


def test_row_order_image_then_h_then_w(tmp_path):
    model, x = TinyModel(), torch.rand(6, 3, 8, 8)
    store = extract_activations(model, "conv2", x, tmp_path / "s", pooling="none", progress=False)
    a = model.activations(x, "conv2")["conv2"]  # (6, 6, 4, 4)
    for i, h, w in [(0, 0, 1), (2, 3, 0), (5, 1, 2)]:
        torch.testing.assert_close(store[i * 16 + h * 4 + w], a[i, :, h, w])
    assert store.labels is None and store.meta["dataset_name"] == "Tensor"


def test_tensor_labels_float16_and_bad_input(tmp_path):
    model, x = TinyModel(), torch.rand(10, 3, 8, 8)
    store = extract_activations(
        model, "conv1", x, tmp_path / "s", labels=torch.arange(10), dtype="float16", progress=False
    )
    torch.testing.assert_close(
        store[:], model.activations(x, "conv1")["conv1"].mean((2, 3)), atol=2e-3, rtol=2e-3
    )
    assert store[:].dtype == torch.float32 and torch.equal(store.labels, torch.arange(10))
    with pytest.raises(ValueError, match="pixel values"):
        extract_activations(model, "conv1", x * 255, tmp_path / "t", progress=False)
    with pytest.raises(ValueError, match="pooling"):
        extract_activations(model, "conv1", x, tmp_path / "t", pooling="max", progress=False)
    with pytest.raises(ValueError, match="cls"):
        extract_activations(model, "conv1", x, tmp_path / "t", pooling="cls", progress=False)
    with pytest.raises(FileNotFoundError):
        ActivationStore(tmp_path / "nothing")
    strings = [(x[i], f"name{i}") for i in range(10)]  # non-numeric labels are not stored
    assert extract_activations(model, "conv1", strings, tmp_path / "u", progress=False).labels is None
    with pytest.raises(ValueError, match="image tensor"):
        extract_activations(model, "conv1", [x[0].tolist()], tmp_path / "v", progress=False)


@pytest.fixture
def id_store(tmp_path) -> ActivationStore:
    """A store whose rows are pixels encoding their own row index in channel 0 (601 rows, 7 chunks)."""
    n = 601
    x = torch.zeros(n, 3, 1, 1)
    x[:, 0, 0, 0] = torch.arange(n) / n
    return extract_activations(
        TinyModel(),
        "pixels",
        x,
        tmp_path / "ids",
        pooling="none",
        batch_size=30,
        chunk_bytes=1200,
        progress=False,
    )


def ids(batches) -> np.ndarray:
    return np.concatenate([np.rint(b[:, 0].numpy() * 601).astype(int) for b in batches])


def test_shuffled_batches_every_row_once_deterministic(id_store):
    assert id_store.meta["chunk_rows"] == 90 and len(id_store) == 601
    first = list(id_store.batches(64, seed=3, buffer_rows=200))
    assert [len(b) for b in first] == [64] * 9 + [25] and first[0].dtype == torch.float32
    order = ids(first)
    assert sorted(order) == list(range(601))  # every row exactly once
    assert not np.array_equal(order, np.arange(601))  # and shuffled
    assert np.array_equal(order, ids(id_store.batches(64, seed=3, buffer_rows=200)))
    assert not np.array_equal(order, ids(id_store.batches(64, seed=4, buffer_rows=200)))
    two = list(id_store.batches(64, seed=3, epochs=2, drop_last=True, buffer_rows=200))
    assert len(two) == 18 and not np.array_equal(ids(two[:9]), ids(two[9:]))
    assert np.array_equal(ids(id_store.batches(100, shuffle=False)), np.arange(601))
    with pytest.raises(ValueError, match="no labels"):
        next(id_store.batches(8, return_labels=True))


def test_batches_with_labels(tmp_path):
    data = Shapes(40)
    store = extract_activations(TinyModel(), "conv2", data, tmp_path / "s", pooling="none", progress=False)
    rows, labels = store[:], store.labels
    for x, y in store.batches(50, seed=0, buffer_rows=100, return_labels=True):
        # find each row in the full store and check its label travelled with it
        idx = torch.cdist(x, rows).argmin(1)
        assert torch.equal(labels[idx], y)


def test_shuffle_reads_lazily(id_store, monkeypatch):
    """The reader holds the current window of chunks and the prefetched next one, not the whole store."""
    read = []
    orig = ActivationStore._read_chunks
    monkeypatch.setattr(ActivationStore, "_read_chunks", lambda self, c: read.extend(c) or orig(self, c))
    it = id_store.batches(16, seed=0, buffer_rows=180)  # windows of two 90-row chunks
    next(it)
    assert 2 <= len(read) <= 4  # the first window, and perhaps the prefetched second, of 7 chunks
    list(it)
    assert sorted(read) == list(range(7))


def test_extraction_streams_the_dataset(tmp_path):
    """Memory stays bounded: items are fetched batch by batch, and blocks reach the disk as extraction
    goes (one block may still be in the writer thread). Loading the dataset, or keeping all the
    activations and writing them at the end, fails this."""
    data, path, seen = Shapes(60), tmp_path / "s", []

    def on_call(b):
        done = int(ActivationStore(path, allow_incomplete=True).done.sum()) if path.exists() else None
        seen.append((data.gets, b, done))

    model = TinyModel(on_call=on_call)
    store = extract_activations(model, "conv1", data, path, batch_size=4, chunk_bytes=128, progress=False)
    block = store.meta["block_images"]
    assert block == 8 and len(seen) == 16  # the one-image probe, then 15 batches
    fetched = 2  # data[0] to detect labels, data[0] for the probe
    for k, (gets, b, done) in enumerate(seen[1:]):
        fetched += b
        assert gets == fetched  # exactly this batch's items have been read, nothing ahead
        assert (4 * k) // block - 1 <= done <= (4 * k) // block  # earlier blocks written, but for one


def test_rerun_skips_mismatch_raises_overwrite(tmp_path):
    data, path = Shapes(), tmp_path / "s"
    model = TinyModel()
    extract_activations(model, "conv1", data, path, progress=False)
    model.calls = 0
    store = extract_activations(model, "conv1", data, path, batch_size=7, progress=False)
    assert model.calls == 0 and store.complete  # complete: nothing recomputed
    with pytest.raises(ValueError, match=r"layer='conv1' \(this call: 'conv2'\).*overwrite=True"):
        extract_activations(model, "conv2", data, path, progress=False)
    with pytest.raises(ValueError, match="n_images"):
        extract_activations(model, "conv1", Shapes(12), path, progress=False)
    store = extract_activations(model, "conv2", data, path, overwrite=True, progress=False)
    assert store.meta["layer"] == "conv2" and store.complete
    torch.testing.assert_close(store[:], model.activations(data.x, "conv2")["conv2"].mean((2, 3)))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not an activation store"):
        extract_activations(model, "conv1", data, tmp_path / "other", overwrite=True, progress=False)
    assert (tmp_path / "other" / "keep.txt").exists()


def test_two_ranks_fill_the_store(tmp_path):
    model, data = TinyModel(), Shapes()
    kw = dict(pooling="none", batch_size=5, chunk_bytes=SMALL, progress=False)
    s0 = extract_activations(model, "conv2", data, tmp_path / "s", rank=0, world_size=2, **kw)
    n_blocks = len(s0.done)
    assert n_blocks >= 3 and not s0.complete and s0.done.sum() == (n_blocks + 1) // 2
    with pytest.raises(RuntimeError, match=f"{n_blocks // 2} of {n_blocks} write blocks"):
        s0[:]
    partial = ActivationStore(tmp_path / "s", allow_incomplete=True)
    assert torch.isnan(partial[:]).any()
    got = torch.cat(list(partial.batches(1000, shuffle=False)))  # only the finished blocks' rows
    assert not torch.isnan(got).any() and 0 < len(got) < len(partial)
    s1 = extract_activations(model, "conv2", data, tmp_path / "s", rank=1, world_size=2, **kw)
    assert s1.complete
    ref = extract_activations(model, "conv2", data, tmp_path / "ref", **kw)
    torch.testing.assert_close(s1[:], ref[:])
    assert torch.equal(s1.labels, ref.labels)


def test_concurrent_ranks_share_one_store(tmp_path):
    """Two workers started together race to create the store and write disjoint blocks at once."""
    data, kw = Shapes(), dict(pooling="none", batch_size=5, chunk_bytes=SMALL, progress=False)
    errors = []

    def work(rank):
        try:
            extract_activations(
                TinyModel(delay=0.01), "conv2", data, tmp_path / "s", rank=rank, world_size=2, **kw
            )
        except Exception as e:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(e)

    threads = [threading.Thread(target=work, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = ActivationStore(tmp_path / "s")
    assert store.complete and not list(tmp_path.glob(".s.tmp-*"))  # the loser's temporary store is gone
    ref = extract_activations(TinyModel(), "conv2", data, tmp_path / "ref", **kw)
    torch.testing.assert_close(store[:], ref[:])


KILL_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_activation_store import TinyModel, Shapes
from workbench.data.activation_store import extract_activations
extract_activations(TinyModel(delay={delay}), "tokens", Shapes(60), {path!r}, pooling="none",
                    batch_size=4, chunk_bytes=1700, progress=False)
"""


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    path = tmp_path / "s"
    script = tmp_path / "extract.py"
    script.write_text(
        textwrap.dedent(KILL_SCRIPT.format(tests=str(Path(__file__).parent), delay=0.15, path=str(path)))
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (path / "zarr.json").exists():
                done = ActivationStore(path, allow_incomplete=True).done
                if 2 <= done.sum() < len(done) - 2:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the extraction finished (or died) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = ActivationStore(path)
    assert not killed.complete
    with pytest.raises(RuntimeError, match="incomplete"):
        killed[:]
    model, block = TinyModel(), killed.meta["block_images"]
    missing = np.flatnonzero(~killed.done)
    store = extract_activations(
        model, "tokens", Shapes(60), path, pooling="none", batch_size=4, chunk_bytes=1700, progress=False
    )
    assert store.complete and model.calls == sum(
        -(-(min(60, (b + 1) * block) - b * block) // 4) for b in missing
    )
    fresh = extract_activations(TinyModel(), "tokens", Shapes(60), tmp_path / "fresh", pooling="none",
                                batch_size=4, chunk_bytes=1700, progress=False)  # fmt: skip
    torch.testing.assert_close(store[:], fresh[:])
    assert not torch.isnan(store[:]).any()


@pytest.mark.slow  # timm import and model construction
@pytest.mark.parametrize(
    ("spec", "kwargs", "layer", "pooling"),
    [
        ("timm:test_resnet", {}, "layer2", "none"),
        ("timm:test_vit", {"img_size": 64, "patch_size": 8}, "blocks.1", "cls"),
    ],
)
def test_real_model_on_planted_shapes(tmp_path, spec, kwargs, layer, pooling):
    models = pytest.importorskip("workbench.models")
    planted = pytest.importorskip("workbench.data.planted")
    if not hasattr(models, "load_model"):
        pytest.skip("workbench.models.load_model not available yet")
    model = models.load_model(spec, pretrained=False, input_size=(3, 64, 64), **kwargs)
    data = planted.planted_shapes(10, size=64)
    store = extract_activations(
        model, layer, data, tmp_path / "s", pooling=pooling, batch_size=4, progress=False
    )
    x = torch.stack([data[i][0] for i in range(len(data))])
    ref = pooled(model.activations(x, layer)[layer], pooling)
    torch.testing.assert_close(store[:], ref, atol=1e-4, rtol=1e-4)
    assert torch.equal(
        store.labels, torch.stack([data[i][1] for i in range(10)]).repeat_interleave(store.rows_per_image)
    )
    meta = store.meta
    assert meta["model_spec"] == spec and meta["dataset_name"] == "PlantedShapes"
    assert meta["dataset_config"]["n"] == 10 and meta["preprocessing"]["input_size"] == [3, 64, 64]
