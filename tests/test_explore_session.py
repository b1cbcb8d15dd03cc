"""ExploreSession (the Explorer's compute) and the BackgroundWorker under it: caching per (model, image,
method, parameters), one computation per key even while it runs, priorities, and the results against the
method packages called directly.

Tiny budgets throughout (8 PlantedShapes images at 64 px, SAE 30 steps, MACO 4 steps): these tests check
plumbing, not the quality of concepts or atoms (their own tests do)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest
import torch

from workbench._core.background import BackgroundWorker, gather
from workbench.attribution import gradient_input, saliency
from workbench.data import planted_shapes
from workbench.explain.session import ExploreSession
from workbench.models import load_model

BUDGETS = {"n_concepts": 3, "concept_designs": 4, "n_atoms": 16, "sae_steps": 30, "featviz_steps": 4}


@pytest.fixture(scope="module")
def model():
    return load_model("zoo:resnet_textures")


@pytest.fixture(scope="module")
def data():
    return planted_shapes(8, size=64, seed=0, rule="texture")


@pytest.fixture(scope="module")
def session(model, data):
    s = ExploreSession(model, data.images, labels=data.labels, **BUDGETS)
    yield s
    s.close()


def counted(calls):
    """An attribution method that records its calls: saliency times ``scale``."""

    def method(model, x, y, scale=1.0):
        calls.append(scale)
        return saliency(model, x, y) * scale

    return method


def test_attribution_equals_the_method_called_directly(session, model, data):
    # the session explains each image for its predicted class
    x, y = data.images[2:3], session.predictions[2:3]
    assert torch.equal(session.attribution(2, "saliency").result(60), saliency(model, x, y)[0])
    maps = session.attributions(2).result(60)
    assert set(maps) == {"saliency", "gradient_input"}
    assert torch.allclose(maps["gradient_input"], gradient_input(model, x, y)[0])


def test_second_request_is_a_cache_hit_and_parameters_are_part_of_the_key(model, data):
    calls: list[float] = []
    method = counted(calls)
    s = ExploreSession(model, data.images[:4], methods={"a": method, "b": method},
                       method_params={"a": {"scale": 1.0}, "b": {"scale": 2.0}}, **BUDGETS)  # fmt: skip
    try:
        first = s.attribution(0, "a").result(60)
        info = s.cache_info()
        again = s.attribution(0, "a")
        assert again.done() and torch.equal(again.result(), first)
        assert s.cache_info()["hits"] == info["hits"] + 1 and s.cache_info()["misses"] == info["misses"]
        assert calls == [1.0] and s.calls["attribution"] == 1
        # same function, other parameters: another key, computed once more
        assert torch.allclose(s.attribution(0, "b").result(60), 2 * first)
        assert calls == [1.0, 2.0]
        # another image: another key
        s.attribution(1, "a").result(60)
        assert calls == [1.0, 2.0, 1.0] and s.calls["attribution"] == 3
    finally:
        s.close()


def test_a_request_while_the_first_still_runs_waits_for_it(model, data):
    gate, started, calls = threading.Event(), threading.Event(), []

    def slow(model, x, y):
        calls.append(1)
        started.set()
        gate.wait(30)
        return saliency(model, x, y)

    s = ExploreSession(model, data.images[:2], methods={"slow": slow}, **BUDGETS)
    try:
        first = s.attribution(0, "slow")
        assert started.wait(30)
        second = s.attribution(0, "slow")  # answered at once, without a second computation
        assert second is first and not second.done()
        gate.set()
        second.result(60)
        assert calls == [1] and s.cache_info()["hits"] == 1
    finally:
        gate.set()
        s.close()


def test_fidelity_matches_the_metrics_and_computes_a_queued_map_inline(model, data):
    from workbench.metrics import deletion, insertion

    s = ExploreSession(model, data.images[:3], **BUDGETS)
    try:
        f = s.fidelity(1, "saliency").result(60)  # its map was never requested: computed inside the job
        assert s.calls["attribution"] == 1 and s.attribution(1, "saliency").done()
        x, y = data.images[1:2], s.predictions[1:2]
        amap = saliency(model, x, y)
        assert torch.allclose(f.deletion.auc, deletion(model, x, y, amap, steps=10).auc)
        assert torch.allclose(f.insertion.curve, insertion(model, x, y, amap, steps=10).curve)
        assert set(f.scores()) == {"deletion AUC", "insertion AUC", "MuFidelity"}
        assert -1.0 <= f.mufidelity <= 1.0  # a correlation
    finally:
        s.close()


def test_concepts_of_a_class(session):
    c = int(session.predictions[0])
    cc = session.concepts(c).result(120)
    n, r = session.n, BUDGETS["n_concepts"]
    assert cc.image_importances.shape == (n, r) and cc.image_maps.shape == (n, r, 64, 64)
    # fitted on the images predicted as the class (there are enough crops for 3 concepts in each)
    assert set(cc.fitted) == set(np.flatnonzero(session.predictions.numpy() == c))
    assert torch.allclose(cc.importances, cc.image_importances[torch.as_tensor(cc.fitted)].mean(0))
    assert session.concepts(c).result() is cc and session.calls["concepts"] == 1  # fitted once per class
    order = [k for k, _v in session.image_concepts(cc, 0)]
    assert order == cc.image_importances[0].argsort(descending=True).tolist()
    # the filter: the top quarter (2 of 8) by mean code, codes > 0
    k = int(cc.importances.argmax())
    scores = cc.image_scores[:, k]
    expected = sorted(int(i) for i in scores.argsort(descending=True)[:2] if scores[i] > 0)
    assert session.images_where_concept(cc, k).tolist() == expected


def test_dictionary_atoms_and_filter(session):
    d = session.dictionary().result(120)
    assert d.stats.image_max.shape == (session.n, BUDGETS["n_atoms"])
    atoms = session.image_atoms(d, 3, k=4)
    values = [v for _a, v in atoms]
    assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
    assert [a for a, _v in atoms] == d.stats.image_max[3].argsort(descending=True)[: len(atoms)].tolist()
    a = atoms[0][0]
    where = session.images_where_atom(d, a)
    col = d.stats.image_max[:, a]
    assert 1 <= len(where) <= 2 and all(col[i] >= col.sort(descending=True).values[1] for i in where)


def test_featviz_is_cached_per_item(session):
    first = session.featviz("atom", [0, 1]).result(120)
    calls = session.calls["featviz"]
    second = session.featviz("atom", [1, 2]).result(120)  # only atom 2 is optimized
    assert session.calls["featviz"] == calls + 1
    assert second[1] is first[1] and second[2].shape == (3, 64, 64)
    assert session.featviz("atom", [0, 2]).done()  # everything cached: answered at once
    c = int(session.predictions[0])
    images = session.featviz("concept", [0], c).result(120)
    assert images[0].shape == (3, 64, 64) and 0 <= float(images[0].min()) <= float(images[0].max()) <= 1


def test_bad_input_is_refused_at_the_boundary(model, data, session):
    with pytest.raises(KeyError, match="saliency"):
        ExploreSession(model, data.images, methods=["salency"])
    with pytest.raises(ValueError, match="input size"):
        ExploreSession(model, torch.rand(2, 3, 32, 32))
    with pytest.raises(IndexError, match="0..7"):
        session.attribution(8, "saliency")
    with pytest.raises(KeyError, match="unknown"):
        session.attribution(0, "occlusion")
    with pytest.raises(ValueError, match="out of range"):
        session.concepts(9)


def test_a_failed_job_is_not_cached(model, data):
    fail = [True]

    def flaky(model, x, y):
        if fail[0]:
            raise RuntimeError("first call fails")
        return saliency(model, x, y)

    s = ExploreSession(model, data.images[:2], methods={"flaky": flaky}, **BUDGETS)
    try:
        with pytest.raises(RuntimeError, match="first call fails"):
            s.attribution(0, "flaky").result(60)
        fail[0] = False
        assert s.attribution(0, "flaky").result(60).shape == (64, 64)  # asked again: computed again
    finally:
        s.close()


def test_worker_runs_by_priority_and_reports_progress():
    events, order, gate = [], [], threading.Event()
    worker = BackgroundWorker(on_progress=lambda p: events.append((p.task, p.state)))
    try:
        worker.submit(lambda report: gate.wait(30), "hold", priority=0)
        slow = worker.submit(lambda report: order.append("long"), "long", priority=3)
        quick = worker.submit(lambda report: (report(1, 2), order.append("quick")), "quick", priority=0)
        gate.set()
        gather({"a": slow, "b": quick}).result(30)
        assert order == ["quick", "long"]  # queued later, but a lower priority number runs first
        assert ("quick", "running") in events and events[-1] == ("long", "done")
    finally:
        worker.close(wait=True)


def test_closing_stops_the_running_job_and_fails_what_gathers_the_cancelled_ones():
    """A server stopped while an SAE trains exits at once: the running job stops at its next progress report
    (CancelledError in its future), queued jobs are cancelled, and a gather of them completes with
    CancelledError (it used to raise inside its callback and never complete)."""
    events, started = [], threading.Event()
    worker = BackgroundWorker(on_progress=lambda p: events.append((p.task, p.state)))

    def training(report):
        started.set()
        for step in range(10_000):
            report(step, 10_000)
            time.sleep(0.01)

    running = worker.submit(training, "training")
    queued = worker.submit(lambda report: "never", "queued")
    both = gather({"a": running, "b": queued})
    assert started.wait(30)
    t0 = time.monotonic()
    worker.close(wait=True)
    assert time.monotonic() - t0 < 5, "close waited for the whole training"
    assert isinstance(running.exception(5), CancelledError) and queued.cancelled()
    assert isinstance(both.exception(5), CancelledError)
    assert ("training", "cancelled") in events


def test_the_caller_is_never_blocked_by_a_running_job(session):
    # while the worker is held, requests return at once and finished results are read
    trained = session.dictionary().result(120)
    gate, started = threading.Event(), threading.Event()
    session._worker.submit(lambda report: (started.set(), gate.wait(30)), "hold", priority=-1)
    try:
        assert started.wait(30)
        assert session.dictionary().done()  # a cached result is answered while the worker is busy
        assert len(session.images_where_atom(trained, 0)) <= 2
        fut = session.attribution(5, "gradient_input")
        assert not fut.done() and any(
            t.task == "hold" and t.state == "running" for t in session.tasks.values()
        )
    finally:
        gate.set()
    fut.result(60)
    session.idle(60)
    assert not session.tasks


def test_a_dictionary_of_a_few_images_trains_on_all_their_rows():
    # zoo:resnet_shapes has an 8 x 8 map at layer4: 2 images give 128 rows, fewer than one batch of 256
    data = planted_shapes(2, size=64, seed=1)
    s = ExploreSession("zoo:resnet_shapes", data.images, **BUDGETS)
    try:
        d = s.dictionary().result(120)
        assert s.layer == "layer4" and d.activations.shape[2:] == (8, 8)
        assert d.stats.image_max.shape == (2, BUDGETS["n_atoms"])
    finally:
        s.close()


def test_a_queued_map_is_found_while_another_thread_adds_requests(model, data):
    """Several front ends share one session (every page of a served Explorer): while a job looks up the
    queued map it needs, another thread adds entries to the cache. A lookup that scanned the cache unlocked
    failed here with "dictionary changed size during iteration" (the padding makes such a scan long enough
    for the other thread to land inside it every time); the job is now found from its future directly."""
    from concurrent.futures import Future

    s = ExploreSession(model, data.images[:3], **BUDGETS)
    gate = threading.Event()
    try:
        s._worker.submit(lambda report: gate.wait(60), "hold", priority=-10)
        with s._lock:
            for n in range(200_000):
                s._cache[("pad", n)] = Future()
        fut = s.attribution(1, "saliency")  # queued behind the held job, after the padding
        stop = threading.Event()

        def add_requests():
            n = 0
            while not stop.is_set():
                with s._lock:
                    s._cache[("added", n)] = Future()
                n += 1

        adder = threading.Thread(target=add_requests)
        adder.start()
        try:
            amap = s._need(fut)  # claims the queued job and computes it here
        finally:
            stop.set()
            adder.join()
        assert torch.equal(amap, saliency(model, data.images[1:2], s.predictions[1:2])[0])
    finally:
        gate.set()
        s.close()
