"""RFC 4028 session timers for one dialog, sans-IO.

Theory of operation: a :class:`SessionTimer` negotiates the session interval and the
refresher for each INVITE or UPDATE transaction of a dialog and then keeps one deadline:

* as the UAC of a transaction it writes ``Supported: timer``, ``Session-Expires`` and
  ``Min-SE`` (:meth:`SessionTimer.request_headers`), raises the interval after a
  ``422 Session Interval Too Small`` (:meth:`SessionTimer.handle_too_small`, at most once
  per higher Min-SE, so it never loops) and reads the outcome from the 2xx
  (:meth:`SessionTimer.handle_success`);
* as the UAS it checks the request (422 below our Min-SE), picks the refresher as
  section 9 says and returns the 2xx headers, with ``Require: timer`` when the UAC
  supports the extension (:meth:`SessionTimer.answer`).

Roles are per transaction (``refresher=uac`` in a re-INVITE we send means us), so the
timer stores the refresher as :class:`Refresher` LOCAL or REMOTE. The refresher refreshes
at half the interval (:attr:`TimerAction.REFRESH`); both sides give up at the interval
minus ``min(32, interval / 3)`` (:attr:`TimerAction.EXPIRE`: send BYE), the refresher
only when its refreshes kept failing. Time is an argument (``now``); nothing here sleeps,
sends or logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sip_gateway.sip.errors import RemoteProtocolError
from sip_gateway.sip.message import SipRequest, SipResponse

__all__ = [
    "Refresher",
    "SessionExpires",
    "SessionIntervalTooSmallError",
    "SessionTimer",
    "TimerAction",
]

_MAX_INTERVAL = 2**31 - 1
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")
_EXPIRY_GUARD = 32.0


class Refresher(StrEnum):
    """Which side of the dialog sends the session refreshes."""

    LOCAL = "local"
    REMOTE = "remote"


class TimerAction(StrEnum):
    """What a fired session timer asks of its owner."""

    REFRESH = "refresh"
    """Send a session refresh (re-INVITE or UPDATE) now."""
    EXPIRE = "expire"
    """The session expired: send BYE and end the call."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionExpires:
    """A ``Session-Expires`` value: delta-seconds and the optional refresher parameter."""

    seconds: int
    refresher: str | None = None
    """``uac``, ``uas`` or None."""

    @classmethod
    def parse(cls, value: str) -> SessionExpires:
        """Parse ``1800;refresher=uac``.

        Raises:
            RemoteProtocolError: not a delta-seconds value (400).
        """
        head, *params = (part.strip() for part in value.split(";"))
        seconds = _delta_seconds(head, "Session-Expires")
        refresher = None
        for param in params:
            name, _, arg = param.partition("=")
            if name.strip().lower() == "refresher":
                refresher = arg.strip().lower()
                if refresher not in ("uac", "uas"):
                    raise RemoteProtocolError("Session-Expires refresher must be uac or uas")
        return cls(seconds=seconds, refresher=refresher)

    def __str__(self) -> str:
        tail = f";refresher={self.refresher}" if self.refresher else ""
        return f"{self.seconds}{tail}"


def _delta_seconds(text: str, what: str) -> int:
    if _DELTA_SECONDS.fullmatch(text) is None:
        raise RemoteProtocolError(f"{what} is not delta-seconds")
    return min(int(text), _MAX_INTERVAL)


def _min_se(message: SipRequest | SipResponse) -> int | None:
    value = message.headers.get("Min-SE")
    return None if value is None else _delta_seconds(value.split(";")[0].strip(), "Min-SE")


def _session_expires(message: SipRequest | SipResponse) -> SessionExpires | None:
    value = message.headers.get("Session-Expires")
    return None if value is None else SessionExpires.parse(value)


def supports_timer(message: SipRequest | SipResponse) -> bool:
    """True when the message lists ``timer`` in Supported or Require."""
    tags = message.headers.get_all("Supported") + message.headers.get_all("Require")
    return any(tag.strip().lower() == "timer" for tag in tags)


class SessionIntervalTooSmallError(RemoteProtocolError):
    """The request's session interval is below our Min-SE: answer 422 with Min-SE."""

    def __init__(self, min_se: int) -> None:
        super().__init__(
            "session interval too small",
            status_code=422,
            reason="Session Interval Too Small",
            headers=(("Min-SE", str(min_se)),),
        )
        self.min_se = min_se


