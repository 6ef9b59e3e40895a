"""The sans-IO SIP core (RFC 3261): bytes in, events out; no sockets, clocks or randomness.

Drive a :class:`SipConnection` per transport connection; build requests with
:class:`SipRequest` and :class:`Headers`, answer with :func:`build_response`, keep dialogs
with :class:`Dialog`, and authenticate with :mod:`sip_gateway.sip.auth`.
"""

from .connection import SipConnection, SipConnectionConfig
from .dialog import Dialog, DialogId, DialogState, DialogTable
from .errors import LocalProtocolError, MessageTooLargeError, RemoteProtocolError, SipError
from .events import (
    AckReceived,
    CancelReceived,
    KeepAliveReceived,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTerminated,
    TransactionTimedOut,
)
from .headers import CSeq, Headers, NameAddr, Via, parse_name_addr, parse_via
from .message import SipMessage, SipRequest, SipResponse, build_response, parse_message
from .transaction import TimerSettings, build_ack_for_final, build_cancel
from .uri import AbsoluteUri, SipUri, parse_uri

__all__ = [
    "AbsoluteUri",
    "AckReceived",
    "CSeq",
    "CancelReceived",
    "Dialog",
    "DialogId",
    "DialogState",
    "DialogTable",
    "Headers",
    "KeepAliveReceived",
    "LocalProtocolError",
    "MessageRejected",
    "MessageTooLargeError",
    "NameAddr",
    "RemoteProtocolError",
    "RequestReceived",
    "ResponseReceived",
    "SipConnection",
    "SipConnectionConfig",
    "SipError",
    "SipEvent",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipUri",
    "TimerSettings",
    "TransactionTerminated",
    "TransactionTimedOut",
    "Via",
    "build_ack_for_final",
    "build_cancel",
    "build_response",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
]
