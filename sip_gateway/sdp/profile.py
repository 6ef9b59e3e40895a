"""Local media policy for offer/answer: the SDP package's configuration objects.

Theory of operation: :class:`MediaProfile` is the per-leg policy that ``bridge.app``
builds from settings (one for the gateway leg: SDES-SRTP with G.711; one for the
WebRTC leg: DTLS-SRTP with Opus and G.711). :class:`LocalMedia` carries what changes
per call (addresses, ports, the ``o=`` session id chosen by the caller, ICE
credentials). Both are frozen and validated at construction, so negotiation code
never sees an impossible policy. Nothing here reads settings, files or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sip_gateway.sdp.attributes import Candidate, RtpMap
from sip_gateway.sdp.crypto import SUITES
from sip_gateway.sdp.fingerprint import HASH_LENGTHS, Fingerprint

__all__ = [
    "DEFAULT_CRYPTO_SUITES",
    "G722",
    "OPUS",
    "PCMA",
    "PCMU",
    "CodecSpec",
    "IceParameters",
    "LocalMedia",
    "MediaProfile",
    "MediaSecurity",
]

DEFAULT_CRYPTO_SUITES = ("AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_CM_128_HMAC_SHA1_80")
"""Suites accepted (and offered, in this order) by default: DESIGN section 5."""


class MediaSecurity(StrEnum):
    """How a leg keys SRTP."""

    SDES = "sdes"
    """``RTP/SAVP`` with ``a=crypto`` keys in the SDP (RFC 4568): the gateway leg."""
    DTLS = "dtls"
    """``UDP/TLS/RTP/SAVPF`` with ``a=fingerprint`` and a DTLS handshake: the WebRTC leg."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecSpec:
    """A codec we can send and receive.

    Attributes:
        name: encoding name as in ``a=rtpmap`` (matched case-insensitively).
        clock_rate: RTP clock rate in Hz.
        channels: audio channels (1 unless the rtpmap says otherwise).
        payload_type: the static payload type, or the dynamic one we offer.
        fmtp: format parameters we announce for it, if any.
    """

    name: str
    clock_rate: int
    channels: int = 1
    payload_type: int
    fmtp: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError("payload_type must be 0..127")

    def matches(self, rtpmap: RtpMap) -> bool:
        """True if the rtpmap names this codec (name, clock rate and channels)."""
        return (
            rtpmap.encoding.lower() == self.name.lower()
            and rtpmap.clock_rate == self.clock_rate
            and (rtpmap.channels or 1) == self.channels
        )

    def rtpmap(self) -> RtpMap:
        """The ``a=rtpmap`` value we write for this codec."""
        channels = self.channels if self.channels != 1 else None
        return RtpMap(
            payload_type=self.payload_type,
            encoding=self.name,
            clock_rate=self.clock_rate,
            channels=channels,
        )


