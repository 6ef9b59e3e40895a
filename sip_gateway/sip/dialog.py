"""SIP dialogs (RFC 3261 section 12): identity, sequence numbers, route set and target.

Theory of operation: a :class:`Dialog` is the state two user agents share between an
INVITE's first tagged response and the BYE. It is created from the request and response
that establish it (:meth:`Dialog.for_uac`, :meth:`Dialog.for_uas`), builds in-dialog
requests (:meth:`Dialog.create_request`, :meth:`Dialog.create_ack`) and checks the ones
received (:meth:`Dialog.receive_request`). :class:`DialogTable` finds the dialog of an
incoming message and refuses in-dialog requests for unknown dialogs with 481.

It owns no transactions and sends nothing: callers pass what it builds to a connection.
Randomness (tags, branches) is supplied by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .errors import LocalProtocolError, RemoteProtocolError
from .headers import Headers, NameAddr, Via, parse_name_addr
from .message import SipRequest, SipResponse
from .uri import AbsoluteUri, SipUri

__all__ = ["TARGET_REFRESH_METHODS", "Dialog", "DialogId", "DialogState", "DialogTable"]

TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})
_MAX_CSEQ = 2**31 - 1


class DialogState(StrEnum):
    """RFC 3261 12.1: a dialog is early until a 2xx confirms it."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID plus local and remote tag (RFC 3261 12)."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(slots=True, eq=False)
