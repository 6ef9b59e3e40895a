"""SIP transactions: RFC 3261 section 17 with the RFC 6026 Accepted states.

Theory of operation: the four state machines (INVITE client ICT, non-INVITE client NICT,
INVITE server IST, non-INVITE server NIST) are transition tables named as in the RFC
figures. Each entry maps (state, input) to the next state and the actions to take; a
pair missing from a table is ignored as a stray message (RFC 3261 17.1.3 / 17.2.3 say to
discard it), and "absorb" is an explicit self-transition with no action.

Timers are data: every transaction keeps deadlines, :meth:`TransactionLayer.get_timer`
returns the earliest and :meth:`TransactionLayer.handle_timer` fires the ones due at
``now``. Over reliable transports (TLS, WSS) the retransmission timers A, E and G are never
armed and D, I, J, K are zero, but the time-outs B, F, H, L and M still apply.

This layer never serialises bytes and never touches the network: it queues messages in
``messages_to_send`` and events in ``events`` for the connection that owns it.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from .errors import LocalProtocolError
from .events import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    SipEvent,
    TransactionTerminated,
    TransactionTimedOut,
)
from .headers import Headers
from .message import SipMessage, SipRequest, SipResponse, build_response

__all__ = [
    "MAGIC_COOKIE",
    "Action",
    "Kind",
    "TimerName",
    "TimerSettings",
    "Transaction",
    "TransactionLayer",
    "TxInput",
    "TxState",
    "build_ack_for_final",
    "build_cancel",
    "live_transactions",
]

MAGIC_COOKIE = "z9hG4bK"


class TimerName(StrEnum):
    """RFC 3261 timer names (17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2) and RFC 6026's L and M."""

    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"
    L = "L"
    M = "M"


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """Timer values of RFC 3261 table 4, in seconds.

    Attributes:
        t1: round-trip time estimate (500 ms).
        t2: maximum retransmission interval for non-INVITE requests and INVITE responses.
        t4: maximum time a message stays in the network.
        reliable: the transport is reliable (TLS, WSS): no retransmissions, zero wait states.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    reliable: bool = True


class Kind(Enum):
    """Which of the four transaction machines."""

    ICT = "invite-client"
    NICT = "non-invite-client"
    IST = "invite-server"
    NIST = "non-invite-server"


class TxState(StrEnum):
    """States of all four machines (each machine uses its subset)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class TxInput(Enum):
    """What can happen to a transaction."""

    R1XX = "1xx"  # received (client) or sent by the TU (server)
    R2XX = "2xx"
    R3456XX = "300-699"
    REQUEST = "request retransmission"
    ACK = "ACK"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TRANSPORT_ERROR = "transport error"


class Action(Enum):
    """What a transition does besides changing state."""

    DELIVER = "pass the response or ACK to the TU"
    SEND = "send the TU's response"
    RETRANSMIT = "retransmit the request (client) or the last response (server)"
    SEND_ACK = "send ACK for the non-2xx final response"
    TIMEOUT = "report a time-out to the TU"


S = TxState
I = TxInput  # noqa: E741 - short table keys keep the tables readable
_Row = tuple[TxState, tuple[Action, ...]]

