"""A `panel serve` app showing the Explorer on the zoo texture CNN, for the browser tests (and by hand).

    panel serve tests/browser/apps/explorer_app.py --address 127.0.0.1 --port 5006

WB_APP_N PlantedShapes images (texture rule, the model's) at 64 px; small budgets so that a page fills in
seconds on a CPU: saliency and gradient x input, 4 CRAFT concepts per class (8 Sobol designs), a TopK SAE of
32 atoms trained for 100 steps, MACO images of 16 steps. The ExploreSession is built once per server
(``pn.state.as_cached``): every page (the test's readiness probes too) shares its cache.

Under the Explorer, two buttons used by the responsiveness test: "hold the worker" queues a job that
occupies the session's background thread until "release" is clicked (a stand-in for a long computation
whose end the test decides), so the test can click while the worker is busy.

Environment variables (all optional): WB_APP_N (images, default 16), WB_APP_SEED (default 0),
WB_APP_SLOW_ONLOAD (seconds, default 0: off): each page gets its own session whose worker is held until the
browser has rendered the page (its DocumentReady), and Panel's onload then comes that many seconds late, as a
slow first render on a loaded machine makes it: the page's first results arrive in between, when Panel 1.9
drops a layout's change (the regression test of the Explorer's hold-until-onload).
"""

import os
import threading

import torch

N = int(os.environ.get("WB_APP_N", "16"))
SEED = int(os.environ.get("WB_APP_SEED", "0"))
BUDGETS = {"n_concepts": 4, "concept_designs": 8, "n_atoms": 32, "sae_steps": 100, "featviz_steps": 16}


def make_session(n: int = N, seed: int = SEED):
    """``(session, data)``: the ExploreSession of the app and its PlantedShapes."""
    from workbench.data import planted_shapes
    from workbench.explain.session import ExploreSession

    data = planted_shapes(n, size=64, seed=seed, rule="texture")
    session = ExploreSession("zoo:resnet_textures", data.images, labels=data.labels, masks=data.object_masks,
                             seed=seed, **BUDGETS)  # fmt: skip
    session.dictionary()  # start training at once
    return session, data


def wait_reporting(event: threading.Event, report, limit: float = 120.0) -> None:
    """Wait for ``event`` (at most ``limit`` s, the tests' limits), reporting progress so that the worker's
    close (the server stopping) ends the wait at once."""
    for _ in range(int(limit / 0.1)):
        report(0, 1)
        if event.wait(0.1):
            return


if __name__.startswith("bokeh"):  # run by `panel serve`
    import logging

    torch.set_num_threads(1)
    # the Explorer's hand-offs in the server's log (the browser test prints its tail on a timeout)
    logging.getLogger("workbench.widgets.explorer").setLevel(logging.DEBUG)
    import panel as pn

    from workbench.widgets import Explorer

    slow_onload = float(os.environ.get("WB_APP_SLOW_ONLOAD", "0"))
    if slow_onload:
        from panel.io.state import state

        doc, page_up = pn.state.curdoc, threading.Event()
        session, data = make_session()
        session._worker.submit(lambda report: wait_reporting(page_up, report), "held until the page is up (test)",
                               priority=-1)  # fmt: skip
        # (default arguments: Bokeh clears this module's globals when its session ends)
        pn.state.on_session_destroyed(lambda _ctx, up=page_up, s=session: (up.set(), s.close()))
        releases = pn.state.cache.setdefault("explorer_app_releases", {})
        releases[doc] = page_up
        if "explorer_app_on_load" not in pn.state.cache:  # once per server: Panel's onload, late
            on_load = pn.state.cache["explorer_app_on_load"] = state._schedule_on_load

            def late_on_load(doc, event, releases=releases, on_load=on_load, ms=int(slow_onload * 1000)):
                if doc in releases:
                    releases.pop(doc).set()  # the browser has the page: results may come now
                doc.add_timeout_callback(lambda: on_load(doc, event), ms)

            state._schedule_on_load = late_on_load
    else:
        session, data = pn.state.as_cached("explorer_app", make_session)
    explorer = Explorer(session, concepts=data.concepts, concept_names=data.concept_names,
                        title="Explorer \u00b7 zoo:resnet_textures on PlantedShapes")  # fmt: skip
    gate = threading.Event()
    hold = pn.widgets.Button(name="hold the worker", css_classes=["wb-test-hold"], width=140)
    release = pn.widgets.Button(name="release", css_classes=["wb-test-release"], width=100)

    def held(report):
        wait_reporting(gate, report)

    def on_hold(_event):
        gate.clear()
        session._worker.submit(held, "held job (test)", priority=-1)

    hold.on_click(on_hold)
    release.on_click(lambda _event: gate.set())
    pn.Column(explorer, pn.Row(hold, release), sizing_mode="stretch_width").servable(title="Explorer")
