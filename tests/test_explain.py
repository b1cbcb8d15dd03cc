"""`workbench explain` / `workbench.explain(...)`: the results, resuming (a real SIGKILL), bad input, torchrun.

One small run is shared by the module (`computed`): 16 PlantedShapes images of the texture zoo CNN, in write
blocks of 2 images, saliency only, 2 concepts for 2 classes, the ``tiny`` budgets, no report (the report has its own test in
tests/browser/test_explain_report_browser.py). The killed run, the re-run and the 2-rank torchrun run use
the same arguments, so their stores must hold the same arrays.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench
from workbench.cli.main import main
from workbench.explain import ExplainInputError, load_results

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["zoo:resnet_textures", "--planted", "16", "--methods", "saliency", "--concepts", "2",
        "--classes", "solid", "stripes", "--block-images", "2", "--scale", "tiny", "--no-report", "--no-progress"]  # fmt: skip
KW = dict(planted=16, methods=["saliency"], concepts=2, classes=["solid", "stripes"], block_images=2,
          scale="tiny", report=False, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "run"
    res = workbench.explain("zoo:resnet_textures", out=out, **KW)
    return res


def _arrays(res) -> dict[str, np.ndarray]:
    import zarr

    return {
        name: np.asarray(a[:]) for name, a in res.group.members(max_depth=None) if isinstance(a, zarr.Array)
    }


def _same(a, b) -> None:
    left, right = _arrays(a), _arrays(b)
    assert left.keys() == right.keys()
    for name in left:
        # the same units computed by the same code on the same machine: bit for bit (NaN where unwritten)
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


def test_results_are_complete_and_faithful_to_the_ground_truth(computed):
    res = computed
    assert res.complete and res.explained_classes == [0, 1]
    assert res.n == 16 and res.maps("saliency").shape == (16, 64, 64)
    assert (res.targets == res.labels).all()  # PlantedShapes: every image is explained for its true class
    assert (res.predictions == res.labels).mean() >= 0.9  # the zoo model's test accuracy is 1.000
    for metric in ("deletion", "insertion"):
        s = res.scores(metric)
        assert s.shape == (16, 1) and ((s >= 0) & (s <= 1)).all(), metric
    assert np.isfinite(res.scores("mufidelity")).all()
    for c in res.explained_classes:
        cr = res.class_result(c)
        assert cr["n_images"] == 4 and cr["importance"].shape == (4, 2)
        # completeness: the zoo CNN's head is a global average pool and a linear layer, so the concepts'
        # gradient x input contributions add up to the logit minus the bias (-0.05..0.01) and the NMF
        # reconstruction error (5-10 % here): their shares of the mean logit sum to about 1
        assert 0.8 < cr["share"].sum() < 1.1, cr["share"]
        assert cr["maco"].shape == (2, 3, 64, 64) and cr["crop_images"].shape[:2] == (2, 3)
        assert cr["cluster_sizes"].sum() == 4
    sanity = res.sanity()
    assert set(sanity) == {"saliency"} and len(sanity["saliency"]["per_stage"]) == len(
        res.meta["sanity_layers"]
    )


def test_workbench_explain_is_callable_and_rerun_skips_what_is_done(computed, capsys, monkeypatch):
    import workbench.explain.pipeline as pipeline

    def fail(*args, **kwargs):
        raise AssertionError("a done unit was computed again")

    monkeypatch.setattr(pipeline, "image_block", fail)
    monkeypatch.setattr(pipeline, "class_unit", fail)
    monkeypatch.setattr(pipeline, "sanity_unit", fail)
    again = workbench.explain("zoo:resnet_textures", out=computed.out, **KW)
    err = capsys.readouterr().err
    assert "stage images: skipping 8 done unit(s)" in err and "stage concepts: skipping 2 done unit(s)" in err
    _same(again, computed)


def test_other_arguments_on_the_same_out_are_an_error(computed):
    with pytest.raises(ExplainInputError, match=r"other arguments \(concepts: 2 \(this run: 3\)"):
        workbench.explain("zoo:resnet_textures", out=computed.out, **{**KW, "concepts": 3})


def _folder(path: Path, n: int, corrupt: bool = False) -> Path:
    from PIL import Image

    from workbench.data import planted_shapes

    path.mkdir(parents=True)
    data = planted_shapes(n, size=64, seed=3, rule="texture")
    for i, im in enumerate(data.images):
        Image.fromarray((im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            path / f"img{i}.png"
        )
    if corrupt:
        (path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zoo:resnet_textures", "--images", "{empty}"], "no image files"),
        (["zoo:no_such_model", "--planted", "4"], "does not load"),
        (["timm:not_a_timm_model", "--planted", "4"], "does not load"),
        (["zoo:resnet_textures", "--planted", "4", "--classes", "zebra"], "has no class 'zebra'"),
        (["zoo:resnet_textures", "--planted", "4", "--methods", "sallency"], "unknown method 'sallency'"),
        (["{model}", "--planted", "4"], "defines neither `model`"),
    ],
)
def test_bad_input_exits_with_code_2(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "model.py").write_text(
        "import torch\nnet = torch.nn.Linear(2, 2)\n"
    )  # no `model`, no build_model
    argv = ["explain", *[a.format(empty=tmp_path / "empty", model=tmp_path / "model.py") for a in args],
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "workbench explain: error:" in err and message in err, err
    assert not (tmp_path / "out" / "results.zarr").exists()  # nothing computed


def test_unreadable_image_is_skipped_with_a_warning(tmp_path, capsys):
    folder = _folder(tmp_path / "images", 2, corrupt=True)
    argv = ["explain", "zoo:resnet_textures", "--images", str(folder), "--methods", "saliency", "--concepts", "1",
            "--scale", "tiny", "--out", str(tmp_path / "out"), "--no-report", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipping 1 unreadable image(s)" in err and "broken.png" in err, err
    res = load_results(tmp_path / "out")
    assert res.complete and res.image_names == ["img0.png", "img1.png"]
    assert (
        res.meta["skipped_images"] == ["broken.png"] and (res.labels == -1).all()
    )  # a flat folder: no labels


def _cli(*extra: str) -> list[str]:
    return [sys.executable, "-m", "workbench.cli.main", "explain", *ARGS, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow  # a subprocess killed midway, then the resumed run (about 30 s on 2 busy cores)
def test_sigkill_midway_then_rerun_loses_nothing(computed, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli("--out", str(out)), env=_env(), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    flags = (
        out / "results.zarr" / "images_done" / "c"
    )  # one chunk file per finished block (False is not written)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if flags.is_dir() and any(flags.iterdir()):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished (or died) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = load_results(out)
    done = np.asarray(killed.group["images_done"][:])
    assert 1 <= done.sum() < len(done) and not killed.complete
    rerun = subprocess.run(_cli("--out", str(out)), env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"stage images: skipping {int(done.sum())} done unit(s)" in rerun.stderr, rerun.stderr
    _same(load_results(out), computed)


@pytest.mark.slow  # two torchrun ranks on the CPU (gloo), each importing torch and timm
def test_torchrun_two_ranks_equal_one_process(computed, tmp_path):
    out = tmp_path / "ranks"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "workbench.cli.main", "explain", *ARGS, "--out", str(out)]  # fmt: skip
    # the same thread count as the single-process reference: torchrun would set 1 thread per rank
    env = {**_env(), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "rank 0/2" in proc.stderr and "rank 1/2" in proc.stderr
    _same(load_results(out), computed)