# RFC 3261 figure 5 with RFC 6026 figure 3 (Accepted).
_ICT: dict[tuple[TxState, TxInput], _Row] = {
    (S.CALLING, I.TIMER_A): (S.CALLING, (Action.RETRANSMIT,)),
    (S.CALLING, I.TIMER_B): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.CALLING, I.TRANSPORT_ERROR): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.CALLING, I.R1XX): (S.PROCEEDING, (Action.DELIVER,)),
    (S.CALLING, I.R2XX): (S.ACCEPTED, (Action.DELIVER,)),
    (S.CALLING, I.R3456XX): (S.COMPLETED, (Action.SEND_ACK, Action.DELIVER)),
    (S.PROCEEDING, I.R1XX): (S.PROCEEDING, (Action.DELIVER,)),
    (S.PROCEEDING, I.R2XX): (S.ACCEPTED, (Action.DELIVER,)),
    (S.PROCEEDING, I.R3456XX): (S.COMPLETED, (Action.SEND_ACK, Action.DELIVER)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.ACCEPTED, I.R1XX): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.R2XX): (S.ACCEPTED, (Action.DELIVER,)),
    (S.ACCEPTED, I.R3456XX): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.TIMER_M): (S.TERMINATED, ()),
    (S.COMPLETED, I.R1XX): (S.COMPLETED, ()),
    (S.COMPLETED, I.R2XX): (S.COMPLETED, ()),
    (S.COMPLETED, I.R3456XX): (S.COMPLETED, (Action.SEND_ACK,)),
    (S.COMPLETED, I.TIMER_D): (S.TERMINATED, ()),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, ()),
}

# RFC 3261 figure 6.
_NICT: dict[tuple[TxState, TxInput], _Row] = {
    (S.TRYING, I.TIMER_E): (S.TRYING, (Action.RETRANSMIT,)),
    (S.TRYING, I.TIMER_F): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.TRYING, I.R1XX): (S.PROCEEDING, (Action.DELIVER,)),
    (S.TRYING, I.R2XX): (S.COMPLETED, (Action.DELIVER,)),
    (S.TRYING, I.R3456XX): (S.COMPLETED, (Action.DELIVER,)),
    (S.PROCEEDING, I.TIMER_E): (S.PROCEEDING, (Action.RETRANSMIT,)),
    (S.PROCEEDING, I.TIMER_F): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.PROCEEDING, I.R1XX): (S.PROCEEDING, (Action.DELIVER,)),
    (S.PROCEEDING, I.R2XX): (S.COMPLETED, (Action.DELIVER,)),
    (S.PROCEEDING, I.R3456XX): (S.COMPLETED, (Action.DELIVER,)),
    (S.COMPLETED, I.R1XX): (S.COMPLETED, ()),
    (S.COMPLETED, I.R2XX): (S.COMPLETED, ()),
    (S.COMPLETED, I.R3456XX): (S.COMPLETED, ()),
    (S.COMPLETED, I.TIMER_K): (S.TERMINATED, ()),
}

# RFC 3261 figure 7 with RFC 6026 figure 5 (Accepted).
_IST: dict[tuple[TxState, TxInput], _Row] = {
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (Action.RETRANSMIT,)),
    (S.PROCEEDING, I.R1XX): (S.PROCEEDING, (Action.SEND,)),
    (S.PROCEEDING, I.R2XX): (S.ACCEPTED, (Action.SEND,)),
    (S.PROCEEDING, I.R3456XX): (S.COMPLETED, (Action.SEND,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, ()),
    (S.ACCEPTED, I.REQUEST): (S.ACCEPTED, ()),
    (S.ACCEPTED, I.ACK): (S.ACCEPTED, (Action.DELIVER,)),
    (S.ACCEPTED, I.R2XX): (S.ACCEPTED, (Action.SEND,)),
    (S.ACCEPTED, I.TIMER_L): (S.TERMINATED, ()),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (Action.RETRANSMIT,)),
    (S.COMPLETED, I.TIMER_G): (S.COMPLETED, (Action.RETRANSMIT,)),
    (S.COMPLETED, I.TIMER_H): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (Action.TIMEOUT,)),
    (S.COMPLETED, I.ACK): (S.CONFIRMED, ()),
    (S.CONFIRMED, I.REQUEST): (S.CONFIRMED, ()),
    (S.CONFIRMED, I.ACK): (S.CONFIRMED, ()),
    (S.CONFIRMED, I.TIMER_I): (S.TERMINATED, ()),
}