class Dialog:
    """One dialog, from the point of view of the local user agent.

    Attributes:
        id: Call-ID, local tag, remote tag.
        state: early, confirmed or terminated.
        local: our URI with our tag (From of our requests).
        remote: the peer's URI with its tag (To of our requests).
        remote_target: where in-dialog requests go (the peer's Contact).
        route_set: Route header values for in-dialog requests, in order.
        local_seq: CSeq number of our last request in the dialog.
        remote_seq: CSeq number of the peer's last request, None before the first.
        local_contact: our Contact for target-refresh requests.
        secure: the dialog was created over SIPS (RFC 3261 12.1.1).
    """

    id: DialogId
    state: DialogState
    local: NameAddr
    remote: NameAddr
    remote_target: SipUri | AbsoluteUri
    route_set: tuple[str, ...]
    local_seq: int
    remote_seq: int | None
    local_contact: NameAddr | None = None
    secure: bool = False
    invite_seqs: list[int] = field(default_factory=list)

    @classmethod
    def for_uac(
        cls, request: SipRequest, response: SipResponse, *, local_contact: NameAddr | None = None
    ) -> Dialog:
        """The dialog a UAC creates from a 101-299 response with a To tag (12.1.2).

        Raises:
            RemoteProtocolError: the response has no To tag or no usable Contact.
        """
        remote_tag = response.to_addr.tag
        if not remote_tag:
            raise RemoteProtocolError("response creating a dialog has no To tag")
        local = request.from_addr
        routes = tuple(reversed(response.headers.get_all("Record-Route")))
        state = DialogState.CONFIRMED if response.status_code >= 200 else DialogState.EARLY
        return cls(
            id=DialogId(request.call_id, local.tag or "", remote_tag),
            state=state,
            local=local,
            remote=response.to_addr,
            remote_target=_contact_uri(response, required=state is DialogState.CONFIRMED),
            route_set=routes,
            local_seq=request.cseq.seq,
            remote_seq=None,
            local_contact=local_contact,
            secure=_is_sips(request.uri),
            invite_seqs=[request.cseq.seq] if request.method == "INVITE" else [],
        )

    @classmethod
    def for_uas(
        cls, request: SipRequest, response: SipResponse, *, local_contact: NameAddr | None = None
    ) -> Dialog:
        """The dialog a UAS creates when it answers with a tagged 101-299 (12.1.1).

        Raises:
            LocalProtocolError: our response carries no To tag.
            RemoteProtocolError: the request has no usable Contact.
        """
        local_tag = response.to_addr.tag
        if not local_tag:
            raise LocalProtocolError("a response creating a dialog needs a To tag")
        state = DialogState.CONFIRMED if response.status_code >= 200 else DialogState.EARLY
        return cls(
            id=DialogId(request.call_id, local_tag, request.from_addr.tag or ""),
            state=state,
            local=response.to_addr,
            remote=request.from_addr,
            remote_target=_contact_uri(request, required=True),
            route_set=tuple(request.headers.get_all("Record-Route")),
            local_seq=0,
            remote_seq=request.cseq.seq,
            local_contact=local_contact,
            secure=_is_sips(request.uri),
        )

    # -- building requests -----------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        via: Via,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        max_forwards: int = 70,
    ) -> SipRequest:
        """An in-dialog request with the next CSeq (RFC 3261 12.2.1.1).

        Raises:
            LocalProtocolError: the dialog is terminated, or the method is ACK/CANCEL
                (use :meth:`create_ack` or ``build_cancel``).
        """
        if self.state is DialogState.TERMINATED:
            raise LocalProtocolError("the dialog is terminated")
        if method in ("ACK", "CANCEL"):
            raise LocalProtocolError(f"{method} is not built with create_request")
        if self.local_seq >= _MAX_CSEQ:
            raise LocalProtocolError("CSeq space of the dialog is exhausted")
        self.local_seq += 1
        if method == "INVITE":
            self.invite_seqs.append(self.local_seq)
        return self._request(
            method, self.local_seq, via=via, extra=headers, body=body, max_forwards=max_forwards
        )

    def create_ack(
        self,
        invite_seq: int,
        *,
        via: Via,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> SipRequest:
        """The ACK for a 2xx to our INVITE with CSeq ``invite_seq`` (RFC 3261 13.2.2.4)."""
        return self._request("ACK", invite_seq, via=via, extra=headers, body=body, max_forwards=70)

    def _request(
        self,
        method: str,
        seq: int,
        *,
        via: Via,
        extra: tuple[tuple[str, str], ...],
        body: bytes,
        max_forwards: int,
    ) -> SipRequest:
        uri, routes = self._target_and_routes()
        hdrs = Headers()
        hdrs.add("Via", str(via))
        for route in routes:
            hdrs.add("Route", route)
        hdrs.add("Max-Forwards", str(max_forwards))
        hdrs.add("From", str(self.local))
        hdrs.add("To", str(self.remote))
        hdrs.add("Call-ID", self.id.call_id)
        hdrs.add("CSeq", f"{seq} {method}")
        if self.local_contact is not None and method in TARGET_REFRESH_METHODS:
            hdrs.add("Contact", str(self.local_contact))
        for name, value in extra:
            hdrs.add(name, value)
        return SipRequest(method=method, uri=uri, headers=hdrs, body=body)

    def _target_and_routes(self) -> tuple[SipUri | AbsoluteUri, tuple[str, ...]]:
        """Loose routing when the first route has ``lr``, strict routing otherwise (12.2.1.1)."""
        if not self.route_set:
            return self.remote_target, ()
        first = parse_name_addr(self.route_set[0]).uri
        if isinstance(first, SipUri) and first.has_param("lr"):
            return self.remote_target, self.route_set
        return first, (*self.route_set[1:], f"<{self.remote_target}>")

    # -- receiving -------------------------------------------------------------------

    def receive_request(self, request: SipRequest) -> None:
        """Check an in-dialog request and apply a target refresh (RFC 3261 12.2.2).

        Raises:
            RemoteProtocolError: 500 when the CSeq is lower than the last one seen.
        """
        seq = request.cseq.seq
        if request.method not in ("ACK", "CANCEL"):
            if self.remote_seq is not None and seq <= self.remote_seq:
                raise RemoteProtocolError(
                    f"CSeq {seq} is not above {self.remote_seq}",
                    status_code=500,
                    reason="Server Internal Error",
                )
            self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS and request.contacts:
            self.remote_target = request.contacts[0].uri
        if request.method == "BYE":
            self.state = DialogState.TERMINATED

    def receive_response(self, method: str, response: SipResponse) -> None:
        """Apply a response to one of our in-dialog requests (confirm, refresh, end)."""
        code = response.status_code
        if method == "INVITE" and 200 <= code < 300 and self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED
            self.remote = response.to_addr
            self.route_set = tuple(reversed(response.headers.get_all("Record-Route")))
        if method in TARGET_REFRESH_METHODS and 200 <= code < 300 and response.contacts:
            self.remote_target = response.contacts[0].uri
        if code in (408, 481) or (method == "BYE" and code >= 200):
            self.state = DialogState.TERMINATED


def _contact_uri(message: SipRequest | SipResponse, *, required: bool) -> SipUri | AbsoluteUri:
    contacts = message.contacts
    if contacts:
        return contacts[0].uri
    if required:
        raise RemoteProtocolError("a dialog-creating message needs exactly one Contact")
    if isinstance(message, SipResponse):
        return message.to_addr.uri
    return message.from_addr.uri


def _is_sips(uri: SipUri | AbsoluteUri) -> bool:
    return isinstance(uri, SipUri) and uri.scheme == "sips"


class DialogTable:
    """The dialogs of a user agent, found by the identity of incoming messages."""

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        """Remember a dialog (replacing an early one with the same identity)."""
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog_id: DialogId) -> None:
        """Forget a dialog; unknown identities are ignored."""
        self._dialogs.pop(dialog_id, None)

    def get(self, dialog_id: DialogId) -> Dialog | None:
        """The dialog with this identity, if any."""
        return self._dialogs.get(dialog_id)

    def __len__(self) -> int:
        return len(self._dialogs)

    def match_request(self, request: SipRequest) -> Dialog | None:
        """The dialog an incoming request belongs to (RFC 3261 12.2.2).

        Returns None for a request outside any dialog (no To tag).

        Raises:
            RemoteProtocolError: 481 when the request has a To tag naming no dialog we know.
        """
        local_tag = request.to_addr.tag
        if not local_tag:
            return None
        key = DialogId(request.call_id, local_tag, request.from_addr.tag or "")
        dialog = self._dialogs.get(key)
        if dialog is None:
            raise RemoteProtocolError("no such dialog", status_code=481)
        return dialog

    def match_response(self, response: SipResponse) -> Dialog | None:
        """The dialog a response to one of our requests belongs to, if already known."""
        key = DialogId(response.call_id, response.from_addr.tag or "", response.to_addr.tag or "")
        return self._dialogs.get(key)
