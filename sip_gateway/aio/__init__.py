"""The asyncio side of sip_gateway: SIP over TLS, SIP over WebSocket, and UDP for SRTP media.

This is the only package of :mod:`sip_gateway` that imports :mod:`asyncio`. It adapts the
sans-IO core (:mod:`sip_gateway.sip`) to real connections and makes no protocol decision of
its own: see :mod:`sip_gateway.aio.endpoint` for the theory of operation.
"""

from .endpoint import SipEndpoint, SipEndpointConfig, SipHandler, SipWire
from .errors import (
    SipConnectError,
    SipConnectionClosedError,
    SipRequestTimeoutError,
    SipTransportError,
)
from .media_port import AudioSink, RtpMediaPort
from .rtp import AudioSource, EventSink, MediaEndpoint, MediaSocket
from .stream import SipTlsConnector, SipTlsServer
from .websocket import SipWebSocketService, sip_websocket_handler

__all__ = [
    "AudioSink",
    "AudioSource",
    "EventSink",
    "MediaEndpoint",
    "MediaSocket",
    "RtpMediaPort",
    "SipConnectError",
    "SipConnectionClosedError",
    "SipEndpoint",
    "SipEndpointConfig",
    "SipHandler",
    "SipRequestTimeoutError",
    "SipTlsConnector",
    "SipTlsServer",
    "SipTransportError",
    "SipWebSocketService",
    "SipWire",
    "sip_websocket_handler",
]