# RFC 3261 figure 8.
_NIST: dict[tuple[TxState, TxInput], _Row] = {
    (S.TRYING, I.REQUEST): (S.TRYING, ()),
    (S.TRYING, I.R1XX): (S.PROCEEDING, (Action.SEND,)),
    (S.TRYING, I.R2XX): (S.COMPLETED, (Action.SEND,)),
    (S.TRYING, I.R3456XX): (S.COMPLETED, (Action.SEND,)),
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (Action.RETRANSMIT,)),
    (S.PROCEEDING, I.R1XX): (S.PROCEEDING, (Action.SEND,)),
    (S.PROCEEDING, I.R2XX): (S.COMPLETED, (Action.SEND,)),
    (S.PROCEEDING, I.R3456XX): (S.COMPLETED, (Action.SEND,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, ()),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (Action.RETRANSMIT,)),
    (S.COMPLETED, I.TIMER_J): (S.TERMINATED, ()),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, ()),
}

TABLES: dict[Kind, dict[tuple[TxState, TxInput], _Row]] = {
    Kind.ICT: _ICT,
    Kind.NICT: _NICT,
    Kind.IST: _IST,
    Kind.NIST: _NIST,
}

_INITIAL: dict[Kind, TxState] = {
    Kind.ICT: S.CALLING,
    Kind.NICT: S.TRYING,
    Kind.IST: S.PROCEEDING,
    Kind.NIST: S.TRYING,
}

# Timers that run while a machine is in a state; armed on entry, dropped on exit.
_LIVE_TIMERS: dict[tuple[Kind, TxState], tuple[TimerName, ...]] = {
    (Kind.ICT, S.CALLING): (TimerName.A, TimerName.B),
    (Kind.ICT, S.ACCEPTED): (TimerName.M,),
    (Kind.ICT, S.COMPLETED): (TimerName.D,),
    (Kind.NICT, S.TRYING): (TimerName.E, TimerName.F),
    (Kind.NICT, S.PROCEEDING): (TimerName.E, TimerName.F),
    (Kind.NICT, S.COMPLETED): (TimerName.K,),
    (Kind.IST, S.ACCEPTED): (TimerName.L,),
    (Kind.IST, S.COMPLETED): (TimerName.G, TimerName.H),
    (Kind.IST, S.CONFIRMED): (TimerName.I,),
    (Kind.NIST, S.COMPLETED): (TimerName.J,),
}

_RETRANSMIT_TIMERS = frozenset({TimerName.A, TimerName.E, TimerName.G})


def _initial_interval(name: TimerName, cfg: TimerSettings) -> float | None:
    """First duration of a timer, or None when it is not armed on this transport."""
    if cfg.reliable and name in _RETRANSMIT_TIMERS:
        return None
    wait = 0.0 if cfg.reliable else None
    durations: dict[TimerName, float] = {
        TimerName.A: cfg.t1,
        TimerName.B: 64 * cfg.t1,
        TimerName.D: wait if wait is not None else max(32.0, 64 * cfg.t1),
        TimerName.E: cfg.t1,
        TimerName.F: 64 * cfg.t1,
        TimerName.G: cfg.t1,
        TimerName.H: 64 * cfg.t1,
        TimerName.I: wait if wait is not None else cfg.t4,
        TimerName.J: wait if wait is not None else 64 * cfg.t1,
        TimerName.K: wait if wait is not None else cfg.t4,
        TimerName.L: 64 * cfg.t1,
        TimerName.M: 64 * cfg.t1,
    }
    return durations[name]


def _next_interval(name: TimerName, state: TxState, current: float, cfg: TimerSettings) -> float:
    """Back-off of the retransmission timers (17.1.1.2, 17.1.2.2, 17.2.1)."""
    if name is TimerName.A:
        return 2 * current
    if name is TimerName.E and state is S.PROCEEDING:
        return cfg.t2
    return min(2 * current, cfg.t2)


def _response_input(status_code: int) -> TxInput:
    if status_code < 200:
        return I.R1XX
    if status_code < 300:
        return I.R2XX
    return I.R3456XX


