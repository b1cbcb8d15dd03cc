"""Serving the Explorer on 127.0.0.1 with a URL token (what ``workbench explore`` runs).

Panel serves the app (Bokeh's Tornado server). With a token, Bokeh's authentication hook
(:class:`bokeh.server.auth_provider.AuthProvider`) admits a request that carries ``?token=<token>`` (it then
sets an HTTP-only cookie with the token, which the page's websocket and later requests send back) or that
cookie; any other request is redirected to a page that answers 403.
"""

from __future__ import annotations

import hmac
import secrets
import socket
from collections.abc import Callable
from typing import Any

APP = "explorer"
COOKIE = "workbench_explore_token"
REFUSED = "/token-required"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_auth(token: str) -> Any:
    """A Bokeh ``AuthProvider`` admitting requests with ``?token=<token>`` or its cookie; others get 403."""
    from bokeh.server.auth_provider import AuthProvider
    from tornado.web import RequestHandler

    def valid(value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), token.encode())

    def get_user(handler: Any) -> str | None:
        if valid(handler.get_argument("token", None)):
            handler.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return "explorer"
        return "explorer" if valid(handler.get_cookie(COOKIE)) else None

    class Refused(RequestHandler):
        def get(self) -> None:
            self.set_status(403)
            self.write("403: this Explorer needs the token of the URL that `workbench explore` printed\n")

    class TokenAuth(AuthProvider):
        @property
        def get_user(self):
            return get_user

        @property
        def login_url(self) -> str:
            return REFUSED

        @property
        def login_handler(self):
            return Refused

    return TokenAuth()


def serve_explorer(
    session: Any,
    port: int = 0,
    token: bool = True,
    title: str = "Explorer",
    on_ready: Callable[[str], None] = print,
    **explorer_kwargs: Any,
) -> None:
    """Serve an :class:`~workbench.widgets.Explorer` of ``session`` (one per browser tab, all sharing the
    session's cache) on 127.0.0.1 until interrupted.

    Parameters
    ----------
    session
        The :class:`~workbench.explain.session.ExploreSession`.
    port
        The port (0: a free one).
    token
        Put a random token in the URL and refuse requests without it (403).
    title
        The page's title and heading.
    on_ready
        Called with the URL (token included) once the server listens.
    **explorer_kwargs
        Passed to each ``Explorer`` (``concepts``, ``concept_names``, ``top``).
    """
    import panel as pn

    from workbench.widgets.explorer import Explorer

    port = port or free_port()
    secret = secrets.token_urlsafe(24) if token else None

    def app() -> Any:
        return Explorer(session, title=title, **explorer_kwargs).panel()

    options = {} if secret is None else {"auth_provider": token_auth(secret)}
    server = pn.serve({APP: app}, port=port, address="127.0.0.1", show=False, start=False, title=title, verbose=False,
                      websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"], **options)  # fmt: skip
    url = f"http://127.0.0.1:{port}/{APP}" + ("" if secret is None else f"?token={secret}")
    server.start()
    on_ready(url)
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