PCMU = CodecSpec(name="PCMU", clock_rate=8000, payload_type=0)
PCMA = CodecSpec(name="PCMA", clock_rate=8000, payload_type=8)
G722 = CodecSpec(name="G722", clock_rate=8000, payload_type=9)
OPUS_FMTP = (
    "minptime=10;useinbandfec=1;maxplaybackrate=8000;sprop-maxcapturerate=8000;"
    "maxaveragebitrate=32000"
)
"""Our Opus parameters (RFC 7587): the far end is the 8 kHz PSTN, so we play back and
capture narrowband only; a browser told so encodes narrowband (PESQ MOS-LQO 4.05 instead
of 3.93 at 32 kbit/s through the bridge, ``tests.bench.quality_bench``) and costs less to
decode. ``maxaveragebitrate`` keeps libwebrtc at 32 kbit/s (it would drop to 12)."""
OPUS = CodecSpec(name="opus", clock_rate=48000, channels=2, payload_type=111, fmtp=OPUS_FMTP)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaProfile:
    """Media policy of one leg.

    Attributes:
        security: SDES (gateway leg) or DTLS (WebRTC leg). Plain RTP is never accepted.
        codecs: codecs we support, in the order we offer them.
        telephone_event: offer and accept RFC 4733 ``telephone-event``.
        telephone_event_payload_type: the dynamic payload type we offer for it.
        ptime: packetization time in ms that we announce and default to.
        rtcp_mux: offer ``a=rtcp-mux`` and accept it when offered (RFC 5761).
        crypto_suites: SDES suites accepted, in the order we offer them.
        prefer_local_suite_order: when answering, pick the offered ``a=crypto`` line
            whose suite comes first in ``crypto_suites`` instead of the first
            acceptable line in the offerer's order (RFC 4568's default).
        allow_mki: accept ``a=crypto`` keys carrying an MKI (refused by default).
        fingerprints: our DTLS certificate fingerprints (DTLS legs).
        fingerprint_algorithms: hash functions accepted in a peer's ``a=fingerprint``.
        session_name: the ``s=`` line we write.
        username: the ``o=`` username we write.
    """

    security: MediaSecurity = MediaSecurity.SDES
    codecs: tuple[CodecSpec, ...] = (PCMU, PCMA)
    telephone_event: bool = True
    telephone_event_payload_type: int = 101
    ptime: int = 20
    rtcp_mux: bool = True
    crypto_suites: tuple[str, ...] = DEFAULT_CRYPTO_SUITES
    prefer_local_suite_order: bool = False
    allow_mki: bool = False
    fingerprints: tuple[Fingerprint, ...] = ()
    fingerprint_algorithms: tuple[str, ...] = ("sha-256", "sha-384", "sha-512")
    session_name: str = "pstn-bridge"
    username: str = "-"

    def __post_init__(self) -> None:
        if not self.codecs:
            raise ValueError("MediaProfile needs at least one codec")
        if not 1 <= self.ptime <= 1000:
            raise ValueError("ptime must be 1..1000 ms")
        if not 96 <= self.telephone_event_payload_type <= 127:
            raise ValueError("telephone_event_payload_type must be dynamic (96..127)")
        if any(c.payload_type == self.telephone_event_payload_type for c in self.codecs):
            raise ValueError("telephone_event_payload_type collides with a codec")
        unknown = [s for s in self.crypto_suites if s not in SUITES]
        if unknown:
            raise ValueError(f"unknown crypto suites: {', '.join(unknown)}")
        if self.security is MediaSecurity.SDES and not self.crypto_suites:
            raise ValueError("an SDES profile needs at least one crypto suite")
        if any(a.lower() not in HASH_LENGTHS for a in self.fingerprint_algorithms):
            raise ValueError("unknown fingerprint hash function")
        if any(c in self.session_name + self.username for c in "\r\n\x00"):
            raise ValueError("session_name and username must be single-line text")


@dataclass(frozen=True, slots=True, kw_only=True)
class IceParameters:
    """Our ICE credentials and candidates for one call (from the ICE agent).

    Attributes:
        ufrag: ``a=ice-ufrag``.
        pwd: ``a=ice-pwd`` (a credential: never in repr).
        candidates: candidates to list (may be empty with trickle ICE).
        lite: we are an ICE-lite agent (``a=ice-lite``).
        end_of_candidates: write ``a=end-of-candidates`` after the candidates.
    """

    ufrag: str
    pwd: str = field(repr=False)
    candidates: tuple[Candidate, ...] = ()
    lite: bool = False
    end_of_candidates: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalMedia:
    """What our SDP announces for one call.

    Attributes:
        address: our media address (``c=`` and ``o=``); IPv6 without brackets.
        port: our RTP port.
        session_id: the ``o=`` session id, chosen by the caller and kept for the dialog.
        session_version: the ``o=`` version; the caller increments it for each new SDP.
        ice: our ICE parameters (DTLS legs).
    """

    address: str
    port: int
    session_id: int
    session_version: int = 0
    ice: IceParameters | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be 1..65535")
        if not self.address or any(c.isspace() for c in self.address):
            raise ValueError("address must be a non-empty host without spaces")
        if self.session_id < 0 or self.session_version < 0:
            raise ValueError("session id and version must not be negative")