@dataclass(slots=True, eq=False)
class Transaction:
    """One transaction: its machine, state, the request and the last response."""

    id: str
    kind: Kind
    request: SipRequest
    state: TxState
    last_response: SipResponse | None = None
    deadlines: dict[TimerName, float] = field(default_factory=dict)
    intervals: dict[TimerName, float] = field(default_factory=dict)


def transaction_key(message: SipMessage, *, server: bool) -> str:
    """The matching key of RFC 3261 17.1.3 (client) and 17.2.3 (server).

    ACK is matched to its INVITE. Requests without the RFC 3261 magic cookie fall back to
    RFC 2543 matching on Request-URI, tags, Call-ID, CSeq number and the top Via.

    Raises:
        RemoteProtocolError: a header needed for matching is missing or malformed.
    """
    via = message.top_via
    method = message.cseq.method
    if method == "ACK":
        method = "INVITE"
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        side = "s" if server else "c"
        sent_by = f"{via.host}:{via.port or ''}" if server else ""
        return f"{side}:{branch}:{sent_by}:{method}"
    ruri = str(message.uri) if isinstance(message, SipRequest) else ""
    to_tag = message.to_addr.tag or "" if method != "INVITE" else ""
    return ":".join(
        (
            "2543",
            ruri,
            message.from_addr.tag or "",
            to_tag,
            message.call_id,
            str(message.cseq.seq),
            str(via),
            method,
        )
    )


def build_cancel(invite: SipRequest) -> SipRequest:
    """The CANCEL for a pending INVITE (RFC 3261 section 9.1)."""
    headers = Headers()
    headers.add("Via", str(invite.top_via))
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    _copy(invite.headers, headers, ("Max-Forwards", "From", "To", "Call-ID"))
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return SipRequest(method="CANCEL", uri=invite.uri, headers=headers)


