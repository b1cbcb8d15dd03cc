"""Explorer: the linked selection (every view follows the selected image), the filters (a concept or an atom
narrows the grid), the page staying responsive while the worker is busy, and ``workbench explore`` (the
URL token). The views' own rendering is tested with each widget; the browser test clicks through the app.

Tiny budgets (8 PlantedShapes images at 64 px, SAE 30 steps, MACO 4 steps): the tests check the wiring."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from workbench.explain.session import ExploreSession
from workbench.widgets import AttributionViewer, ConceptGallery, Explorer, MetricsBoard

BUDGETS = {"n_concepts": 3, "concept_designs": 4, "n_atoms": 16, "sae_steps": 30, "featviz_steps": 4}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def explorer():
    ex = Explorer.from_planted("zoo:resnet_textures", n=8, seed=0, **BUDGETS).wait()
    yield ex
    ex.session.close()


def other_class_image(ex: Explorer) -> int:
    """An image whose predicted class differs from the selected one's (so the concept view changes)."""
    p = ex.session.predictions
    return next(i for i in range(ex.session.n) if p[i] != p[ex.selected])


def test_every_view_follows_the_selected_image(explorer):
    ex, s = explorer, explorer.session
    j = other_class_image(ex)
    ex.select(j)
    ex.wait()
    assert ex.selected == j and ex.grid.selected == j
    av = ex.attribution_viewer
    assert isinstance(av, AttributionViewer) and torch.equal(av.images[0], s.images[j])
    assert av.ids == [j] and f"Image #{j}" in av._detail_info.object  # the grid's number, not position 0
    panel = av._metrics_pane.object  # one image: its curves and values, no "mean of 1 images" beside them
    assert f"image #{j}" in panel and 'data-scope="mean"' not in panel and "wb-mean" not in panel
    assert set(av.method_names) == set(s.methods) and set(av.curves) == set(s.methods)
    scores = s.fidelities(j).result()
    assert isinstance(ex.metrics_board, MetricsBoard)
    assert ex.metrics_board.stats["saliency"]["insertion AUC"].mean == pytest.approx(
        scores["saliency"].scores()["insertion AUC"]
    )
    c = int(s.predictions[j])
    assert isinstance(ex.gallery, ConceptGallery) and ex.gallery.class_name == s.class_names[c]
    assert ex.gallery.selected_image == j
    shown = [int(a) for a in re.search(r'data-atoms="([\d,]*)"', ex._atoms.object).group(1).split(",")]
    assert shown == [a for a, _v in s.image_atoms(ex._dictionary, j, 6)]
    assert f'data-image="{j}"' in ex._featviz.object
    assert 'data-featviz="empty"' not in ex._featviz.object  # every MACO image of the strip arrived
    assert ex.session.featviz("atom", shown[:3]).done()


def test_a_concept_filters_the_grid(explorer):
    ex, s = explorer, explorer.session
    c = int(s.predictions[ex.selected])
    k = int(ex.gallery.order[0])
    ex.gallery._on_action("concept", str(k))  # a click on the concept's card
    expected = s.images_where_concept(ex._concepts[c], k).tolist()
    assert ex.filter == {"kind": "concept", "class_id": c, "item": k}
    assert ex.grid.subset == expected and ex.grid.filtered_indices.tolist() == expected
    assert (
        f"{s.class_names[c]} concept {k}" in ex._banner.object
        and f"{len(expected)} of {s.n}" in ex._banner.object
    )
    ex._banner._handle_msg({"action": "clear", "value": "1"})  # the "show all images" button
    assert ex.filter is None and ex.grid.subset is None and len(ex.grid.filtered_indices) == s.n


def test_an_atom_filters_the_grid_and_selects_it_in_the_browser(explorer):
    ex, s = explorer, explorer.session
    atom = s.image_atoms(ex._dictionary, ex.selected, 6)[-1][0]
    ex._atoms._handle_msg({"action": "atom", "value": str(atom)})  # a click on the atom's tile
    assert ex.atom_browser.selected == atom and ex.filter == {"kind": "atom", "item": atom}
    expected = s.images_where_atom(ex._dictionary, atom).tolist()
    assert ex.grid.filtered_indices.tolist() == expected and 1 <= len(expected) <= 2  # the top quarter of 8
    assert f'data-atom="{atom}"' in ex._atoms.object and "wb-on" in ex._atoms.object
    hidden = next(i for i in range(s.n) if i not in expected)
    ex.select(hidden)  # selecting an image the filter hides clears the filter
    assert ex.filter is None and ex.grid.subset is None
    ex.wait()


def test_the_page_answers_while_the_worker_is_busy(explorer):
    ex, s = explorer, explorer.session
    cached = ex.selected
    fresh = ExploreSession(
        s.model, s.images, labels=s.labels, methods={"held": lambda m, x, y: held(m, x, y)}, **BUDGETS
    )
    gate, started = threading.Event(), threading.Event()

    def held(model, x, y):
        from workbench.attribution import saliency

        started.set()
        gate.wait(60)
        return saliency(model, x, y)

    ex2 = Explorer(fresh)
    try:
        assert started.wait(60)  # the worker is inside the held method (image 0's map)
        # a cheap interaction: paging the grid and picking another image are answered at once
        ex2.grid.next_page()
        ex2.select(3)
        assert ex2.selected == 3 and ex2.gallery is None
        assert (
            'data-view="where" data-image="3"' in ex2._where.objects[0].object
        )  # "computing the maps of image #3"
        assert 'data-busy="1"' in ex2._status.object and "held map of image 0" in ex2._status.object
        # a result cached in the other session is shown while this worker is still busy
        assert ex.session.attributions(cached).done()
    finally:
        gate.set()
    ex2.wait()
    assert (
        torch.equal(ex2.attribution_viewer.images[0], s.images[3]) and 'data-busy="0"' in ex2._status.object
    )
    fresh.close()


