"""Fixtures for the browser tests: a `panel serve` subprocess and headless Debian Chromium via Playwright.

Chromium is the system one (/usr/bin/chromium, installed by scripts/install_chromium.sh); Playwright's
own browser download is never used. Screenshots go to tests/browser/screenshots/ (gitignored).
"""

from __future__ import annotations

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
            pytest.fail(f"server exited with code {proc.returncode} before answering {url}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
            last = err
        time.sleep(0.5)
    pytest.fail(f"server did not answer {url} within {timeout:.0f}s (last error: {last}):\n{log.read_text()[-4000:]}")


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


def start_server(cmd: list[str], url: str, log: Path, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
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


@pytest.fixture(scope="session")
def dataset_viewer_server(tmp_path_factory) -> Iterator[dict]:
    """`panel serve` of apps/dataset_viewer_app.py on a free local port.

    Yields ``{"url", "n", "seed"}``: the app's URL and the PlantedShapes arguments it shows.
    """
    port = free_port()
    log = tmp_path_factory.mktemp("panel_serve") / "panel_serve.log"
    app = APPS / "dataset_viewer_app.py"
    cmd = [
        sys.executable, "-m", "panel", "serve", str(app),
        "--port", str(port), "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/{app.stem}"
    proc = start_server(cmd, url, log, env={"WB_APP_N": str(APP_N), "WB_APP_SEED": str(APP_SEED)})
    yield {"url": url, "n": APP_N, "seed": APP_SEED}
    stop(proc)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless /usr/bin/chromium through Playwright's sync API, with a fresh user-data-dir."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run `bash scripts/install_chromium.sh` (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
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
