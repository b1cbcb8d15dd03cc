"""Fixtures for the browser tests: a `panel serve` subprocess and headless Debian Chromium via Playwright.

Chromium is the system one (/usr/bin/chromium, installed by scripts/install_chromium.sh); Playwright's
own browser download is never used. Screenshots go to tests/browser/screenshots/ (gitignored).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# What the dataset viewer app shows (the tests regenerate the same data to know the expected text).
APP_N = 64
APP_SEED = 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"server exited with code {proc.returncode} before answering {url}:\n{log.read_text()[-4000:]}"
            )
        try:
            # A panel app builds its page on the first request (the AtomBrowser app trains two SAEs: ~20 s,
            # minutes on a loaded machine): wait for that answer, since every timed-out poll starts
            # another session that the server builds too.
            wait = max(5.0, min(240.0, deadline - time.monotonic()))
            with urllib.request.urlopen(url, timeout=wait) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            last = err
        time.sleep(0.5)
    pytest.fail(
        f"server did not answer {url} within {timeout:.0f}s (last error: {last}):\n{log.read_text()[-4000:]}"
    )


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started in its own process group (it may have children, e.g. kernels)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def start_server(
    cmd: list[str], url: str, log: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(url, proc, timeout, log)
    except BaseException:
        stop(proc)
        raise
    return proc


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def load_app(name: str):
    """The module of ``apps/<name>.py``, imported from its file (the apps folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, APPS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def app_module():
    """``app_module(name)``: a test app's module, to recompute what the page should show."""
    return load_app


def serve_app(tmp_path_factory, name: str, env: dict[str, str], timeout: float = 180) -> Iterator[dict]:
    """`panel serve` of ``apps/<name>.py`` on a free local port for the duration of a fixture:
    yields ``{"url", "log"}`` and stops the server afterwards, errors included."""
    port = free_port()
    log = tmp_path_factory.mktemp(f"panel_serve_{name}") / "panel_serve.log"
    app = APPS / f"{name}.py"
    cmd = [
        sys.executable, "-m", "panel", "serve", str(app),
        "--port", str(port), "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/{app.stem}"
    proc = start_server(cmd, url, log, env=env, timeout=timeout)
    try:
        yield {"url": url, "log": log}
    finally:
        stop(proc)


def _served(tmp_path_factory, name: str, n: int, seed: int, timeout: float = 180, **env: str):
    extra = {f"WB_APP_{k.upper()}": v for k, v in env.items()}
    for info in serve_app(
        tmp_path_factory, name, {"WB_APP_N": str(n), "WB_APP_SEED": str(seed), **extra}, timeout
    ):
        yield {**info, "n": n, "seed": seed}


@pytest.fixture(scope="session")
def dataset_viewer_server(tmp_path_factory) -> Iterator[dict]:
    """apps/dataset_viewer_app.py served: ``{"url", "log", "n", "seed"}`` (the PlantedShapes it shows)."""
    yield from _served(tmp_path_factory, "dataset_viewer_app", APP_N, APP_SEED)


@pytest.fixture(scope="session")
def attribution_viewer_server(tmp_path_factory) -> Iterator[dict]:
    """apps/attribution_viewer_app.py served: ``{"url", "log", "n", "seed"}``."""
    yield from _served(tmp_path_factory, "attribution_viewer_app", 6, 0)


@pytest.fixture(scope="session")
def attribution_viewer_unsure_server(tmp_path_factory) -> Iterator[dict]:
    """The same app with its model's logits divided by 30 (WB_APP_TEMPERATURE): a model as unsure of itself
    as a 1000-class model on a photo, whose deletion / insertion scores stay near 1 / 5 classes."""
    yield from _served(tmp_path_factory, "attribution_viewer_app", 6, 0, temperature="30")


@pytest.fixture(scope="module")
def metrics_board_server(tmp_path_factory) -> Iterator[dict]:
    """apps/metrics_board_app.py served: ``{"url", "log", "n", "seed"}``."""
    yield from _served(tmp_path_factory, "metrics_board_app", 32, 0)


@pytest.fixture(scope="module")
def atom_browser_server(tmp_path_factory) -> Iterator[dict]:
    """apps/atom_browser_app.py served (it trains its SAEs first, about 20 s: a longer start-up limit)."""
    yield from _served(tmp_path_factory, "atom_browser_app", 96, 0, timeout=300)


@pytest.fixture(scope="module")
def blindspot_server(tmp_path_factory) -> Iterator[dict]:
    """apps/blindspot_comparer_app.py served."""
    yield from _served(tmp_path_factory, "blindspot_comparer_app", 80, 0, timeout=300)


@pytest.fixture(scope="module")
def concept_gallery_server(tmp_path_factory) -> Iterator[dict]:
    """apps/concept_gallery_app.py served: ``{"url", "log", "n", "seed"}``."""
    yield from _served(tmp_path_factory, "concept_gallery_app", 6, 0)


@pytest.fixture(scope="module")
def featviz_canvas_server(tmp_path_factory) -> Iterator[dict]:
    """apps/featviz_canvas_app.py served: ``{"url", "log", "n", "seed"}`` (n and seed unused)."""
    yield from _served(tmp_path_factory, "featviz_canvas_app", 0, 0)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless /usr/bin/chromium through Playwright's sync API, with a fresh user-data-dir."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: run `bash scripts/install_chromium.sh` (apt-get install chromium)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright Python package is not installed"
    )
    profile = tempfile.mkdtemp(prefix="wb-chromium-")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


class RequestLog:
    """Every URL a page requested, to prove that nothing left the machine."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, request) -> None:
        self.urls.append(request.url)

    def external(self) -> list[str]:
        out = []
        for url in self.urls:
            parsed = urlparse(url)
            if parsed.scheme in ("data", "blob", "about", "chrome", "chrome-extension"):
                continue
            if parsed.hostname not in LOCAL_HOSTS:
                out.append(url)
        return out


@pytest.fixture
def page(chromium) -> Iterator[tuple[object, RequestLog, list[str]]]:
    """A new page with a request log and a list of console errors."""
    page = chromium.new_page()
    requests = RequestLog()
    errors: list[str] = []
    page.on("request", requests)
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page, requests, errors
    finally:
        page.close()


# ---------------------------------------------------------------- JupyterLab

LAB_NOTEBOOK_CELLS = [
    "from workbench.data.planted import planted_shapes\n"
    "from workbench.widgets import DatasetViewer\n"
    "\n"
    f"data = planted_shapes(24, seed={APP_SEED})\n"
    "predictions = data.labels.clone()\n"
    "predictions[::5] = (predictions[::5] + 1) % len(data.class_names)  # a few mistakes, no model needed\n"
    "viewer = DatasetViewer(\n"
    "    data.images, labels=data.labels, predictions=predictions, class_names=data.class_names,\n"
    "    masks=data.object_masks, concepts=data.concepts, concept_names=data.concept_names,\n"
    "    columns=6, max_items=12, title='DatasetViewer in JupyterLab',\n"
    ")\n"
    "viewer",
]


def write_kernelspec(root: Path) -> Path:
    """A kernelspec 'python3' that runs this interpreter, under ``root``/kernels (for JUPYTER_PATH)."""
    import json

    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (workbench tests)",
                "language": "python",
            }
        )
    )
    return root


def write_notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory) -> Iterator[dict]:
    """`jupyter lab` without token on a free port, in a temporary root with `viewer.ipynb`.

    Every Jupyter directory (config, data, runtime, settings, workspaces) is temporary, the kernel
    is this interpreter, and the server's own network features (news, update checks, the PyPI
    extension manager) are off. Yields ``{"url", "root", "log"}``.
    """
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed")
    base = tmp_path_factory.mktemp("jupyter_lab")
    root = base / "root"
    root.mkdir()
    write_notebook(root / "viewer.ipynb", LAB_NOTEBOOK_CELLS)
    jupyter_path = write_kernelspec(base / "share")
    # No "get notified about Jupyter news?" popup over the page (and no news fetching).
    news = base / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {
        "JUPYTER_PATH": os.pathsep.join([str(jupyter_path), os.environ.get("JUPYTER_PATH", "")]).rstrip(
            os.pathsep
        ),
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    port = free_port()
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        f"--port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--PasswordIdentityProvider.hashed_password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers often run as root
        cmd.append("--allow-root")
    log = base / "jupyter_lab.log"
    url = f"http://127.0.0.1:{port}"
    proc = start_server(cmd, f"{url}/api/status", log, env=env, timeout=180)
    yield {"url": url, "root": root, "log": log}
    stop(proc)


def shutdown_sessions(url: str, name: str) -> None:
    """Shut down the kernels of notebook ``name`` in the Lab at ``url`` (leave the shared Lab as found)."""
    import json

    with urllib.request.urlopen(f"{url}/api/sessions", timeout=30) as resp:
        sessions = json.load(resp)
    for session in sessions:
        if session.get("path", "").endswith(name):
            req = urllib.request.Request(f"{url}/api/sessions/{session['id']}", method="DELETE")
            urllib.request.urlopen(req, timeout=30).close()


@pytest.fixture
def lab_notebook(jupyter_lab) -> Iterator[object]:
    """``lab_notebook(name, cells) -> url``: writes notebook ``name`` into the shared Lab's root and returns the
    URL that opens it in a workspace of its own (so no other test's Lab page reopens it); its kernels are
    shut down after the test."""
    written: list[str] = []

    def make(name: str, cells: list[str]) -> str:
        write_notebook(jupyter_lab["root"] / name, cells)
        written.append(name)
        return f"{jupyter_lab['url']}/lab/workspaces/{Path(name).stem}/tree/{name}"

    try:
        yield make
    finally:
        for name in written:
            shutdown_sessions(jupyter_lab["url"], name)


def open_offline(page, html: Path) -> list[str]:
    """Open the file ``html`` with every request outside it refused (the network is "down"); return the
    refused URLs. An offline report must refuse nothing."""
    blocked: list[str] = []

    def only_the_file(route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:", "about:")):
            route.continue_()
        else:  # record and refuse whatever would leave the file
            blocked.append(url)
            route.abort()

    page.route("**/*", only_the_file)
    page.goto(html.as_uri(), wait_until="load", timeout=60_000)
    page.wait_for_timeout(500)  # anything a script would fetch after load shows up by now
    return blocked