def test_served_results_touch_the_document_on_the_server_loop_only(explorer):
    """Under ``panel serve`` results are computed on the worker thread; the Bokeh document they update may only
    be touched from the server's loop thread: a next-tick callback added from another thread while Panel flushes
    the document's held events (it does so around every model update) can be lost, and a view then never fills
    in (how the served browser test once waited 300 s for a fidelity board that never came). A stand-in document
    records the thread of each call; the "server loop" is an asyncio loop on its own thread."""
    import asyncio

    class Document:
        def __init__(self):
            self.calls = []

        def add_next_tick_callback(self, fn):
            self.calls.append((threading.current_thread(), fn))

    ex = explorer
    loop = asyncio.new_event_loop()
    server = threading.Thread(target=loop.run_forever, daemon=True)
    server.start()
    saved = ex._doc, ex._loop, ex._loop_thread
    doc = Document()
    ex._doc, ex._loop, ex._loop_thread = doc, loop, server
    try:
        fns = [lambda k=k: k for k in range(50)]
        # the hand-off from worker threads, one after the other
        workers = [threading.Thread(target=ex._dispatch, args=(fn,)) for fn in fns]
        for t in workers:
            t.start()
            t.join()
        ex._dispatch(lambda: None)  # from this (not the loop's) thread too
        deadline = time.monotonic() + 10
        while len(doc.calls) < 51 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(doc.calls) == 51
        assert all(thread is server for thread, _fn in doc.calls), {t.name for t, _fn in doc.calls}
        assert [fn() for _t, fn in doc.calls[:50]] == list(range(50))  # in the order they were handed over
    finally:
        ex._doc, ex._loop, ex._loop_thread = saved
        loop.call_soon_threadsafe(loop.stop)
        server.join(5)
        loop.close()


def test_served_results_wait_for_the_page_to_load(explorer):
    """Panel 1.9 drops a layout's change made after the browser pulled the document but before the page's
    onload (its hold drains those events, assuming the document is serialized later): reproduced with a bare
    ``pn.Column`` served to Chromium, its new child never appeared when DocumentReady came 3 s after the pull,
    and the served Explorer's fidelity board went missing that way in loaded test runs (the page's first render
    is slow there). So results that arrive before the onload are held, then applied in order by it, on the
    server's loop; later ones take the next tick as usual."""
    import asyncio

    class Document:
        def __init__(self):
            self.calls = []

        def add_next_tick_callback(self, fn):
            self.calls.append(fn)

    ex = explorer
    loop = asyncio.new_event_loop()
    server = threading.Thread(target=loop.run_forever, daemon=True)
    server.start()
    saved = ex._doc, ex._loop, ex._loop_thread, ex._page_ready
    doc, applied = Document(), []
    ex._doc, ex._loop, ex._loop_thread, ex._page_ready = doc, loop, server, False
    try:
        for k in range(5):  # results from the worker before the page loaded
            t = threading.Thread(
                target=ex._dispatch, args=(lambda k=k: applied.append((k, threading.current_thread())),)
            )
            t.start()
            t.join()
        time.sleep(0.1)
        assert applied == [] and doc.calls == [], "nothing touches the page before it has loaded"
        loop.call_soon_threadsafe(ex._on_page_loaded)  # Panel runs onload callbacks on the server's loop
        deadline = time.monotonic() + 10
        while len(applied) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [k for k, _t in applied] == list(range(5)) and all(t is server for _k, t in applied)
        ex._dispatch(lambda: applied.append("after"))  # once loaded: the document's next tick
        while not doc.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(doc.calls) == 1 and len(applied) == 5
    finally:
        ex._doc, ex._loop, ex._loop_thread, ex._page_ready = saved
        loop.call_soon_threadsafe(loop.stop)
        server.join(5)
        loop.close()


def test_bad_arguments(explorer):
    with pytest.raises(ValueError, match="images"):
        Explorer("zoo:resnet_textures")
    with pytest.raises(ValueError, match="not beside"):
        Explorer(explorer.session, n_atoms=3)
    with pytest.raises(ValueError, match="not trained|not computed"):
        explorer.filter_by_concept(99, 0)


# ---------------------------------------------------------------- workbench explore (the command line)


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    return subprocess.Popen([sys.executable, "-m", "workbench.cli.main", "explore", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip


def _status(url: str, headers: dict | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def test_cli_serves_with_a_token_and_refuses_requests_without_it():
    proc = _cli("zoo:resnet_textures", "--planted", "16")
    try:
        deadline, line, lines = time.monotonic() + 180, "", []
        while time.monotonic() < deadline and "token=" not in line:
            line = proc.stdout.readline()
            lines.append(line)
            assert line or proc.poll() is None, "".join(lines)
        match = re.search(r"(http://127\.0\.0\.1:\d+/explorer)\?token=([\w-]+)", line)
        assert match, "".join(lines)
        base, token = match.groups()
        assert _status(base)[0] == 403  # redirected to the refusal page
        assert _status(f"{base}?token=not-{token}")[0] == 403
        code, page = _status(f"{base}?token={token}")
        assert code == 200 and "<title>Explorer" in page
        # the cookie the token sets (what the page's websocket sends) admits the next request too
        cookie = f"workbench_explore_token={token}"
        assert _status(base, {"Cookie": cookie})[0] == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def test_cli_bad_input_exits_with_code_2(tmp_path):
    proc = _cli("zoo:resnet_textures", "--images", str(tmp_path))
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 2 and "no image files" in out
