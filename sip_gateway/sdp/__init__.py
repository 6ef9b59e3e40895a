"""Sans-IO SDP: the session model, SRTP keying attributes and offer/answer.

Stdlib only: no asyncio, sockets, TLS, clocks or randomness (keys come from an
injected ``key_source``). The one hand-off to the media layer is :class:`MediaConfig`.

Typical use on the gateway leg::

    offer = parse_sdp(request.body)
    answer, config = answer_offer(
        offer, profile, local, key_source=secrets.token_bytes
    )  # raises SdpError (488) / SdpParseError (400)
    body = answer.to_bytes()
"""

from sip_gateway.sdp.attributes import (
    Attribute,
    Candidate,
    Direction,
    Extmap,
    Fmtp,
    Group,
    Rtcp,
    RtpMap,
    Ssrc,
    redact_attribute,
)
from sip_gateway.sdp.crypto import SUITES, CryptoAttribute, CryptoSuite, KeyParams
from sip_gateway.sdp.errors import SdpError, SdpParseError
from sip_gateway.sdp.fingerprint import Fingerprint, SetupRole
from sip_gateway.sdp.lines import Bandwidth, Connection, Origin, Timing
from sip_gateway.sdp.media_config import (
    Codec,
    DtlsCrypto,
    MediaConfig,
    RemoteIce,
    SdesCrypto,
    TelephoneEvent,
)
from sip_gateway.sdp.offer_answer import KeySource, answer_offer, build_offer, process_answer
from sip_gateway.sdp.profile import (
    DEFAULT_CRYPTO_SUITES,
    G722,
    OPUS,
    PCMA,
    PCMU,
    CodecSpec,
    IceParameters,
    LocalMedia,
    MediaProfile,
    MediaSecurity,
)
from sip_gateway.sdp.session import SdpMedia, SdpSession, parse_sdp

__all__ = [
    "DEFAULT_CRYPTO_SUITES",
    "G722",
    "OPUS",
    "PCMA",
    "PCMU",
    "SUITES",
    "Attribute",
    "Bandwidth",
    "Candidate",
    "Codec",
    "CodecSpec",
    "Connection",
    "CryptoAttribute",
    "CryptoSuite",
    "Direction",
    "DtlsCrypto",
    "Extmap",
    "Fingerprint",
    "Fmtp",
    "Group",
    "IceParameters",
    "KeyParams",
    "KeySource",
    "LocalMedia",
    "MediaConfig",
    "MediaProfile",
    "MediaSecurity",
    "Origin",
    "RemoteIce",
    "Rtcp",
    "RtpMap",
    "SdesCrypto",
    "SdpError",
    "SdpMedia",
    "SdpParseError",
    "SdpSession",
    "SetupRole",
    "Ssrc",
    "TelephoneEvent",
    "Timing",
    "answer_offer",
    "build_offer",
    "parse_sdp",
    "process_answer",
    "redact_attribute",
]
