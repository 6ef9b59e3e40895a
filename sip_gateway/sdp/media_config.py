"""The negotiated media configuration: the only hand-off from signaling to media.

Theory of operation: offer/answer ends in one frozen :class:`MediaConfig` per call
leg: what to send (codecs, payload types, ptime, telephone-event), where to send it
(remote RTP and RTCP addresses) and how it is protected (:class:`SdesCrypto` with
both SRTP master keys, or :class:`DtlsCrypto` with the fingerprint the DTLS handshake
must match). The media layer consumes it as is; it never re-reads SDP.

Secrets: SRTP keys and the remote ICE password are ``field(repr=False)``; the
``repr`` of every class here is safe to log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sip_gateway.sdp.attributes import Candidate, Direction
from sip_gateway.sdp.crypto import CryptoAttribute
from sip_gateway.sdp.fingerprint import Fingerprint, SetupRole

__all__ = ["Codec", "DtlsCrypto", "MediaConfig", "RemoteIce", "SdesCrypto", "TelephoneEvent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Codec:
    """A negotiated codec.

    Attributes:
        payload_type: the RTP payload type to use on the wire.
        name: the encoding name as the peer wrote it (``PCMU``, ``opus`` ...).
        clock_rate: RTP clock rate in Hz.
        channels: audio channels.
        fmtp: the peer's format parameters for it (what it wants to receive).
    """

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def __str__(self) -> str:
        """``name/rate[/channels]``, as in the call security record (``PCMU/8000``)."""
        tail = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.name}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """The negotiated RFC 4733 ``telephone-event`` payload type and clock rate."""

    payload_type: int
    clock_rate: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesCrypto:
    """SRTP keyed by SDES (RFC 4568).

    Attributes:
        suite: the chosen crypto suite.
        tag: the ``a=crypto`` tag the offer and answer share.
        remote_key: the peer's master key || salt: unprotect what it sends (secret).
        local_key: our master key || salt: protect what we send (secret).
        local_attribute: our ``a=crypto`` line (re-offers reuse it).
        remote_attribute: the peer's chosen ``a=crypto`` line (to detect re-keying).
    """

    suite: str
    tag: int
    remote_key: bytes = field(repr=False)
    local_key: bytes = field(repr=False)
    local_attribute: CryptoAttribute
    remote_attribute: CryptoAttribute


@dataclass(frozen=True, slots=True, kw_only=True)
class DtlsCrypto:
    """SRTP keyed by a DTLS handshake (RFC 5763/5764).

    Attributes:
        remote_fingerprints: the peer's acceptable fingerprints, media level first.
        remote_setup: the role the peer announced.
        local_setup: the role we take (``active`` starts the handshake).
    """

    remote_fingerprints: tuple[Fingerprint, ...]
    remote_setup: SetupRole
    local_setup: SetupRole

    @property
    def remote_fingerprint(self) -> Fingerprint:
        """The first acceptable remote fingerprint (the one to record)."""
        return self.remote_fingerprints[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteIce:
    """The peer's ICE parameters.

    Attributes:
        ufrag: ``a=ice-ufrag``.
        pwd: ``a=ice-pwd`` (a credential: never in repr).
        candidates: the candidates in the SDP (more may trickle later).
        lite: the peer is an ICE-lite agent.
    """

    ufrag: str
    pwd: str = field(repr=False)
    candidates: tuple[Candidate, ...] = ()
    lite: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaConfig:
    """Everything the media layer needs for one negotiated audio stream.

    Attributes:
        codecs: negotiated codecs; send with the first, accept any of them.
        telephone_event: the negotiated RFC 4733 payload, or None.
        ptime: packetization time to send with, in ms.
        remote_address: where to send RTP: ``(host, port)``.
        remote_rtcp_address: where to send RTCP (equals ``remote_address`` with rtcp-mux).
        rtcp_mux: RTP and RTCP share one port (RFC 5761).
        direction: the direction of *our* side (``sendonly`` means we send, not receive).
        crypto: how SRTP is keyed.
        media_index: index of the audio m-line in the SDP.
        mid: the ``a=mid`` of that m-line, if any.
        remote_ice: the peer's ICE parameters, if it offered ICE.
    """

    codecs: tuple[Codec, ...]
    telephone_event: TelephoneEvent | None
    ptime: int
    remote_address: tuple[str, int]
    remote_rtcp_address: tuple[str, int]
    rtcp_mux: bool
    direction: Direction
    crypto: SdesCrypto | DtlsCrypto
    media_index: int = 0
    mid: str | None = None
    remote_ice: RemoteIce | None = None

    @property
    def codec(self) -> Codec:
        """The codec to send with."""
        return self.codecs[0]