class SessionTimer:
    """The session timer of one dialog (see the module docstring).

    Args:
        session_expires: the interval we ask for as UAC, in seconds.
        min_se: the smallest interval we accept (our Min-SE), in seconds.
    """

    def __init__(self, *, session_expires: int, min_se: int) -> None:
        if not 1 <= min_se <= session_expires:
            raise ValueError("need 1 <= min_se <= session_expires")
        self._requested = session_expires
        self._min_se = min_se
        self.interval: int | None = None
        """The negotiated session interval, None while no timer runs."""
        self.refresher: Refresher | None = None
        """Who refreshes, None while no timer runs."""
        self._deadline: float | None = None
        self._action: TimerAction | None = None
        self._started: float = 0.0

    def __repr__(self) -> str:
        return f"<SessionTimer interval={self.interval} refresher={self.refresher}>"

    @property
    def active(self) -> bool:
        """True while a session interval is negotiated."""
        return self.interval is not None

    # -- as the UAC of an INVITE or UPDATE ---------------------------------------------

    def request_headers(self, *, refresh: bool = False) -> list[tuple[str, str]]:
        """Headers for an INVITE or UPDATE we send.

        Args:
            refresh: True for a session refresh: the current interval is repeated and we
                stay the refresher (``refresher=uac`` of this transaction) when we were.
        """
        seconds = self.interval if refresh and self.interval else self._requested
        refresher = "uac" if refresh and self.refresher is Refresher.LOCAL else None
        if refresh and self.refresher is Refresher.REMOTE:
            refresher = "uas"
        value = SessionExpires(seconds=seconds, refresher=refresher)
        return [
            ("Supported", "timer"),
            ("Session-Expires", str(value)),
            ("Min-SE", str(self._min_se)),
        ]

    def handle_too_small(self, response: SipResponse) -> bool:
        """Take a 422's Min-SE: True when the request may be retried with a larger interval.

        False when the 422 carries no usable Min-SE or does not raise it (no loop).
        """
        try:
            wanted = _min_se(response)
        except RemoteProtocolError:
            return False
        if wanted is None or wanted <= self._requested:
            return False
        self._min_se = max(self._min_se, wanted)
        self._requested = max(self._requested, wanted)
        return True

    def handle_success(self, response: SipResponse, now: float) -> None:
        """Apply the 2xx to our INVITE or UPDATE (RFC 4028 section 7.2).

        Without Session-Expires there is no session expiration and the timer stops.

        Raises:
            RemoteProtocolError: a malformed Session-Expires (400).
        """
        expires = _session_expires(response)
        if expires is None:
            self.stop()
            return
        local = expires.refresher in (None, "uac")
        self._start(expires.seconds, Refresher.LOCAL if local else Refresher.REMOTE, now)

    # -- as the UAS ------------------------------------------------------------------------

    def answer(self, request: SipRequest, now: float) -> list[tuple[str, str]]:
        """Check an INVITE or UPDATE we received and return the headers of our 2xx.

        Starts (or restarts) the timer as the response will announce it.

        Raises:
            SessionIntervalTooSmallError: the requested interval is below our Min-SE (422).
            RemoteProtocolError: malformed Session-Expires or Min-SE (400).
        """
        expires = _session_expires(request)
        theirs = _min_se(request) or 0
        supported = supports_timer(request)
        if expires is None and not supported:
            self.stop()
            return []
        if expires is not None and expires.seconds < self._min_se:
            raise SessionIntervalTooSmallError(max(self._min_se, theirs))
        seconds = self._requested if expires is None else min(expires.seconds, self._requested)
        seconds = max(seconds, theirs, self._min_se)
        refresher = expires.refresher if expires is not None else None
        if not supported:
            refresher = "uas"  # a UAC without the extension cannot refresh (section 9)
        refresher = refresher or "uac"
        self._start(seconds, Refresher.LOCAL if refresher == "uas" else Refresher.REMOTE, now)
        headers = [("Session-Expires", str(SessionExpires(seconds=seconds, refresher=refresher)))]
        if supported:
            headers.append(("Require", "timer"))
        return headers

    # -- the deadline ----------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next deadline, or None when no timer runs."""
        return self._deadline

    def handle_timer(self, now: float) -> TimerAction | None:
        """Fire the deadline if it has passed; returns what the owner must do."""
        if self._deadline is None or now < self._deadline:
            return None
        action = self._action
        if action is TimerAction.REFRESH:
            self._deadline, self._action = self._expiry(), TimerAction.EXPIRE
        else:
            self.stop()
        return action

    def stop(self) -> None:
        """No session interval any more (call ended, or a 2xx without Session-Expires)."""
        self.interval = self.refresher = None
        self._deadline = self._action = None

    def _start(self, seconds: int, refresher: Refresher, now: float) -> None:
        self.interval, self.refresher, self._started = seconds, refresher, now
        if refresher is Refresher.LOCAL:
            self._deadline, self._action = now + seconds / 2, TimerAction.REFRESH
        else:
            self._deadline, self._action = self._expiry(), TimerAction.EXPIRE

    def _expiry(self) -> float:
        assert self.interval is not None
        return self._started + self.interval - min(_EXPIRY_GUARD, self.interval / 3)
