"""Carrier trunks: SIP over TLS with SDES-SRTP offers, both directions.

Theory of operation: :class:`TrunkConfig` describes a carrier; :class:`TrunkGateway` runs
all of them: one verified TLS connector per trunk, an optional carrier-facing listener,
and one handler that dispatches every SIP event to the call it belongs to.

* Outbound: ``gateway.call("carrier", "+441632960123", media=port)`` returns an
  :class:`OutboundCall`; ``await call.wait_answered()`` gives the negotiated
  :class:`~sip_gateway.sdp.MediaConfig` or raises :class:`CallFailedError` whose
  :class:`CallFailure` says why (busy, no answer, rejected, not found, unreachable,
  encryption refused, cancelled).
* Inbound: the routing callback receives each accepted, screened :class:`InboundCall`
  (DID in E.164, the SDP offer) and returns :class:`Reject` or :class:`Answer`.
* Both: BYE either way, re-INVITE/UPDATE answered with unchanged keys when the crypto line
  is unchanged, RFC 4028 session timers as refresher and as responder, OPTIONS keep-alive
  (:class:`TrunkStatus`) and optional registration.

Media is reached only through :class:`MediaPort`; every leg reports
:class:`CallEvent` records. This package never imports ``bridge``.
"""

from .config import CODECS, RFC4028_MIN_SE, CallerIdRules, TrunkConfig, normalize_e164
from .errors import (
    CallFailedError,
    CallFailure,
    EndReason,
    InvalidNumberError,
    TrunkError,
    TrunkUnavailableError,
    classify_status,
)
from .gateway import SUPPORTED_EXTENSIONS, Trunk, TrunkGateway
from .inbound import (
    Answer,
    InboundCall,
    InboundRoute,
    Reject,
    RouteDecision,
    ScreenedInvite,
    TrunkRouter,
    screen_invite,
)
from .leg import ALLOW, CallLeg, EventCallback
from .monitor import (
    InviteRefused,
    LivenessCounter,
    OptionsMonitor,
    Registration,
    RegistrationChanged,
    TrunkStatus,
    TrunkStatusChanged,
)
from .outbound import CallerPresentation, OutboundCall, present_caller
from .session_timer import (
    Refresher,
    SessionExpires,
    SessionIntervalTooSmallError,
    SessionTimer,
    TimerAction,
)
from .state import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallProceeding,
    CallRinging,
    CallState,
    EarlyMediaStarted,
    IcePort,
    MediaPort,
    MediaUpdated,
    SessionRefreshed,
)

__all__ = [
    "ALLOW",
    "CODECS",
    "RFC4028_MIN_SE",
    "SUPPORTED_EXTENSIONS",
    "Answer",
    "CallAnswered",
    "CallEnded",
    "CallEvent",
    "CallFailedError",
    "CallFailure",
    "CallLeg",
    "CallProceeding",
    "CallRinging",
    "CallState",
    "CallerIdRules",
    "CallerPresentation",
    "EarlyMediaStarted",
    "EndReason",
    "EventCallback",
    "IcePort",
    "InboundCall",
    "InboundRoute",
    "InvalidNumberError",
    "InviteRefused",
    "LivenessCounter",
    "MediaPort",
    "MediaUpdated",
    "OptionsMonitor",
    "OutboundCall",
    "Refresher",
    "Registration",
    "RegistrationChanged",
    "Reject",
    "RouteDecision",
    "ScreenedInvite",
    "SessionExpires",
    "SessionIntervalTooSmallError",
    "SessionRefreshed",
    "SessionTimer",
    "TimerAction",
    "Trunk",
    "TrunkConfig",
    "TrunkError",
    "TrunkGateway",
    "TrunkRouter",
    "TrunkStatus",
    "TrunkStatusChanged",
    "TrunkUnavailableError",
    "classify_status",
    "normalize_e164",
    "present_caller",
    "screen_invite",
]