def build_ack_for_final(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client transaction sends for a 300-699 response (RFC 3261 17.1.1.3)."""
    headers = Headers()
    headers.add("Via", str(invite.top_via))
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    _copy(invite.headers, headers, ("Max-Forwards", "From"))
    to = response.headers.get("To")
    headers.add("To", to if to is not None else str(invite.to_addr))
    _copy(invite.headers, headers, ("Call-ID",))
    headers.add("CSeq", f"{invite.cseq.seq} ACK")
    return SipRequest(method="ACK", uri=invite.uri, headers=headers)


def _copy(source: Headers, target: Headers, names: tuple[str, ...]) -> None:
    for name in names:
        for value in source.get_all(name):
            target.add(name, value)


_LAYERS: weakref.WeakSet[TransactionLayer] = weakref.WeakSet()


_WAITING = frozenset({TxState.CALLING, TxState.TRYING, TxState.PROCEEDING})


def live_transactions() -> tuple[int, int]:
    """Transactions the process's transaction layers hold (for ``/metrics``).

    Returns:
        (open, lingering): transactions still waiting for a final response, and those
        kept after it only to absorb retransmissions (Accepted, Completed, Confirmed),
        which their timers end (Timer L: 64*T1 for an answered INVITE server transaction).
    """
    open_count = lingering = 0
    for layer in list(_LAYERS):
        for transaction in list(layer._transactions.values()):
            if transaction.state in _WAITING:
                open_count += 1
            else:
                lingering += 1
    return open_count, lingering


class TransactionLayer:
    """All transactions of one connection, client and server.

    Outputs are collected in :attr:`messages_to_send` (SIP messages, not yet bytes) and
    :attr:`events` (for the TU); the owning connection drains both.
    """

    def __init__(self, timers: TimerSettings | None = None) -> None:
        self.timers = timers or TimerSettings()
        self.messages_to_send: deque[SipMessage] = deque()
        self.events: deque[SipEvent] = deque()
        self._transactions: dict[str, Transaction] = {}
        _LAYERS.add(self)

    # -- queries ---------------------------------------------------------------------

    def get(self, transaction_id: str) -> Transaction | None:
        """The live transaction with this id, if any."""
        return self._transactions.get(transaction_id)

    def __len__(self) -> int:
        return len(self._transactions)

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, or None when no timer runs."""
        deadlines = [d for tx in self._transactions.values() for d in tx.deadlines.values()]
        return min(deadlines, default=None)

    # -- client side -----------------------------------------------------------------

    def send_request(self, request: SipRequest, now: float) -> str:
        """Start a client transaction for ``request`` and queue it for sending.

        Returns:
            the transaction id that its responses will carry.

        Raises:
            LocalProtocolError: the request is an ACK (ACK for 2xx is sent outside any
                transaction) or its branch is already in use.
        """
        if request.method == "ACK":
            raise LocalProtocolError("ACK is not sent in a client transaction")
        key = transaction_key(request, server=False)
        if key in self._transactions:
            raise LocalProtocolError("a client transaction with this branch already exists")
        kind = Kind.ICT if request.method == "INVITE" else Kind.NICT
        tx = Transaction(id=key, kind=kind, request=request, state=_INITIAL[kind])
        self._transactions[key] = tx
        self.messages_to_send.append(request)
        self._enter(tx, now)
        return key

    def receive_response(self, response: SipResponse, now: float) -> None:
        """Match a response to its client transaction (stray responses are dropped)."""
        tx = self._transactions.get(transaction_key(response, server=False))
        if tx is None or tx.kind not in (Kind.ICT, Kind.NICT):
            return
        self._fire(tx, _response_input(response.status_code), now, response)

    # -- server side -----------------------------------------------------------------

    def receive_request(self, request: SipRequest, now: float) -> None:
        """Match a request to a server transaction or create one (RFC 3261 17.2.3)."""
        key = transaction_key(request, server=True)
        tx = self._transactions.get(key)
        if request.method == "ACK":
            if tx is not None and tx.kind is Kind.IST:
                self._fire(tx, I.ACK, now, request)
            else:
                self.events.append(AckReceived(request=request))
            return
        if request.method == "CANCEL":
            if tx is None:
                self._receive_cancel(request, now)
            else:
                self._fire(tx, I.REQUEST, now, request)
            return
        if tx is not None:
            self._fire(tx, I.REQUEST, now, request)
            return
        kind = Kind.IST if request.method == "INVITE" else Kind.NIST
        tx = Transaction(id=key, kind=kind, request=request, state=_INITIAL[kind])
        self._transactions[key] = tx
        self._enter(tx, now)
        self.events.append(RequestReceived(transaction_id=key, request=request))
        if kind is Kind.IST:
            self.send_response(key, build_response(request, 100, "Trying"), now)

    def send_response(self, transaction_id: str, response: SipResponse, now: float) -> None:
        """Send the TU's response through its server transaction.

        Raises:
            LocalProtocolError: no such server transaction, or the response is not
                allowed in its state (for example a second final response).
        """
        tx = self._transactions.get(transaction_id)
        if tx is None or tx.kind not in (Kind.IST, Kind.NIST):
            raise LocalProtocolError(f"no server transaction {transaction_id!r}")
        if not self._fire(tx, _response_input(response.status_code), now, response):
            raise LocalProtocolError(
                f"cannot send {response.status_code} in state {tx.state} of {tx.kind.value}"
            )

    def _receive_cancel(self, cancel: SipRequest, now: float) -> None:
        invite_key = transaction_key(_as_invite_key(cancel), server=True)
        invite_tx = self._transactions.get(invite_key)
        key = transaction_key(cancel, server=True)
        tx = Transaction(id=key, kind=Kind.NIST, request=cancel, state=S.TRYING)
        self._transactions[key] = tx
        self._enter(tx, now)
        if invite_tx is None or invite_tx.kind is not Kind.IST:
            self._fire(tx, I.R3456XX, now, build_response(cancel, 481))
            return
        to_tag = invite_tx.last_response.to_addr.tag if invite_tx.last_response else None
        self._fire(tx, I.R2XX, now, build_response(cancel, 200, to_tag=to_tag))
        if invite_tx.state is S.PROCEEDING:
            self.events.append(CancelReceived(transaction_id=invite_key, request=cancel))

    # -- timers and transport --------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``."""
        for tx in list(self._transactions.values()):
            for name, deadline in sorted(tx.deadlines.items(), key=lambda item: item[1]):
                if deadline <= now and tx.deadlines.get(name) == deadline:
                    self._fire_timer(tx, name, now)

    def transport_failed(self, now: float) -> None:
        """The connection is gone: every live transaction sees a transport error."""
        for tx in list(self._transactions.values()):
            if not self._fire(tx, I.TRANSPORT_ERROR, now, None):
                self._terminate(tx)

    def _fire_timer(self, tx: Transaction, name: TimerName, now: float) -> None:
        del tx.deadlines[name]
        if name in _RETRANSMIT_TIMERS:
            interval = _next_interval(name, tx.state, tx.intervals[name], self.timers)
            tx.intervals[name] = interval
            tx.deadlines[name] = now + interval
        self._fire(tx, TxInput[f"TIMER_{name.value}"], now, None)

    # -- the machine -----------------------------------------------------------------

    def _fire(
        self, tx: Transaction, event: TxInput, now: float, message: SipMessage | None
    ) -> bool:
        row = TABLES[tx.kind].get((tx.state, event))
        if row is None:
            return False
        new_state, actions = row
        for action in actions:
            self._act(tx, action, event, message)
        if new_state is not tx.state:
            tx.state = new_state
            self._enter(tx, now)
        return True

    def _act(
        self, tx: Transaction, action: Action, event: TxInput, message: SipMessage | None
    ) -> None:
        if action is Action.DELIVER and isinstance(message, SipResponse):
            self.events.append(ResponseReceived(transaction_id=tx.id, response=message))
        elif action is Action.DELIVER and isinstance(message, SipRequest):
            self.events.append(AckReceived(request=message))
        elif action is Action.SEND and isinstance(message, SipResponse):
            tx.last_response = message
            self.messages_to_send.append(message)
        elif action is Action.RETRANSMIT:
            client = tx.kind in (Kind.ICT, Kind.NICT)
            again = tx.request if client else tx.last_response
            if again is not None:
                self.messages_to_send.append(again)
        elif action is Action.SEND_ACK and isinstance(message, SipResponse):
            self.messages_to_send.append(build_ack_for_final(tx.request, message))
        elif action is Action.TIMEOUT:
            timer = event.value.removeprefix("Timer ") if event.name.startswith("TIMER_") else ""
            self.events.append(
                TransactionTimedOut(transaction_id=tx.id, timer=timer or "transport")
            )

    def _enter(self, tx: Transaction, now: float) -> None:
        if tx.state is S.TERMINATED:
            self._terminate(tx)
            return
        live = _LIVE_TIMERS.get((tx.kind, tx.state), ())
        for name in list(tx.deadlines):
            if name not in live:
                del tx.deadlines[name]
                tx.intervals.pop(name, None)
        zero: list[TimerName] = []
        for name in live:
            if name in tx.deadlines:
                continue
            interval = _initial_interval(name, self.timers)
            if interval is None:
                continue
            if interval == 0.0:
                zero.append(name)
                continue
            tx.intervals[name] = interval
            tx.deadlines[name] = now + interval
        for name in zero:  # D, I, J, K over a reliable transport: leave the state at once
            self._fire(tx, TxInput[f"TIMER_{name.value}"], now, None)

    def _terminate(self, tx: Transaction) -> None:
        tx.deadlines.clear()
        if self._transactions.pop(tx.id, None) is not None:
            self.events.append(TransactionTerminated(transaction_id=tx.id))


def _as_invite_key(cancel: SipRequest) -> SipRequest:
    """A stand-in request with the CANCEL's matching fields and method INVITE."""
    headers = cancel.headers.copy()
    headers.set("CSeq", f"{cancel.cseq.seq} INVITE")
    return SipRequest(method="INVITE", uri=cancel.uri, headers=headers)
