"""Errors of the sans-IO SDP core.

Hierarchy::

    RemoteProtocolError (sip_gateway.sip.errors)
    +-- SdpError                 the peer's SDP is not acceptable here (488 Not Acceptable Here)
        +-- SdpParseError        the peer's SDP is malformed (400 Bad Request)

Both carry their wire meaning in ``status_code`` so the dialog layer can answer the
INVITE (or tear down a call whose 2xx answer was refused) without classifying again.
Messages name the line and the problem, never key material: ``a=crypto`` keys,
``k=`` lines and ICE passwords are never formatted into an error.

Misuse by the local side (a bad :class:`~sip_gateway.sdp.profile.MediaProfile`, a
``key_source`` returning the wrong length) raises ``ValueError`` or
:class:`~sip_gateway.sip.errors.LocalProtocolError` instead: those are bugs, not peers.
"""

from __future__ import annotations

from sip_gateway.sip.errors import RemoteProtocolError

__all__ = ["SdpError", "SdpParseError"]


class SdpError(RemoteProtocolError):
    """The peer's SDP is well formed but refused by policy (default 488).

    Raised for offers or answers without an acceptable ``a=crypto`` line, plain
    ``RTP/AVP`` on a leg that requires SRTP, no common codec, a DTLS profile without
    ``a=fingerprint``, and similar negotiation failures. ``policy`` names the refusal
    for records and metrics: ``plain-rtp``, ``no-crypto``, ``no-fingerprint``,
    ``wrong-transport``, ``no-common-codec`` or ``sdp-refused``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 488,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        policy: str = "sdp-refused",
    ) -> None:
        super().__init__(message, status_code=status_code, reason=reason, headers=headers)
        self.policy = policy


class SdpParseError(SdpError):
    """The peer's SDP is malformed (default 400 Bad Request)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        reason: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(
            message, status_code=status_code, reason=reason, headers=headers, policy="malformed-sdp"
        )
