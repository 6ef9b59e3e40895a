"""The bridge's HTTPS site: the dialer page, its assets and SIP over secure WebSocket.

Theory of operation: :func:`start_https` builds one aiohttp application on the TLS context it
is given (from :mod:`sip_gateway.tls`): ``/`` serves the dialer page, ``/static/`` its assets
(``jssip.bundle.js`` there is built from npm by ``make run``/``make test``), the WebSocket
path hands connections to the SIP WebSocket service (RFC 7118), ``/ops`` serves the ops page
(``static/ops.html``, under a Content-Security-Policy that allows only its own files). Every
response carries HSTS (``max-age`` plus ``includeSubDomains``), ``nosniff`` and our ``Server``
header. The ops API mounts on the same application. Nothing here reads settings: ``bridge.app``
passes values.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sip_gateway.aio.websocket import SipWebSocketService

from .http_limits import GuardedSite, HttpLimits

__all__ = ["STATIC_DIR", "HttpsSite", "start_https"]

STATIC_DIR = Path(__file__).with_name("static")
"""The dialer page and its assets."""
_HSTS_KEY = web.AppKey("hsts_max_age", int)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpsSite:
    """Where and how the HTTPS site listens.

    Attributes:
        host: the address to listen on.
        port: the port (0: any free one).
        hsts_max_age: ``Strict-Transport-Security`` max-age in seconds.
        websocket_path: the path of the SIP WebSocket endpoint.
    """

    host: str
    port: int
    hsts_max_age: int
    websocket_path: str


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set on every response as its headers go out: handlers' own, raised errors (404,
    405) and streamed ones (Server-Sent Events) alike."""
    max_age = request.app[_HSTS_KEY]
    response.headers["Strict-Transport-Security"] = f"max-age={max_age}; includeSubDomains"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Server"] = "pstn-bridge"


async def _root(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


OPS_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The ops page's Content-Security-Policy: its own scripts, styles and API, nothing inline."""


async def _ops(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        STATIC_DIR / "ops.html",
        headers={"Content-Security-Policy": OPS_PAGE_CSP, "Referrer-Policy": "no-referrer"},
    )


async def start_https(
    site: HttpsSite,
    ctx: ssl.SSLContext,
    websocket: SipWebSocketService,
    *,
    mounts: Sequence[Callable[[web.Application], None]] = (),
    limits: HttpLimits | None = None,
) -> tuple[web.AppRunner, int]:
    """Start the site; returns its runner (to clean up) and the bound port.

    Args:
        site: where and how to listen.
        ctx: the server TLS context.
        websocket: the SIP WebSocket service.
        mounts: each adds its routes (and shutdown hooks) to the application before it
            starts (the ops API).
        limits: connection caps and handshake deadline of the listener (a
            :class:`~bridge.http_limits.GuardedSite`); aiohttp's defaults when None.

    Raises:
        OSError: the address cannot be bound.
    """
    app = web.Application()
    app.on_response_prepare.append(_security_headers)
    app[_HSTS_KEY] = site.hsts_max_age
    app.router.add_get("/", _root)
    app.router.add_get("/ops", _ops)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    app.router.add_get(site.websocket_path, websocket.handle)
    app.on_shutdown.append(websocket.on_shutdown)
    for mount in mounts:
        mount(app)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    tcp: web.TCPSite = (
        web.TCPSite(runner, site.host, site.port, ssl_context=ctx)
        if limits is None
        else GuardedSite(
            runner,
            site.host,
            site.port,
            ssl_context=ctx,
            limits=limits.connections,
            handshake_timeout=limits.handshake_timeout,
        )
    )
    try:
        await tcp.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])  # the bound port, also when 0 was asked for
